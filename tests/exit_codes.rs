//! The exit-code contract: the command's own code, 128+N, the limit codes, and 125-127.

use crate::util::*;

#[test]
pub(crate) fn own_exit_code_passes_through() {
    let out = pynish_on("proc").args(["--", "sh", "-c", "exit 3"]).output().unwrap();
    assert_eq!(code(&out), 3);
    let report = report(&out);
    assert_eq!(report["verdict"], "completed");
    assert_eq!(report["command_exit_code"], 3);
}

#[test]
pub(crate) fn foreign_signal_gives_128_plus_n() {
    let out = pynish_on("proc").args(["--", "sh", "-c", "kill -SEGV $$"]).output().unwrap();
    assert_eq!(code(&out), 139);
    let report = report(&out);
    assert_eq!(report["verdict"], "signaled");
    assert_eq!(report["signal"], "SIGSEGV");
}

#[test]
pub(crate) fn missing_command_is_127() {
    let out = pynish_on("proc").args(["--", "no-such-command-pynish"]).output().unwrap();
    assert_eq!(code(&out), 127);
    assert_eq!(report(&out)["verdict"], "spawn_error");
}

#[test]
pub(crate) fn non_executable_file_is_126() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let out = pynish_on("proc").arg("--").arg(&file).output().unwrap();
    assert_eq!(code(&out), 126);
    assert_eq!(report(&out)["verdict"], "spawn_error");
}

#[test]
fn bad_input_is_125_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let bad: &[&[&str]] = &[
        &["--memory", "12XB"],
        &["--memory", "99999999TB"],
        &["--wall-time", "-1s"],
        &["--wall-time", "0"],
        &["--cpu-time", "abc"],
        &["--processes", "0"],
        &["--signal", "NOPE"],
        &["--no-such-flag"],
        &["--memory"],
        &["--backend", "nope"],
        &["--report", "/no/such/dir/report.json"],
    ];
    for args in bad {
        let out = pynish().args(*args).arg("--").arg("touch").arg(&marker).output().unwrap();
        assert_eq!(code(&out), 125, "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line expected, got:\n{stderr}");
        assert!(stderr.starts_with("pynish: "), "{stderr}");
        assert!(!marker.exists(), "{args:?} ran the command");
    }
    let out = pynish().output().unwrap();
    assert_eq!(code(&out), 125, "a missing command is bad input");
}

#[test]
fn grace_without_limits_is_fine() {
    pynish().args(["--grace", "5s", "--", "true"]).assert().success();
}
