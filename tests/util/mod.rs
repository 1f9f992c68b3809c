//! Helpers shared by the integration tests.
#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

/// The built pynish, with a clean environment for its own settings (and SIGCHLD ignored, see `as_caller`).
pub fn pynish() -> Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pynish"));
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND", "PYNISH_SCHEMA"] {
        cmd.env_remove(var);
    }
    as_caller(&mut cmd);
    Command::from_std(cmd)
}

thread_local! {
    /// Set by `with_sigchld_ignored` for the test running on this thread.
    static SIGCHLD_IGNORED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether pynish is started here as by a parent that ignores SIGCHLD: inside `with_sigchld_ignored`, or for
/// the whole suite with `PYNISH_TEST_IGNORE_SIGCHLD=1 cargo test`.
pub fn sigchld_ignored() -> bool {
    SIGCHLD_IGNORED.get() || std::env::var_os("PYNISH_TEST_IGNORE_SIGCHLD").is_some_and(|v| v == "1")
}

/// Runs `test` (an existing test of the suite) with every pynish it starts through `pynish()` or
/// `harness::pynish_cmd` inheriting SIGCHLD ignored, as from some daemons and job runners.
pub fn with_sigchld_ignored(test: impl FnOnce()) {
    SIGCHLD_IGNORED.set(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
    SIGCHLD_IGNORED.set(false);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Makes `cmd` start as from the caller the test plays: SIGINT and SIGQUIT at their default, and SIGCHLD ignored
/// when `sigchld_ignored()` (set in the child before exec; an ignored signal stays ignored through exec).
///
/// The defaults are set again because pynish passes an ignored signal on as ignored, as `timeout` does: a suite
/// started in the background of a shell script (`cargo test &`) inherits SIGINT and SIGQUIT ignored, and its
/// commands would then outlive a `--signal INT` or a Ctrl-C. A test that wants a signal ignored sets it after this.
pub fn as_caller(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let ignore_sigchld = sigchld_ignored();
    // SAFETY: signal() is async-signal-safe and the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            if ignore_sigchld {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            }
            Ok(())
        });
    }
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

/// The JSON report: the last line of stderr, checked against `check_invariants` and pynish's real exit status.
pub fn report(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
        panic!("no JSON report on stderr:\n{stderr}");
    });
    let report = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON report ({e}): {line}"));
    check_invariants(code(output), &report);
    report
}

/// A report pynish wrote to a file (`--report`, or one line of a `--report-fd` log), checked against
/// `check_invariants` and `status`, pynish's exit status as a shell saw it.
pub fn report_line(text: &str, status: i32) -> Value {
    let report = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("bad JSON report ({e}): {text}"));
    check_invariants(status, &report);
    report
}

/// `report_line` of the file at `path`.
pub fn report_file(path: &std::path::Path, status: i32) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("the report {}: {e}", path.display()));
    report_line(&text, status)
}

/// The number of a signal named as in the report (`"SIGTERM"`, `"SIGRTMIN+6"`).
fn signal_number(name: &Value) -> i32 {
    let name = name.as_str().unwrap_or_else(|| panic!("not a signal name: {name}"));
    pynish::signals::parse_signal(name).unwrap_or_else(|_| panic!("unknown signal {name}")).number()
}

/// What every report must say, whatever the run (issue 10), given `status`, pynish's real exit status as a shell
/// sees it (128+N for a death by signal N):
/// - `exit_code` is that status;
/// - `completed` carries the command's own `command_exit_code`, equal to `exit_code` (`--preserve-status` only
///   changes the exit status of a limit verdict, see `verdict::decide`);
/// - `signaled` exits 128+N of the signal pynish received, else of the one that ended the command;
/// - a limit verdict exits with the limit's code, or with `--preserve-status` with the command's own status; it
///   has a first signal that reached at least one member, or else the kernel held that limit (`enforcement`
///   names `cgroup1`, `cgroup2` or `rlimit`) and did the killing, or else its figure in `usage` is over the limit
///   (found in the final figures, the tree having ended by itself);
/// - `completed` never shows a figure over a limit (issue 19);
/// - `spawn_error` exits 125, 126 or 127 and ran nothing.
pub fn check_invariants(status: i32, report: &Value) {
    let exit = report["exit_code"].as_i64().unwrap_or_else(|| panic!("exit_code is not a number: {report}")) as i32;
    assert_eq!(exit, status, "the report's exit_code is not pynish's exit status {status}: {report}");
    let esc = &report["escalation"];
    assert_eq!(esc["first_signal"].is_null(), esc["first_signal_at_s"].is_null(), "{report}");
    assert_eq!(esc["sigkill_sent"].as_bool(), Some(!esc["sigkill_at_s"].is_null()), "{report}");
    let own = match (&report["command_exit_code"], &report["signal"]) {
        (Value::Number(code), Value::Null) => Some(code.as_i64().unwrap() as i32),
        (Value::Null, Value::Null) => None,
        (Value::Null, signal) => Some(128 + signal_number(signal)),
        _ => panic!("both command_exit_code and signal are set: {report}"),
    };
    let verdict = report["verdict"].as_str().unwrap_or_else(|| panic!("no verdict: {report}"));
    let over = over_limits(report);
    let (limit_code, kind) = match verdict {
        "completed" => {
            assert!(report["command_exit_code"].is_number(), "completed without the command's exit code: {report}");
            assert_eq!(own, Some(exit), "completed, yet exit_code is not the command's: {report}");
            assert!(report["received_signal"].is_null(), "{report}");
            assert!(over.is_empty(), "completed, yet {over:?} over the limit: {report}");
            return;
        }
        "signaled" => {
            let by = if report["received_signal"].is_null() { &report["signal"] } else { &report["received_signal"] };
            assert_eq!(exit, 128 + signal_number(by), "signaled, yet not 128+N of {by}: {report}");
            return;
        }
        "spawn_error" => {
            assert!([125, 126, 127].contains(&exit), "{report}");
            assert!(report["pid"].is_null() && report["command_exit_code"].is_null(), "{report}");
            return;
        }
        "wall_time" => (124, "wall_time"),
        "cpu_time" => (123, "cpu_time"),
        "memory" => (122, "memory"),
        "processes" => (121, "processes"),
        "file_size" => (120, "file_size"),
        other => panic!("unknown verdict {other}: {report}"),
    };
    assert!(
        exit == limit_code || Some(exit) == own,
        "{verdict}: exit_code is neither {limit_code} nor (--preserve-status) the command's own status: {report}"
    );
    let signalled = esc["signalled_processes"].as_u64().unwrap_or(0);
    let by_kernel = matches!(report["enforcement"][kind].as_str(), Some("cgroup1" | "cgroup2" | "rlimit"));
    assert!(
        (!esc["first_signal"].is_null() && signalled >= 1) || by_kernel || over.contains(&kind),
        "{verdict}: no first signal reached a member, and the kernel did not hold the limit: {report}"
    );
}

/// The limits (named as verdicts) whose figure in the report's `usage` is over the limit asked for.
pub fn over_limits(report: &Value) -> Vec<&'static str> {
    let (limits, usage) = (&report["limits"], &report["usage"]);
    let over = |limit: &str, figure: &str| match (limits[limit].as_f64(), usage[figure].as_f64()) {
        (Some(limit), Some(figure)) => figure > limit,
        _ => false,
    };
    let mut found = Vec::new();
    if over("cpu_time_s", "cpu_time_s") {
        found.push("cpu_time");
    }
    if limits["memory_kind"] == "resident" && over("memory_bytes", "peak_memory_bytes") {
        found.push("memory");
    }
    if over("processes", "max_processes") {
        found.push("processes");
    }
    found
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

/// Live processes (not zombies) whose environment has `var=mark`: a census of what a test's runs left behind.
pub fn marked_alive(var: &str, mark: &str) -> Vec<i32> {
    let needle = format!("{var}={mark}\0");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.windows(needle.len()).any(|w| w == needle.as_bytes()) && pid_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Whether `program`, which a test needs, can run. Where it cannot, the test is skipped (the caller returns) with
/// the reason and the Debian package to install, so that a newcomer's `cargo test` is green; in CI (`CI` set),
/// which installs every such tool (.ci/run), it fails instead, so that nothing goes untested there.
#[must_use]
pub fn have_tool(program: &str, version_flag: &str, package: &str) -> bool {
    if std::process::Command::new(program).arg(version_flag).output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    skip_outside_ci(&format!("{program} is not installed (apt-get install {package})"));
    false
}

/// Says why the calling test is skipped; in CI (`CI` set), which installs every tool a test uses (.ci/run), fails
/// instead, so that nothing goes untested there.
pub fn skip_outside_ci(reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!ci, "CI must run every test, but {reason}");
    eprintln!("SKIP {}: {reason}", std::thread::current().name().unwrap_or("a test"));
}
