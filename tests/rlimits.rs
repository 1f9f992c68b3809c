//! Per-process rlimits for the whole tree (`--open-files`, `--file-size`, `--stack`, `--core-size`): set before
//! exec, inherited by every descendant, a SIGXFSZ death named `file_size` (exit 120), and a value above the
//! caller's hard limit refused, never capped.

use crate::harness::each_backend;
use crate::util::*;

#[test]
fn a_grandchild_inherits_every_rlimit() {
    each_backend(|backend| {
        let out = pynish_on(backend)
            .args(["--open-files", "16", "--stack", "4MiB", "--core-size", "0", "--", "sh", "-c"])
            .arg("sh -c 'ulimit -n; ulimit -s; ulimit -c'; true")
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{backend}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "16\n4096\n0\n", "{backend}");
        let r = report(&out);
        assert_eq!(r["limits"]["open_files"], 16, "{backend}: {r}");
        assert_eq!(r["limits"]["stack_bytes"], 4u64 << 20, "{backend}: {r}");
        assert_eq!(r["limits"]["core_size_bytes"], 0, "{backend}: {r}");
        assert_eq!(r["verdict"], "completed");
    });
}

#[test]
fn writing_past_the_file_size_limit_is_a_limit_hit() {
    each_backend(|backend| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        let out = pynish_on(backend)
            .args(["--file-size", "1MiB", "--", "dd", "if=/dev/zero", "bs=64k", "count=100"])
            .arg(format!("of={}", file.display()))
            .output()
            .unwrap();
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size <= 1 << 20, "{backend}: the file grew to {size} bytes");
        assert_eq!(code(&out), 120, "{backend}: {out:?}");
        let r = report(&out);
        assert_eq!(r["verdict"], "file_size", "{backend}: {r}");
        assert_eq!(r["signal"], "SIGXFSZ");
        assert_eq!(r["limits"]["file_size_bytes"], 1u64 << 20);
        assert_eq!(r["enforcement"]["file_size"], "rlimit");
        // Without --json, one line says so.
        let out = pynish()
            .args(["--backend", backend, "--file-size", "64KiB", "--", "dd", "if=/dev/zero", "bs=64k", "count=4"])
            .arg(format!("of={}", file.display()))
            .output()
            .unwrap();
        assert_eq!(code(&out), 120);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("pynish: file-size limit 64KiB reached") && stderr.contains("SIGXFSZ"), "{stderr}");
    });
}

#[test]
fn a_command_that_stays_below_the_file_size_limit_completes() {
    let dir = tempfile::tempdir().unwrap();
    let out = pynish_on("proc")
        .args(["--file-size", "1MiB", "--", "dd", "if=/dev/zero", "bs=64k", "count=4"])
        .arg(format!("of={}", dir.path().join("small").display()))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(report(&out)["verdict"], "completed");
}

#[test]
fn an_rlimit_above_the_inherited_hard_limit_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    // Writable by the unprivileged user below, so that only pynish's refusal keeps the marker away.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A shell lowers its hard limit (which nobody may raise back without CAP_SYS_RESOURCE), then runs pynish
    // asking for more, as a job under a batch system's limits would. As an unprivileged user (setpriv, where the
    // test runs as root), so that the refusal does not depend on the capabilities of whoever runs the tests.
    let mut sh = std::process::Command::new("sh");
    let script =
        format!("ulimit -n 64; exec {} --open-files 100 -- touch {}", env!("CARGO_BIN_EXE_pynish"), marker.display());
    if nix::unistd::geteuid().is_root() {
        sh = std::process::Command::new("setpriv");
        sh.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--", "sh"]);
    }
    let out = sh.args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--open-files 100 is above the hard limit 64"), "{stderr}");
    assert!(!marker.exists(), "the command ran");
}
