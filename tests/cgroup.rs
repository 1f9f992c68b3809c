//! The cgroup backends hold the limits in the kernel, for the whole tree, and leave nothing behind: no process
//! and no group, not even after a pynish was SIGKILLed. Each case runs on every cgroup backend this machine
//! offers; a backend that is absent is announced (by `backends()`), never silently passed.
//!
//! Every process a case starts carries a marker in its environment (`PYNISH_CGROUP_TEST`), so that survivors
//! can be found afterwards without confusing them with the processes of tests running alongside.

use crate::util::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const MARKER: &str = "PYNISH_CGROUP_TEST";

/// The kernel holds a cgroup to its limit, page cache included, so the peak it reports is the limit (rounded down
/// to whole pages) at most, but for charges it must force past the limit: those of a process the OOM killer has
/// picked and that is still exiting, and kernel allocations that may not fail. 4 MiB covers them.
const PAGE_CACHE_MARGIN: u64 = 4 << 20;

/// The cgroup backends usable here.
fn cgroup_backends() -> Vec<&'static str> {
    let found: Vec<&str> = backends().into_iter().filter(|b| b.starts_with("cgroup")).collect();
    if found.is_empty() {
        eprintln!("SKIP: no cgroup backend is usable on this machine (see `pynish check`)");
    }
    found
}

/// A marker unique to one run.
fn marker() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// pynish on `backend` with `--json`, its command marked with `mark`.
fn command(backend: &str, mark: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        cmd.env_remove(var);
    }
    cmd.env(MARKER, mark).args(["--backend", backend, "--json"]).args(args);
    cmd
}

/// Runs pynish to the end; returns its output and its pid (which names its groups).
fn run(backend: &str, mark: &str, args: &[&str]) -> (Output, i32) {
    let child = spawn_piped(command(backend, mark, args).stdin(Stdio::null()));
    let pid = child.id() as i32;
    (child.wait_with_output().expect("pynish runs"), pid)
}

fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("pynish starts")
}

/// Live processes (not zombies) that carry `mark`.
fn survivors(mark: &str) -> Vec<i32> {
    crate::util::marked_alive(MARKER, mark)
}

/// Every directory under the cgroup mounts.
fn cgroup_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                into.push(entry.path());
                walk(&entry.path(), into);
            }
        }
    }
    let mut found = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        if matches!(fields.get(dash + 1), Some(&"cgroup") | Some(&"cgroup2")) {
            walk(Path::new(fields[4]), &mut found);
        }
    }
    found
}

/// The groups of the pynish with pid `pid` (named `pynish-<pid>-<start>...`).
fn groups_of(pid: i32) -> Vec<PathBuf> {
    let prefix = format!("pynish-{pid}-");
    cgroup_dirs()
        .into_iter()
        .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect()
}

/// Nothing of the run is left: no marked process, no group of its pynish.
fn assert_nothing_left(backend: &str, mark: &str, pynish_pid: i32) {
    let alive = survivors(mark);
    for &pid in &alive {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(alive.is_empty(), "{backend}: processes {alive:?} outlived pynish");
    let groups = groups_of(pynish_pid);
    assert!(groups.is_empty(), "{backend}: groups left behind: {groups:?}");
}

fn checked(backend: &str, output: &Output, exit: i32) -> Value {
    let report = report(output);
    assert_eq!(code(output), exit, "{backend}: {report}");
    report
}

#[test]
fn memory_limit_is_held_by_the_kernel() {
    for backend in cgroup_backends() {
        let mark = marker();
        // 1 GB in chunks of 200 MB: a sampler would see the first chunk only after it had been touched.
        let (out, pid) =
            run(backend, &mark, &["--memory", "100MB", "--wall-time", "60s", "--", &testkit(), "alloc", "1000", "200"]);
        let report = checked(backend, &out, 122);
        assert_eq!(report["verdict"], "memory", "{backend}: {report}");
        assert_eq!(report["enforcement"]["memory"], backend, "{report}");
        let peak = report["usage"]["peak_memory_bytes"].as_u64().unwrap();
        assert!(peak <= 100_000_000 + PAGE_CACHE_MARGIN, "{backend}: peak {peak} beyond the limit");
        assert!(peak >= 50_000_000, "{backend}: peak {peak}: the allocation was not measured");
        eprintln!("{backend}: --memory 100MB, 1 GB allocator: peak {peak} bytes");
        assert_nothing_left(backend, &mark, pid);
    }
}

#[test]
fn fork_bomb_never_exceeds_the_process_limit() {
    for backend in cgroup_backends() {
        let mark = marker();
        let (out, pid) =
            run(backend, &mark, &["--processes", "50", "--wall-time", "60s", "--", &testkit(), "forkbomb", "2000"]);
        let report = checked(backend, &out, 121);
        assert_eq!(report["verdict"], "processes", "{backend}: {report}");
        assert_eq!(report["enforcement"]["processes"], backend, "{report}");
        // The kernel's own peak count of the group (pids.peak), when it keeps one.
        let max = report["usage"]["max_processes"].as_u64().unwrap();
        assert!((2..=50).contains(&max), "{backend}: {max} processes at once under --processes 50");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(ok) = stdout.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()) {
            assert!(ok <= 49, "{backend}: {ok} forks succeeded next to the forker itself: {stdout}");
        }
        eprintln!("{backend}: fork bomb under --processes 50: max_processes {max}; {}", stdout.trim());
        assert_nothing_left(backend, &mark, pid);
    }
}

#[test]
fn double_forked_setsid_daemon_dies_with_the_group() {
    for backend in cgroup_backends() {
        let mark = marker();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("daemon.pid");
        let pidfile = pidfile.to_str().unwrap();
        let (out, pid) =
            run(backend, &mark, &["--wall-time", "1s", "--grace", "200ms", "--", &testkit(), "daemon", pidfile]);
        checked(backend, &out, 124);
        let daemon = read_pid(Path::new(pidfile));
        assert_dead(&[daemon]);
        assert_nothing_left(backend, &mark, pid);
    }
}

#[test]
fn sub_second_cpu_limit_holds() {
    for backend in cgroup_backends() {
        let mark = marker();
        let (out, pid) = run(backend, &mark, &["--cpu-time", "300ms", "--wall-time", "60s", "--", &testkit(), "spin"]);
        let report = checked(backend, &out, 123);
        assert_eq!(report["verdict"], "cpu_time", "{backend}: {report}");
        assert_eq!(report["enforcement"]["cpu_time"], backend, "{report}");
        let cpu = f(&report["usage"]["cpu_time_s"]);
        assert!((0.3..0.6).contains(&cpu), "{backend}: {cpu} s of CPU under a 300 ms limit");
        eprintln!("{backend}: --cpu-time 300ms: used {cpu} s");
        assert_nothing_left(backend, &mark, pid);
    }
}

/// Reads the counters of the group the kernel keeps for the run: (CPU seconds, peak bytes if kept).
fn group_counters(backend: &str, groups: &[PathBuf]) -> (f64, Option<u64>) {
    let read = |name: &str| {
        groups.iter().find_map(|g| std::fs::read_to_string(g.join(name)).ok()).map(|t| t.trim().to_string())
    };
    let keyed = |text: String, key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok()).expect("a keyed counter")
    };
    if backend == "cgroup1" {
        let cpu = read("cpuacct.usage").expect("cpuacct.usage").parse::<u64>().unwrap() as f64 / 1e9;
        (cpu, read("memory.max_usage_in_bytes").and_then(|t| t.parse().ok()))
    } else {
        let cpu = keyed(read("cpu.stat").expect("cpu.stat"), "usage_usec ") as f64 / 1e6;
        (cpu, read("memory.peak").and_then(|t| t.parse().ok()))
    }
}

/// Ends pynish (and so the run) if a check fails halfway.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // Only a pynish not reaped yet: its pid cannot have been reused.
        if let Ok(None) = self.0.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

#[test]
fn reported_usage_agrees_with_the_groups_counters() {
    // One shell holds 100 MB and burns about two seconds of CPU, says "ready" and waits for a line: meanwhile
    // the group's counters stand still and are read; then it exits (freeing 100 MB costs a few milliseconds of
    // CPU more) and pynish reports.
    let script = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); i=0; \
                  while [ $i -lt 1500000 ]; do i=$((i+1)); done; echo ready; read line";
    for backend in cgroup_backends() {
        let mark = marker();
        let child = spawn_piped(
            command(backend, &mark, &["--wall-time", "120s", "--", "sh", "-c", script]).stdin(Stdio::piped()),
        );
        let pid = child.id() as i32;
        let mut guard = Guard(child);
        let mut stdout = BufReader::new(guard.0.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{backend}: the workload did not start");
        // Not the leaf pynish may have moved itself into under cgroup v2 (`...-supervisor`).
        let groups: Vec<PathBuf> =
            groups_of(pid).into_iter().filter(|g| !g.to_string_lossy().ends_with("-supervisor")).collect();
        let (cpu, peak) = group_counters(backend, &groups);
        writeln!(guard.0.stdin.take().unwrap(), "go").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut guard.0.stderr.take().unwrap(), &mut stderr).unwrap();
        let status = guard.0.wait().unwrap();
        assert!(status.success(), "{backend}: {stderr}");
        let json = stderr.lines().rev().find(|l| l.starts_with('{')).expect("a report");
        let report = crate::util::report_line(json, crate::harness::shell_code(status));

        let reported_cpu = f(&report["usage"]["cpu_time_s"]);
        let diff = (reported_cpu - cpu).abs() / cpu;
        eprintln!("{backend}: CPU reported {reported_cpu} s, group {cpu} s ({:.2} %)", diff * 100.0);
        assert!(diff <= 0.02, "{backend}: CPU reported {reported_cpu} s, the group counted {cpu} s");
        match peak {
            Some(peak) => {
                let reported = report["usage"]["peak_memory_bytes"].as_u64().unwrap();
                let diff = (reported as f64 - peak as f64).abs() / peak as f64;
                eprintln!("{backend}: peak reported {reported}, group {peak} ({:.2} %)", diff * 100.0);
                assert!(diff <= 0.02, "{backend}: peak reported {reported}, the group counted {peak}");
                assert!(peak >= 100_000_000, "{backend}: the group's peak {peak} misses the 100 MB held");
            }
            None => eprintln!("SKIP {backend}: this kernel keeps no peak for the group (memory.peak is 5.19+)"),
        }
        assert_nothing_left(backend, &mark, pid);
    }
}

#[test]
fn next_run_sweeps_the_tree_of_a_sigkilled_pynish() {
    for backend in cgroup_backends() {
        let mark = marker();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("daemon.pid");
        let script = format!(
            "{} daemon {} & while [ ! -s {} ]; do sleep 0.01; done; echo ready; exec sleep 100",
            testkit(),
            pidfile.display(),
            pidfile.display()
        );
        let child = spawn_piped(&mut command(backend, &mark, &["--wall-time", "60s", "--", "sh", "-c", &script]));
        let pid = child.id() as i32;
        let mut guard = Guard(child);
        let mut line = String::new();
        BufReader::new(guard.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{backend}: the workload did not start");
        let daemon = read_pid(&pidfile);
        // pynish dies without a chance to clean up; its command dies with it (PR_SET_PDEATHSIG), the daemon
        // does not.
        guard.0.kill().unwrap();
        guard.0.wait().unwrap();
        eprintln!("{backend}: after SIGKILL: daemon alive {}, groups {:?}", pid_alive(daemon), groups_of(pid));

        let (out, next) = run(backend, &marker(), &["--", "true"]);
        checked(backend, &out, 0);
        assert_dead(&[daemon]);
        assert_nothing_left(backend, &mark, pid);
        assert_nothing_left(backend, &mark, next);
    }
}
