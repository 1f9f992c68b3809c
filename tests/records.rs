//! What harnesses record besides the verdict (issue 25): the tree's I/O, and the tree's output captured to a
//! file with a cap. (`started_at` and `hostname`: tests/json.rs.)

use crate::util::*;

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
