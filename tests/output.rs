//! The command's output under pressure, and pynish's own output when its readers go away: big streams arrive
//! byte for byte, a closed stdout or stderr neither hangs pynish nor costs the report, the exit code or the
//! tree's death.

use crate::harness::*;
use crate::util::testkit;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The 64 KiB pattern `testkit write` repeats.
fn pattern() -> Vec<u8> {
    (0..65536u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect()
}

/// Reads `stream` to the end, checking every byte against the repeated pattern; returns (bytes, first mismatch).
fn check_stream(mut stream: impl Read) -> (u64, Option<u64>) {
    let pattern = pattern();
    let mut buf = vec![0u8; 1 << 16];
    let (mut total, mut mismatch) = (0u64, None);
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read: {e}"),
        };
        let mut done = 0;
        while done < n && mismatch.is_none() {
            let at = ((total + done as u64) % pattern.len() as u64) as usize;
            let len = (n - done).min(pattern.len() - at);
            if buf[done..done + len] != pattern[at..at + len] {
                mismatch = Some(total + done as u64);
            }
            done += len;
        }
        total += n as u64;
    }
    (total, mismatch)
}

#[test]
fn two_hundred_megabytes_on_stdout_and_stderr_at_once_arrive_identical() {
    const BYTES: u64 = 200_000_000;
    let script = format!("{tk} write {BYTES} & {tk} write {BYTES} >&2; wait", tk = testkit());
    each_backend(|backend| {
        let scene = Scene::new("big-output");
        // No --json: pynish's stderr must carry the command's bytes and nothing else.
        let mut child = pynish_cmd(&scene.tag)
            .args(["--backend", backend, "--report"])
            .arg(scene.path("report.json"))
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || check_stream(out));
        let err = std::thread::spawn(move || check_stream(err));
        let status = wait_timeout(&mut child, Duration::from_secs(60)).expect("pynish ended");
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        assert_eq!(shell_code(status), 0, "{backend}");
        assert_eq!(out, (BYTES, None), "{backend}: stdout (bytes, first differing offset)");
        assert_eq!(err, (BYTES, None), "{backend}: stderr (bytes, first differing offset)");
        let report = crate::util::report_file(&scene.path("report.json"), shell_code(status));
        assert_eq!(report["verdict"], "completed", "{backend}");
    });
}

/// `sh -c "pynish ... | head -c1"`: returns (pynish's exit status as the shell saw it, time taken).
fn through_head(scene: &Scene, pynish_args: &str) -> (i32, Duration) {
    let line = format!(
        "{pynish} --report {report} {pynish_args} | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}} > {status}",
        pynish = env!("CARGO_BIN_EXE_pynish"),
        report = scene.file("report.json"),
        status = scene.file("status"),
    );
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &line]).env(TAG_VAR, &scene.tag).stdin(Stdio::null()).stderr(Stdio::null());
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        cmd.env_remove(var);
    }
    close_extra_fds(&mut cmd, &[]);
    let mut child = cmd.spawn().unwrap();
    assert!(wait_timeout(&mut child, PATIENCE).is_some(), "pynish hung on a closed stdout");
    let took = start.elapsed();
    (wait_file(&scene.path("status")).trim().parse().unwrap(), took)
}

#[test]
fn closed_stdout_neither_hangs_pynish_nor_loses_its_report() {
    each_backend(|backend| {
        let scene = Scene::new("head");
        let (status, took) = through_head(&scene, &format!("--backend {backend} --json -- yes"));
        assert!(took < Duration::from_secs(10), "{backend}: took {took:?}");
        let report = crate::util::report_file(&scene.path("report.json"), status);
        // yes dies of SIGPIPE; pynish reports it and ends the same way.
        assert_eq!(report["verdict"], "signaled", "{backend}: {report}");
        assert_eq!(report["signal"], "SIGPIPE", "{backend}: {report}");
        assert_eq!(status, 128 + libc::SIGPIPE, "{backend}");
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn closed_stdout_with_a_command_that_ignores_sigpipe_ends_with_its_status() {
    each_backend(|backend| {
        let scene = Scene::new("head-ign");
        let (status, took) = through_head(&scene, &format!("--backend {backend} -- sh -c \"trap '' PIPE; exec yes\""));
        assert!(took < Duration::from_secs(10), "{backend}: took {took:?}");
        let report = crate::util::report_file(&scene.path("report.json"), status);
        assert_eq!(report["verdict"], "completed", "{backend}: {report}");
        assert_eq!(report["command_exit_code"], 1, "{backend}: yes fails with EPIPE: {report}");
        assert_eq!(status, 1, "{backend}");
        assert_run_gone(&scene.tag, &[]);
    });
}

/// A pipe whose read end is already closed, for pynish's stderr.
fn broken_pipe() -> std::os::fd::OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

#[test]
fn broken_stderr_does_not_change_the_exit_code() {
    // pynish's one-line message for a limit hit goes to stderr; a reader that went away must not turn the
    // documented 124 into a panic's 101.
    each_backend(|backend| {
        let scene = Scene::new("epipe-exit");
        let mut cmd = pynish_cmd(&scene.tag);
        cmd.args(["--backend", backend, "--wall-time", "300ms", "--", "sleep", "30"]);
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(broken_pipe()).spawn().unwrap();
        let status = wait_timeout(&mut child, PATIENCE).expect("pynish ended");
        assert_eq!(shell_code(status), 124, "{backend}: pynish ended with {status:?}");
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn broken_stderr_does_not_change_the_exit_code_of_a_bad_command() {
    let scene = Scene::new("epipe-127");
    let mut cmd = pynish_cmd(&scene.tag);
    cmd.args(["--", "no-such-command-pynish-test"]);
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(broken_pipe()).spawn().unwrap();
    let status = wait_timeout(&mut child, PATIENCE).expect("pynish ended");
    assert_eq!(shell_code(status), 127, "pynish ended with {status:?}");
}

#[test]
fn stderr_closing_mid_run_does_not_let_the_tree_escape() {
    // With -v pynish writes a line per event. Its reader goes away after two lines; the next line fails with
    // EPIPE. Whatever pynish does about it, the daemonized grandchild must not outlive it, and the report file
    // must still be written.
    each_backend(|backend| {
        let scene = Scene::new("epipe-tree");
        let script = format!("{} daemon \"$1\" & sleep 30", testkit());
        let mut child = pynish_cmd(&scene.tag)
            .args(["--backend", backend, "-v", "--wall-time", "1s", "--grace", "200ms", "--report"])
            .arg(scene.path("report.json"))
            .args(["--", "sh", "-c", &script, "sh"])
            .arg(scene.path("daemon.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        for _ in 0..2 {
            stderr.read_line(&mut first).unwrap();
        }
        let daemon = wait_pids(&scene.path("daemon.pid"));
        drop(stderr);
        let status = wait_timeout(&mut child, PATIENCE).expect("pynish ended");
        // Allow for a PR_SET_PDEATHSIG kill still in flight if pynish died early.
        wait_until(Duration::from_secs(2), || survivors(&scene.tag).is_empty());
        let left = survivors(&scene.tag);
        assert!(
            left.is_empty(),
            "{backend}: processes {left:?} outlived pynish (which ended with {status:?}; daemon {daemon:?})"
        );
        assert_eq!(shell_code(status), 124, "{backend}: pynish ended with {status:?}");
        let report = crate::util::report_file(&scene.path("report.json"), shell_code(status));
        assert_eq!(report["verdict"], "wall_time");
    });
}
