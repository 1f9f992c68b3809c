//! Helpers shared by the integration tests.
#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

/// The built pynish, with a clean environment for its own settings.
pub fn pynish() -> Command {
    let mut cmd = Command::cargo_bin("pynish").expect("pynish is built");
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        cmd.env_remove(var);
    }
    cmd
}

/// pynish with `--backend BACKEND --json`, the form most tests use.
pub fn pynish_on(backend: &str) -> Command {
    let mut cmd = pynish();
    cmd.args(["--backend", backend, "--json"]);
    cmd
}

/// The workload helper built from examples/testkit.rs.
pub fn testkit() -> String {
    let mut dir = PathBuf::from(env!("CARGO_BIN_EXE_pynish"));
    dir.pop();
    let path = dir.join("examples").join("testkit");
    assert!(path.exists(), "{} is missing: cargo test builds examples", path.display());
    path.to_string_lossy().into_owned()
}

/// The JSON report: the last line of stderr.
pub fn report(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
        panic!("no JSON report on stderr:\n{stderr}");
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON report ({e}): {line}"))
}

pub fn code(output: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    output.status.code().unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0))
}

/// Runs and returns (output, wall time).
pub fn timed(cmd: &mut Command) -> (Output, Duration) {
    let start = Instant::now();
    let output = cmd.output().expect("pynish runs");
    (output, start.elapsed())
}

/// True while `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Reads a pid a workload wrote to `path`.
pub fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().parse().expect("a pid")
}

/// Backends usable on this machine; a missing one is announced, not silently passed.
pub fn backends() -> Vec<&'static str> {
    let mut found = vec!["proc"];
    for backend in ["cgroup1", "cgroup2"] {
        let out = pynish().args(["--backend", backend, "--", "true"]).output().expect("pynish runs");
        if out.status.success() {
            found.push(backend);
        } else {
            eprintln!("SKIP backend {backend} on this machine: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    found
}

/// Every test that forks runs its tree under pynish; this asserts pynish left nothing behind it, for the pids
/// the workload told us about.
pub fn assert_dead(pids: &[i32]) {
    for &pid in pids {
        assert!(!pid_alive(pid), "process {pid} outlived pynish");
    }
}

pub fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}
