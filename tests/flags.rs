//! The flags that fit pynish into scripts: `--report-fd` with a descriptor the shell opened, `--label`, `-v`
//! and `-q`, and the `PYNISH_*` house defaults with a flag on the command line winning over them.

use crate::util::*;
use serde_json::Value;

/// Runs `script` in bash with `$1` the built pynish and `$2`.. `args`, and a clean `PYNISH_*` environment.
fn bash(script: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", script, "bash", env!("CARGO_BIN_EXE_pynish")]).args(args);
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        cmd.env_remove(var);
    }
    cmd.output().expect("bash runs")
}

fn json_lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {line}"))).collect()
}

#[test]
fn report_fd_writes_the_report_to_a_descriptor_the_shell_opened() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.json");
    let out =
        bash(r#""$1" --report-fd 3 --label "nightly backup" -- sh -c 'exit 3' 3>"$2""#, &[file.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(out.stderr.is_empty(), "no --json, so nothing on stderr: {}", String::from_utf8_lossy(&out.stderr));
    let reports = json_lines(&file);
    assert_eq!(reports.len(), 1);
    crate::util::check_invariants(3, &reports[0]);
    assert_eq!(reports[0]["verdict"], "completed");
    assert_eq!(reports[0]["command_exit_code"], 3);
    assert_eq!(reports[0]["label"], "nightly backup");
}

#[test]
fn report_fd_appends_one_line_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs.jsonl");
    let script = r#"
        "$1" --report-fd 3 --label first -- true 3>>"$2"
        "$1" --report-fd 3 --label second --wall-time 200ms -- sleep 30 3>>"$2"
        exit 0
    "#;
    let out = bash(script, &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reports = json_lines(&file);
    let summary: Vec<(&str, &str)> =
        reports.iter().map(|r| (r["label"].as_str().unwrap(), r["verdict"].as_str().unwrap())).collect();
    assert_eq!(summary, [("first", "completed"), ("second", "wall_time")]);
    crate::util::check_invariants(0, &reports[0]);
    crate::util::check_invariants(124, &reports[1]);
}

#[test]
fn report_fd_that_is_not_open_is_bad_input_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let out = bash(r#"exec 9>&-; "$1" --report-fd 9 -- touch "$2""#, &[marker.to_str().unwrap()]);
    assert_eq!(code(&out), 125);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report-fd 9"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn verbose_prints_one_line_per_supervision_event() {
    let out = pynish().args(["-v", "--wall-time", "200ms", "--grace", "1s", "--", "sleep", "30"]).output().unwrap();
    assert_eq!(code(&out), 124);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "expected several event lines:\n{stderr}");
    assert!(lines.iter().all(|l| l.starts_with("pynish: ")), "every line is pynish's own:\n{stderr}");
    assert!(lines.iter().any(|l| l.contains("backend")), "the backend is announced:\n{stderr}");
    assert!(lines.iter().any(|l| l.contains("wall-time limit")), "the limit hit is announced:\n{stderr}");
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "the signal sent is announced:\n{stderr}");
}

#[test]
fn without_verbose_a_run_within_its_limits_prints_nothing() {
    let out = pynish().args(["--wall-time", "5s", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 0);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = pynish().args(["-v", "--wall-time", "5s", "--", "true"]).output().unwrap();
    assert!(!out.stderr.is_empty(), "-v says what happened even when all went well");
}

#[test]
fn quiet_silences_the_limit_line() {
    let out = pynish().args(["-q", "--wall-time", "200ms", "--", "sleep", "30"]).output().unwrap();
    assert_eq!(code(&out), 124);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn environment_sets_the_defaults() {
    let out = pynish()
        .env("PYNISH_GRACE", "300ms")
        .env("PYNISH_SIGNAL", "INT")
        .env("PYNISH_BACKEND", "proc")
        .args(["--json", "--wall-time", "200ms", "--", "sleep", "30"])
        .output()
        .unwrap();
    let r = report(&out);
    assert_eq!(r["limits"]["grace_s"], 0.3);
    assert_eq!(r["limits"]["signal"], "SIGINT");
    assert_eq!(r["escalation"]["first_signal"], "SIGINT");
    assert_eq!(r["backend"], "proc");
}

#[test]
fn a_flag_wins_over_the_environment() {
    let out = pynish()
        .env("PYNISH_GRACE", "30s")
        .env("PYNISH_SIGNAL", "INT")
        .env("PYNISH_BACKEND", "cgroup2")
        .args(["--json", "--grace", "1s", "--signal", "HUP", "--backend", "proc", "--", "true"])
        .output()
        .unwrap();
    let r = report(&out);
    assert_eq!(r["limits"]["grace_s"], 1.0);
    assert_eq!(r["limits"]["signal"], "SIGHUP");
    assert_eq!(r["backend"], "proc");
}

#[test]
fn a_bad_environment_value_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let out = pynish().env("PYNISH_GRACE", "soon").args(["--", "touch"]).arg(&marker).output().unwrap();
    assert_eq!(code(&out), 125);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("soon"), "{stderr}");
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn delegate_changes_nothing_where_a_scope_cannot_help() {
    // This machine's cgroup v2 mount offers no controllers (they are bound to v1): no re-run, the best backend
    // here runs the command.
    let out = pynish().args(["--delegate", "--json", "--", "sh", "-c", "exit 5"]).output().unwrap();
    assert_eq!(crate::util::code(&out), 5);
    let report = crate::util::report(&out);
    assert_eq!(report["verdict"], "completed");
    assert!(report["backend"].is_string());
}
