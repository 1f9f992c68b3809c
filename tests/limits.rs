//! Each limit stops the tree, with the right verdict and exit code, on every backend this machine offers.

use crate::util::*;
use std::time::Duration;

#[test]
pub(crate) fn wall_limit_stops_sleeper() {
    for backend in backends() {
        let (out, took) = timed(pynish_on(backend).args(["--wall-time", "1s", "--", "sleep", "10"]));
        assert_eq!(code(&out), 124, "{backend}");
        let report = report(&out);
        assert_eq!(report["verdict"], "wall_time", "{backend}");
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(6), "{backend}: took {took:?}");
        assert!(f(&report["usage"]["wall_time_s"]) >= 1.0);
    }
}

#[test]
pub(crate) fn cpu_limit_stops_busy_loop() {
    for backend in backends() {
        let out = pynish_on(backend).args(["--cpu-time", "1s", "--", &testkit(), "spin"]).output().unwrap();
        assert_eq!(code(&out), 123, "{backend}");
        let report = report(&out);
        assert_eq!(report["verdict"], "cpu_time", "{backend}");
        let cpu = f(&report["usage"]["cpu_user_s"]) + f(&report["usage"]["cpu_system_s"]);
        assert!((1.0..1.5).contains(&cpu), "{backend}: used {cpu} s of CPU");
    }
}

#[test]
pub(crate) fn cpu_limit_counts_the_whole_tree() {
    // Four children share 2 s of CPU: none of them alone comes near the limit (nor its RLIMIT_CPU).
    for backend in backends() {
        let out = pynish_on(backend)
            .args(["--cpu-time", "2s", "--wall-time", "60s", "--", &testkit(), "spin-children", "4"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 123, "{backend}");
        let report = report(&out);
        assert_eq!(report["verdict"], "cpu_time", "{backend}");
        let cpu = f(&report["usage"]["cpu_time_s"]);
        assert!((2.0..2.8).contains(&cpu), "{backend}: used {cpu} s of CPU");
        assert!(report["usage"]["max_processes"].as_u64().unwrap() >= 5, "{report}");
    }
}

#[test]
pub(crate) fn memory_limit_stops_growing_process() {
    for backend in backends() {
        let out = pynish_on(backend)
            .args(["--memory", "200MB", "--wall-time", "60s", "--", &testkit(), "alloc", "1000", "10", "5"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 122, "{backend}");
        let report = report(&out);
        assert_eq!(report["verdict"], "memory", "{backend}");
        let peak = report["usage"]["peak_memory_bytes"].as_u64().unwrap();
        assert!(peak >= 150_000_000, "{backend}: peak {peak}");
    }
}

#[test]
pub(crate) fn memory_limit_counts_the_whole_tree() {
    // Five processes of 60 MB: each is far below 200 MB, together they are not.
    for backend in backends() {
        let out = pynish_on(backend)
            .args(["--memory", "200MB", "--wall-time", "60s", "--", &testkit(), "hog-children", "5", "60"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 122, "{backend}");
        assert_eq!(report(&out)["verdict"], "memory", "{backend}");
    }
}

#[test]
pub(crate) fn virtual_memory_limit_is_per_process_rlimit() {
    let out = pynish_on("proc")
        .args(["--memory", "200MB", "--memory-kind", "virtual", "--wall-time", "60s", "--"])
        .args([&testkit(), "alloc", "1000", "10"])
        .output()
        .unwrap();
    let report = report(&out);
    assert_eq!(report["enforcement"]["memory"], "rlimit");
    assert_eq!(report["verdict"], "memory", "{report}");
    assert_eq!(code(&out), 122);
}

#[test]
pub(crate) fn process_limit_stops_forker() {
    for backend in backends() {
        let out = pynish_on(backend)
            .args(["--processes", "20", "--wall-time", "60s", "--", &testkit(), "forkbomb", "200"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 121, "{backend}");
        assert_eq!(report(&out)["verdict"], "processes", "{backend}");
    }
}

/// A caller whose hard RLIMIT_CPU is below the CPU time asked (a batch job's limit, an outer Python call's):
/// the run starts, and the command keeps the inherited hard limit, which pynish cannot raise without
/// CAP_SYS_RESOURCE (before: "cannot execute", exit 126).
#[test]
pub(crate) fn cpu_limit_above_the_inherited_hard_rlimit_runs() {
    use std::os::unix::process::CommandExt;
    for backend in backends() {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pynish"));
        for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
            cmd.env_remove(var);
        }
        // SAFETY: setrlimit is async-signal-safe, and the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 20, rlim_max: 20 };
                if libc::setrlimit(libc::RLIMIT_CPU, &limit) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.args(["--backend", backend, "--json", "--cpu-time", "30s", "--", "sh", "-c", "ulimit -H -t"]);
        let out = assert_cmd::Command::from_std(cmd).output().unwrap();
        assert_eq!(code(&out), 0, "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "20", "{backend}");
        assert_eq!(report(&out)["verdict"], "completed", "{backend}");
    }
}
