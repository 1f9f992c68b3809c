//! Soft limits (`--soft-wall-time`, `--soft-cpu-time`, `--soft-memory`, `--soft-signal`): the tree is warned once
//! per soft limit and goes on under its hard limits; the verdict is what the command then did.

use crate::util::*;

/// Reads the one soft entry of `r` for `limit`, checking there is exactly one.
fn soft_once(r: &serde_json::Value, limit: &str) -> f64 {
    let soft = r["soft"].as_array().unwrap_or_else(|| panic!("no soft list: {r}"));
    let hits: Vec<_> = soft.iter().filter(|hit| hit["limit"] == limit).collect();
    assert_eq!(hits.len(), 1, "{limit} warned once: {r}");
    assert!(hits[0]["signalled_processes"].as_u64().unwrap() >= 1, "{r}");
    hits[0]["at_s"].as_f64().unwrap()
}

#[test]
fn a_shell_hears_the_soft_wall_time_and_exits_by_itself() {
    let out = pynish_on("proc")
        .args(["--soft-wall-time", "1s", "--soft-signal", "USR1", "--wall-time", "20s", "--", "sh", "-c"])
        .arg("trap 'echo warned; exit 0' USR1; while :; do sleep 0.05; done")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "warned\n");
    let r = report(&out);
    assert_eq!(r["verdict"], "completed");
    let at = soft_once(&r, "wall_time");
    assert!((0.9..2.0).contains(&at), "warned at {at} s");
    assert_eq!(r["limits"]["soft_wall_time_s"], 1.0);
    assert_eq!(r["limits"]["soft_signal"], "SIGUSR1");
}

#[test]
fn a_spinner_hears_the_soft_cpu_time_at_its_cpu_second() {
    // The spinner prints the CPU time it had used when the warning came, then exits 0.
    let script = "import signal, sys, time\n\
                  def warned(*_):\n    print(time.process_time()); sys.exit(0)\n\
                  signal.signal(signal.SIGUSR1, warned)\n\
                  while True: pass\n";
    let out = pynish_on("proc")
        .args(["--soft-cpu-time", "1s", "--soft-signal", "USR1", "--cpu-time", "30s", "--wall-time", "60s"])
        .args(["--", "python3", "-c", script])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    let cpu: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the spinner's CPU time");
    assert!((0.9..2.0).contains(&cpu), "warned at {cpu} s of CPU");
    let r = report(&out);
    assert_eq!(r["verdict"], "completed");
    soft_once(&r, "cpu_time");
}

#[test]
fn soft_memory_warns_exactly_once_and_the_run_completes() {
    crate::harness::each_backend(|backend| {
        let script = "import signal, time\n\
                      n = [0]\n\
                      signal.signal(signal.SIGURG, lambda *_: n.__setitem__(0, n[0] + 1))\n\
                      b = bytearray(200 << 20)\n\
                      for i in range(0, len(b), 4096): b[i] = 1\n\
                      time.sleep(0.5)\n\
                      print(n[0])\n";
        let out = pynish_on(backend)
            .args(["--soft-memory", "100MB", "--memory", "1GB", "--wall-time", "60s", "--", "python3", "-c", script])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{backend}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n", "{backend}: warned once");
        let r = report(&out);
        assert_eq!(r["verdict"], "completed", "{backend}");
        soft_once(&r, "memory");
        assert_eq!(r["limits"]["soft_signal"], "SIGURG");
    });
}

#[test]
fn an_unheard_warning_changes_nothing_and_an_unhandled_one_is_the_verdict() {
    // SIGURG, the default, is ignored: the command runs to its end.
    let out = pynish_on("proc").args(["--soft-wall-time", "0.3s", "--", "sleep", "1"]).output().unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    let r = report(&out);
    assert_eq!(r["verdict"], "completed");
    soft_once(&r, "wall_time");
    // A warning the command does not handle (TERM) ends it: that soft limit is the verdict.
    let out = pynish()
        .args(["--soft-wall-time", "0.3s", "--soft-signal", "TERM", "--wall-time", "30s", "--", "sleep", "10"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 124, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("soft wall-time limit 300ms reached; its warning SIGTERM ended the command"), "{stderr}");
}

#[test]
fn a_soft_limit_at_or_above_its_hard_one_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for args in [
        ["--soft-wall-time", "2s", "--wall-time", "2s"],
        ["--soft-cpu-time", "3s", "--cpu-time", "2s"],
        ["--soft-memory", "1GB", "--memory", "100MB"],
    ] {
        let out = pynish().args(args).arg("--").arg("touch").arg(&marker).output().unwrap();
        assert_eq!(code(&out), 125, "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("must be below"), "{stderr}");
        assert!(!marker.exists(), "{args:?} ran the command");
    }
    let out = pynish()
        .args(["--soft-wall-time", "1s", "--wall-time", "2s", "--"])
        .arg("touch")
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert!(marker.exists(), "soft below hard runs");
}

#[test]
fn a_soft_signal_that_cannot_be_handled_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for signal in ["KILL", "9", "STOP", "SIGSTOP"] {
        let out = pynish()
            .args(["--soft-wall-time", "1s", "--wall-time", "5s", "--soft-signal", signal, "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 125, "--soft-signal {signal}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("cannot be handled, so it cannot warn"), "{stderr}");
        assert!(!marker.exists(), "--soft-signal {signal} ran the command");
    }
}
