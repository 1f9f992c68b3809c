//! The command's stdin, stdout and stderr go through untouched.

use crate::util::*;

#[test]
fn twenty_megabytes_of_stdout_arrive_identical() {
    let bytes = 20_000_000usize;
    let direct = std::process::Command::new(testkit()).args(["write", &bytes.to_string()]).output().unwrap();
    let through = pynish().args(["--", &testkit(), "write", &bytes.to_string()]).output().unwrap();
    assert!(through.status.success());
    assert_eq!(through.stdout.len(), bytes);
    assert!(through.stdout == direct.stdout, "the bytes differ");
}

#[test]
fn stdin_reaches_the_command() {
    let out = pynish()
        .args(["--", "sh", "-c", "read line; echo \"got $line\"; echo err >&2"])
        .write_stdin("hello\n")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
}
