//! Messages say what really happened: the mechanism that found a limit crossed, and why a command could not be
//! started, with the errno's own words (as bash and GNU timeout say them).

use crate::util::*;
use std::os::unix::fs::PermissionsExt;

/// The one line pynish said on stderr (no `--json`).
fn said(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim_end().to_string()
}

#[test]
fn proc_names_the_final_figures_check_not_the_kernel() {
    let out = pynish().args(["--backend", "proc", "--memory", "1MB", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 122);
    let line = said(&out);
    assert!(!line.contains("enforced by the kernel"), "{line}");
    assert!(line.contains("peak resident memory") && line.contains("nothing was signalled"), "{line}");
}

#[test]
fn a_missing_interpreter_is_a_bad_interpreter_not_a_missing_command() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/nonexistent/interp\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = pynish_on("proc").arg("--").arg(&script).output().unwrap();
    assert_eq!(code(&out), 126, "{}", said(&out));
    let report = report(&out);
    assert_eq!(report["verdict"], "spawn_error");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.ends_with("cannot execute: bad interpreter /nonexistent/interp: No such file or directory"),
        "{error}"
    );
    let stderr = said(&out);
    assert!(stderr.contains("bad interpreter /nonexistent/interp: No such file or directory"), "{stderr}");
}

#[test]
fn a_directory_is_said_to_be_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = pynish().arg("--").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 126);
    assert!(said(&out).ends_with("cannot execute: Is a directory"), "{}", said(&out));
}

#[test]
fn a_file_without_execute_permission_is_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "echo hi\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = pynish().arg("--").arg(&file).output().unwrap();
    assert_eq!(code(&out), 126);
    assert!(said(&out).ends_with("cannot execute: Permission denied"), "{}", said(&out));
    // Found on PATH the same way.
    let out = pynish().env("PATH", dir.path()).args(["--", "plain"]).output().unwrap();
    assert_eq!(code(&out), 126);
    assert!(said(&out).ends_with("plain: cannot execute: Permission denied"), "{}", said(&out));
}

#[test]
fn a_missing_command_is_still_not_found() {
    let out = pynish().args(["--", "/nonexistent/command"]).output().unwrap();
    assert_eq!(code(&out), 127);
    assert!(said(&out).ends_with("/nonexistent/command: command not found"), "{}", said(&out));
}
