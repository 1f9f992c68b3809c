//! The JSON report is a public contract: its keys are checked exactly, so any change breaks a test on purpose.

use crate::util::*;

const TOP: &[&str] = &[
    "schema",
    "label",
    "verdict",
    "exit_code",
    "command_exit_code",
    "signal",
    "received_signal",
    "limits",
    "usage",
    "escalation",
    "backend",
    "enforcement",
    "command",
    "pid",
    "error",
    "started_at",
    "hostname",
    "soft",
    "oom",
    "fork_refused",
    "output",
];

fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    names.sort();
    names
}

#[test]
fn report_has_exactly_the_documented_fields() {
    let out = pynish_on("proc")
        .args(["--wall-time", "5s", "--memory", "1GiB", "--label", "nightly", "--", "true"])
        .output()
        .unwrap();
    let r = report(&out);
    assert_eq!(keys(&r), sorted(TOP));
    assert_eq!(
        keys(&r["usage"]),
        sorted(&[
            "wall_time_s",
            "cpu_user_s",
            "cpu_system_s",
            "cpu_time_s",
            "peak_memory_bytes",
            "max_processes",
            "io_read_bytes",
            "io_write_bytes"
        ])
    );
    assert_eq!(
        keys(&r["limits"]),
        sorted(&[
            "wall_time_s",
            "cpu_time_s",
            "memory_bytes",
            "memory_kind",
            "processes",
            "grace_s",
            "signal",
            "open_files",
            "file_size_bytes",
            "stack_bytes",
            "core_size_bytes",
            "soft_wall_time_s",
            "soft_cpu_time_s",
            "soft_memory_bytes",
            "soft_signal",
            "cpus",
            "cpu_quota"
        ])
    );
    assert_eq!(
        keys(&r["escalation"]),
        sorted(&[
            "first_signal",
            "first_signal_at_s",
            "signalled_processes",
            "sigkill_sent",
            "sigkill_at_s",
            "killed_processes"
        ])
    );
    assert_eq!(
        keys(&r["enforcement"]),
        sorted(&["wall_time", "cpu_time", "memory", "processes", "file_size", "cpus", "cpu_quota"])
    );
    assert_eq!(r["schema"], pynish::report::SCHEMA);
    assert_eq!(r["label"], "nightly");
    assert_eq!(r["limits"]["memory_bytes"], 1u64 << 30);
    assert_eq!(r["limits"]["wall_time_s"], 5.0);
    assert_eq!(r["enforcement"]["wall_time"], "timer");
    assert_eq!(r["enforcement"]["memory"], "proc");
    assert!(r["enforcement"]["cpu_time"].is_null());
    assert_eq!(r["command"], serde_json::json!(["true"]));
    assert!(r["pid"].as_i64().unwrap() > 0);
    assert!(r["output"].is_null(), "no --output: output is null");
}

#[test]
fn report_file_is_written_atomically_and_matches_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let out = pynish_on("proc").arg("--report").arg(&path).args(["--", "sh", "-c", "exit 4"]).output().unwrap();
    assert_eq!(code(&out), 4);
    let from_file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(from_file, report(&out));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file stays behind");
}

#[test]
fn plain_run_prints_nothing_and_limit_prints_one_line() {
    let out = pynish().args(["--", "true"]).output().unwrap();
    assert!(out.stderr.is_empty());
    let out = pynish().args(["--wall-time", "300ms", "--grace", "2s", "--", "sleep", "10"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "pynish: wall-time limit 300ms reached; sent SIGTERM, the command ended within the 2s grace\n");
    let out = pynish().args(["-q", "--wall-time", "300ms", "--", "sleep", "10"]).output().unwrap();
    assert!(out.stderr.is_empty());
    assert_eq!(code(&out), 124);
}

#[test]
fn the_report_says_when_and_where_the_run_started() {
    let before = std::time::SystemTime::now();
    let out = pynish_on("proc").args(["--", "true"]).output().unwrap();
    let after = std::time::SystemTime::now();
    let r = report(&out);
    let text = r["started_at"].as_str().expect("started_at is text");
    assert!(text.ends_with('Z'), "RFC 3339 in UTC: {text}");
    let at = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    // The report keeps microseconds; `before` may fall inside the same microsecond.
    let slack = std::time::Duration::from_millis(1);
    assert!(at + slack >= before && at <= after, "{text} is not within the run");
    let hostname = std::process::Command::new("hostname").output().expect("hostname runs");
    assert_eq!(r["hostname"], String::from_utf8_lossy(&hostname.stdout).trim());
    let spawn_error = report(&pynish_on("proc").args(["--", "/nonexistent/pynish-when"]).output().unwrap());
    assert!(spawn_error["started_at"].is_string() && spawn_error["hostname"] == r["hostname"], "{spawn_error}");
}
