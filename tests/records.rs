//! What harnesses record besides the verdict (issue 25): the tree's I/O, and the tree's output captured to a
//! file with a cap. (`started_at` and `hostname`: tests/json.rs.)

use crate::util::*;
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

const MB40: u64 = 40 << 20;

/// A directory on a real disk (the target directory), not tmpfs, where written bytes reach the storage layer.
fn disk_dir() -> tempfile::TempDir {
    let mut target = std::path::PathBuf::from(env!("CARGO_BIN_EXE_pynish"));
    target.pop();
    tempfile::tempdir_in(target).unwrap()
}

/// A 40 MiB fsynced write of `file`.
fn dd_40(file: &std::path::Path) -> String {
    format!("dd if=/dev/zero of={} bs=1M count=40 conv=fsync status=none", file.display())
}

/// The report's (read, written) bytes, both required.
fn io(backend: &str, r: &serde_json::Value) -> (u64, u64) {
    let get = |key: &str| r["usage"][key].as_u64().unwrap_or_else(|| panic!("{backend}: no {key}: {r}"));
    (get("io_read_bytes"), get("io_write_bytes"))
}

#[test]
fn a_fsynced_write_shows_in_io_write_bytes() {
    let dir = disk_dir();
    let file = dir.path().join("big");
    // In a child of a child, which ends (reaped by the shell, not by pynish) before the command does.
    let script =
        format!("sh -c '{}'; dd if={f} of=/dev/null bs=1M iflag=direct status=none", dd_40(&file), f = file.display());
    for backend in backends() {
        let out = pynish_on(backend).args(["--", "sh", "-c", &script]).output().unwrap();
        let r = report(&out);
        assert_eq!(r["verdict"], "completed", "{backend}: {r}");
        let (read, written) = io(backend, &r);
        assert!(written >= MB40, "{backend}: io_write_bytes {written} < 40 MiB");
        assert!(read >= MB40, "{backend}: io_read_bytes {read} < 40 MiB (a direct read)");
        assert!(written < 4 * MB40, "{backend}: io_write_bytes {written}: counted more than once?");
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn an_orphan_reaped_by_pynish_counts() {
    // The writer's parent exits at once: the writer is reparented to pynish (the subreaper), which reaps it.
    let dir = disk_dir();
    let (file, done) = (dir.path().join("big"), dir.path().join("done"));
    let script = format!("sh -c '({}; touch {}) &'", dd_40(&file), done.display());
    for backend in backends() {
        // The command is the orphan's grandparent and waits for its marker (a poll, not a guess at a duration).
        let wait = format!("{script}; while [ ! -e {} ]; do sleep 0.05; done", done.display());
        let out = pynish_on(backend).args(["--wall-time", "120s", "--", "sh", "-c", &wait]).output().unwrap();
        let r = report(&out);
        assert_eq!(r["verdict"], "completed", "{backend}: {r}");
        let (_, written) = io(backend, &r);
        assert!(written >= MB40, "{backend}: io_write_bytes {written} < 40 MiB");
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_file(&done).unwrap();
    }
}

#[test]
fn a_member_still_running_when_the_command_ends_counts_once_it_is_ended() {
    // The writer is done but still alive when the command exits: pynish ends it and reaps it, and only then
    // writes the report, so its bytes are in.
    let dir = disk_dir();
    let (file, done) = (dir.path().join("big"), dir.path().join("done"));
    let script = format!(
        "({}; touch {}; exec sleep 60) & while [ ! -e {} ]; do sleep 0.05; done",
        dd_40(&file),
        done.display(),
        done.display()
    );
    for backend in backends() {
        let out = pynish_on(backend).args(["--wall-time", "120s", "--", "sh", "-c", &script]).output().unwrap();
        let r = report(&out);
        assert_eq!(r["verdict"], "completed", "{backend}: {r}");
        let (_, written) = io(backend, &r);
        assert!(written >= MB40, "{backend}: io_write_bytes {written} < 40 MiB");
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_file(&done).unwrap();
    }
}

#[test]
fn with_leave_leftovers_a_member_still_running_is_not_counted() {
    // What README says: RUSAGE_CHILDREN holds only what was reaped, and a leftover is not.
    let dir = disk_dir();
    let (file, done, pidfile) = (dir.path().join("big"), dir.path().join("done"), dir.path().join("pid"));
    let script = format!(
        "({}; touch {}; exec sleep 60) >/dev/null 2>&1 & echo $! > {}; while [ ! -e {} ]; do sleep 0.05; done",
        dd_40(&file),
        done.display(),
        pidfile.display(),
        done.display()
    );
    let out = pynish_on("proc").args(["--leave-leftovers", "--", "sh", "-c", &script]).output();
    let pid = read_pid(&pidfile);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let r = report(&out.unwrap());
    let (_, written) = io("proc", &r);
    assert!(written < MB40, "io_write_bytes {written}: a leftover's writes are not pynish's to count");
}

#[test]
fn a_quiet_command_shows_almost_no_io() {
    let out = pynish_on("proc").args(["--", "true"]).output().unwrap();
    let r = report(&out);
    assert!(r["usage"]["io_write_bytes"].as_u64().unwrap() < 1 << 20, "{r}");
}

#[test]
fn a_child_autoreaped_because_its_parent_ignores_sigchld_is_not_counted() {
    // The gap README names: the kernel reaps such a child itself, and its counters go nowhere.
    if !have_tool("python3", "--version", "python3") {
        return;
    }
    let dir = disk_dir();
    let file = dir.path().join("big");
    let program = format!(
        "import os, signal, time\n\
         signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n\
         pid = os.fork()\n\
         if pid == 0:\n    os.execvp('sh', ['sh', '-c', {dd:?}])\n\
         while os.path.exists('/proc/%d' % pid):\n    time.sleep(0.05)\n",
        dd = dd_40(&file)
    );
    let out = pynish_on("proc").args(["--wall-time", "120s", "--", "python3", "-c", &program]).output().unwrap();
    let r = report(&out);
    assert_eq!(r["verdict"], "completed", "{r}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), MB40, "the child wrote its 40 MiB");
    let (_, written) = io("proc", &r);
    assert!(written < MB40, "io_write_bytes {written}: README says an autoreaped child is not counted");
}
/// A run's report and its output FILE, in a fresh directory.
fn run_with_output(backend: &str, args: &[&str], script: &str) -> (serde_json::Value, Vec<u8>, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.log");
    let out =
        pynish_on(backend).arg("--output").arg(&file).args(args).args(["--", "sh", "-c", script]).output().unwrap();
    let r = report(&out);
    let text = std::fs::read(&file).unwrap_or_else(|e| panic!("{backend}: {}: {e}: {r}", file.display()));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 1, "{backend}: no temporary file left: {left:?}");
    (r, text, out)
}

#[test]
fn output_takes_stdout_and_stderr_in_the_order_written() {
    for backend in backends() {
        let script = "echo one; echo two >&2; echo three; echo four >&2";
        let (r, text, out) = run_with_output(backend, &[], script);
        assert_eq!(String::from_utf8(text).unwrap(), "one\ntwo\nthree\nfour\n", "{backend}");
        assert!(out.stdout.is_empty(), "{backend}: nothing on the terminal's stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.lines().any(|l| l == "two"), "{backend}: the command's stderr is not pynish's: {stderr}");
        assert_eq!(r["verdict"], "completed", "{backend}");
        let o = &r["output"];
        assert_eq!(o["bytes_written"], 19, "{backend}: {o}");
        assert_eq!(o["bytes_dropped"], 0, "{backend}: {o}");
        assert!(o["limit_bytes"].is_null(), "{backend}: {o}");
        assert!(o["file"].as_str().unwrap().ends_with("out.log"), "{backend}: {o}");
    }
}

#[test]
fn output_limit_keeps_the_first_and_last_half_and_the_command_completes() {
    const LIMIT: u64 = 64 << 10;
    for backend in backends() {
        // 50.9 MB, far more than the pipe holds: the command must never wait for the cap.
        let (r, text, _) = run_with_output(
            backend,
            &["--output-limit", "64KiB", "--wall-time", "120s"],
            "seq 1 6500000; echo end >&2",
        );
        assert_eq!(r["verdict"], "completed", "{backend}: {r}");
        assert_eq!(r["exit_code"], 0, "{backend}");
        assert!(text.len() as u64 <= 72 << 10, "{backend}: {} bytes kept", text.len());
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("1\n2\n3\n"), "{backend}: the first line");
        assert!(text.ends_with("\n6499999\n6500000\nend\n"), "{backend}: the last lines");
        assert_eq!(text.matches("[pynish: ").count(), 1, "{backend}: one marker");
        let o = &r["output"];
        let (written, dropped) = (o["bytes_written"].as_u64().unwrap(), o["bytes_dropped"].as_u64().unwrap());
        let total: u64 = (1..=6_500_000u64).map(|n| n.to_string().len() as u64 + 1).sum::<u64>() + 4;
        assert_eq!(written + dropped, total, "{backend}: {o}");
        assert_eq!(written, LIMIT, "{backend}: {o}");
        assert_eq!(o["limit_bytes"], LIMIT, "{backend}");
        let marker = format!("\n[pynish: {dropped} bytes (");
        assert!(text.contains(&marker), "{backend}: the marker names the bytes dropped");
    }
}

#[test]
fn output_within_the_limit_is_kept_whole() {
    let (r, text, _) = run_with_output("proc", &["--output-limit", "1KiB"], "seq 1 100");
    let want: String = (1..=100).map(|n| format!("{n}\n")).collect();
    assert_eq!(String::from_utf8(text).unwrap(), want);
    assert_eq!(r["output"]["bytes_dropped"], 0);
}

#[test]
fn bad_output_flags_are_bad_input_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("ran");
    let touch = format!("touch {}", mark.display());
    let missing = dir.path().join("missing/out.log");
    let file = dir.path().join("out.log");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec!["--output".into(), missing.into()], "directory"),
        (vec!["--output".into(), file.clone().into(), "--output-limit".into(), "0".into()], "greater than zero"),
        (vec!["--output-limit".into(), "1MB".into()], "--output"),
        (vec!["--output".into(), dir.path().into()], "directory"),
        (vec!["--output".into(), file.clone().into(), "--report".into(), file.clone().into()], "same file"),
    ];
    for (args, says) in cases {
        let out = pynish().args(&args).args(["--", "sh", "-c", &touch]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 125, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!mark.exists(), "{args:?}: nothing runs");
        assert!(!file.exists(), "{args:?}: no output file made");
    }
}

#[test]
fn output_with_leftovers_holding_the_pipe_does_not_keep_pynish() {
    // --leave-leftovers: a member still holds the pipe when pynish exits; pynish takes what the pipe holds and
    // goes.
    let dir = tempfile::tempdir().unwrap();
    let (file, pidfile) = (dir.path().join("out.log"), dir.path().join("pid"));
    let script = format!("sleep 60 & echo $! > {}; echo before", pidfile.display());
    let started = std::time::Instant::now();
    let out =
        pynish_on("proc").args(["--leave-leftovers", "--output"]).arg(&file).args(["--", "sh", "-c", &script]).output();
    let pid = read_pid(&pidfile);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let out = out.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "pynish waited for the leftover");
    let r = report(&out);
    assert_eq!(r["verdict"], "completed", "{r}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "before\n");
}

#[test]
fn output_goes_to_the_file_even_when_the_caller_closed_stdout_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.log");
    let script = format!(
        "{} --output {} -- sh -c 'echo out; echo err >&2' >&- 2>&-",
        env!("CARGO_BIN_EXE_pynish"),
        file.display()
    );
    let status = std::process::Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "out\nerr\n");
}

#[test]
fn output_to_a_fifo_is_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = pynish_on("proc").arg("--output").arg(&fifo).args(["--", "seq", "1", "3"]).output().unwrap();
    let r = report(&out);
    assert_eq!(reader.join().unwrap(), "1\n2\n3\n");
    assert_eq!(r["output"]["bytes_written"], 6);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}
