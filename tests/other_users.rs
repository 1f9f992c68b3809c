//! Root's `--report`, `--timeline` and `--output` where another user of the machine may point them: a link, FIFO or file of
//! theirs in a shared sticky directory (as `/tmp`), a link they keep making and removing while root runs, the
//! kernel's `protected_*` rules. Needs root (to act as another user; skipped with the reason otherwise); the
//! other user is `pynish-other`, made with useradd where missing. Each test makes its own sticky directory (mode
//! 1777, like `/tmp`) instead of using `/tmp`; a sysctl a test sets is restored when it ends, even by a panic.

use crate::util::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const OTHER: &str = "pynish-other";

/// The other user's uid and gid, made with useradd if missing; None (announced) where that cannot be done.
fn other_user() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: acting as another user needs root");
        return None;
    }
    let lookup = || nix::unistd::User::from_name(OTHER).ok().flatten().map(|u| (u.uid.as_raw(), u.gid.as_raw()));
    if lookup().is_none() {
        let made = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER])
            .stderr(Stdio::null())
            .status();
        if lookup().is_none() {
            eprintln!("SKIP: no user {OTHER}, and useradd could not make one ({made:?})");
        }
    }
    lookup()
}

/// A directory like `/tmp`: root's, sticky, writable by everyone.
fn sticky_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// Tests that set sysctls run one at a time, each restoring what it found.
static SYSCTLS: Mutex<()> = Mutex::new(());

/// A sysctl set for the life of the value, then put back.
struct Sysctl {
    path: PathBuf,
    old: String,
}

impl Sysctl {
    /// Sets `fs.NAME` to `value`; None (announced) where it cannot be set.
    fn set(name: &str, value: &str) -> Option<Sysctl> {
        let path = Path::new("/proc/sys/fs").join(name);
        let old = fs::read_to_string(&path).ok()?.trim().to_string();
        if let Err(e) = fs::write(&path, value) {
            eprintln!("SKIP: cannot set fs.{name} ({e})");
            return None;
        }
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        fs::write(&self.path, &self.old).expect("restore the sysctl");
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// pynish with `flag path`, running `touch marker`.
fn run(flag: &str, path: &Path, marker: &Path) -> Output {
    pynish().arg(flag).arg(path).args(["--", "touch"]).arg(marker).output().unwrap()
}

/// A file of root's outside the shared directory, which the other user would like root to overwrite.
fn victim() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious");
    fs::write(&path, "precious\n").unwrap();
    (dir, path)
}

#[test]
fn another_users_link_fifo_or_file_in_a_sticky_directory_is_refused_before_the_run() {
    // Once: the link was followed by hand to root's file, which got the report; the FIFO received it (label,
    // argv and all); the file was replaced and chowned back to its owner, who then owned root's report.
    let Some((uid, gid)) = other_user() else { return };
    let shared = sticky_dir();
    let (_keep, precious) = victim();
    let at = |name: &str| shared.path().join(name);
    symlink(&precious, at("link")).unwrap();
    nix::unistd::mkfifo(&at("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    fs::write(at("file"), "theirs\n").unwrap();
    fs::set_permissions(at("file"), fs::Permissions::from_mode(0o666)).unwrap();
    for name in ["link", "fifo", "file"] {
        lchown(at(name), Some(uid), Some(gid)).unwrap();
    }
    // A reader on the FIFO, which must get nothing.
    let reader = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(at("fifo")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    for flag in ["--report", "--timeline", "--output"] {
        for (name, kind) in [("link", "symbolic link"), ("fifo", "FIFO"), ("file", "regular file")] {
            let out = run(flag, &at(name), &marker);
            let said = stderr(&out);
            assert_eq!(code(&out), 125, "{flag} {name}: {said}");
            assert_eq!(said.lines().count(), 1, "{flag} {name}: one line: {said}");
            assert!(said.contains(&format!("is a {kind} of another user (uid {uid})")), "{flag} {name}: {said}");
            assert!(!marker.exists(), "{flag} {name}: the command ran");
        }
    }
    assert_eq!(fs::read_to_string(&precious).unwrap(), "precious\n");
    assert_eq!(fs::read_to_string(at("file")).unwrap(), "theirs\n");
    let meta = fs::symlink_metadata(at("file")).unwrap();
    assert_eq!((meta.uid(), meta.is_file()), (uid, true));
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
    assert!(got.is_empty(), "the FIFO got {:?}", String::from_utf8_lossy(&got));
}

#[test]
fn the_owners_own_entries_in_a_sticky_directory_are_written_as_before() {
    // The rule refuses strangers only: root's own link, file and new names in /tmp work as they did.
    if other_user().is_none() {
        return;
    }
    let shared = sticky_dir();
    let at = |name: &str| shared.path().join(name);
    fs::write(at("target.json"), "old\n").unwrap();
    symlink("target.json", at("link.json")).unwrap();
    for path in [at("new.json"), at("link.json"), at("new.json")] {
        let out = pynish().arg("--report").arg(&path).args(["--", "true"]).output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        report_line(fs::read_to_string(&path).unwrap().trim_end(), 0);
    }
    let tl = at("run.jsonl");
    let out = pynish().arg("--timeline").arg(&tl).args(["--", "true"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(fs::read_to_string(&tl).unwrap().starts_with("{\"timeline\":1"));
}

#[test]
fn a_link_to_another_users_file_or_fifo_in_a_sticky_directory_is_refused_with_or_without_the_sysctls() {
    // Root's own link in one sticky directory, to another user's file or FIFO in another. With
    // protected_regular and protected_fifos the kernel refuses the shell's `>`, and pynish, opening as the shell
    // does, gets the same EACCES; without them pynish applies the same rule itself. Once: pynish replaced the
    // file (and chowned it to that user) and wrote into the FIFO.
    let Some((uid, gid)) = other_user() else { return };
    let _one_at_a_time = SYSCTLS.lock().unwrap_or_else(|e| e.into_inner());
    let (mine, theirs) = (sticky_dir(), sticky_dir());
    let file = theirs.path().join("file");
    let fifo = theirs.path().join("fifo");
    fs::write(&file, "theirs\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    lchown(&file, Some(uid), Some(gid)).unwrap();
    lchown(&fifo, Some(uid), Some(gid)).unwrap();
    let reader = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    for (on, refusal) in [("1", "Permission denied"), ("0", "leads to a")] {
        let (Some(_regular), Some(_fifos)) = (Sysctl::set("protected_regular", on), Sysctl::set("protected_fifos", on))
        else {
            return;
        };
        for (name, target) in [("to-file", &file), ("to-fifo", &fifo)] {
            let link = mine.path().join(name);
            let _ = fs::remove_file(&link);
            symlink(target, &link).unwrap();
            if on == "1" {
                let shell = Command::new("sh").arg("-c").arg("echo x > \"$1\"").arg("sh").arg(&link).output().unwrap();
                assert!(!shell.status.success(), "{name}: the shell's > was allowed: is the kernel older than 4.19?");
            }
            // The report: the run goes ahead (the link is root's own), the write is refused at the end.
            let out = run("--report", &link, &marker);
            assert_eq!(code(&out), 0, "{name}, sysctls {on}: the command's status stands: {}", stderr(&out));
            assert!(stderr(&out).contains(refusal), "{name}, sysctls {on}: {}", stderr(&out));
            assert!(marker.exists(), "{name}: the command ran");
            fs::remove_file(&marker).unwrap();
            // The timeline and the output are opened before the run: refused then, and nothing runs.
            for flag in ["--timeline", "--output"] {
                let out = run(flag, &link, &marker);
                assert_eq!(code(&out), 125, "{flag} {name}, sysctls {on}: {}", stderr(&out));
                assert!(stderr(&out).contains(refusal), "{flag} {name}, sysctls {on}: {}", stderr(&out));
                assert!(!marker.exists(), "{flag} {name}: the command ran");
            }
        }
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "theirs\n");
    assert_eq!(fs::metadata(&file).unwrap().uid(), uid);
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
    assert!(got.is_empty(), "the FIFO got {:?}", String::from_utf8_lossy(&got));
}

/// Kills and reaps the child when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The other user, for a race test: None (said as a skip) without the user or without perl to toggle links with.
fn racer() -> Option<(u32, u32)> {
    let user = other_user()?;
    if Command::new("perl").arg("-e").arg("1").status().is_err() {
        eprintln!("SKIP: no perl to toggle the link with");
        return None;
    }
    Some(user)
}

/// Waits until the other user's toggler has made its link at `path` once (it may be slow to start on a loaded
/// machine), so that the runs after it race against a link that really comes and goes.
fn wait_for_toggler(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fs::symlink_metadata(path).is_err() {
        assert!(std::time::Instant::now() < deadline, "the other user's toggler never made its link");
        std::thread::yield_now();
    }
}

/// At least `runs` runs of root's pynish with `--report` in a sticky directory where the other user keeps making and
/// removing a link to root's file (and to a new file beside it); the test removes each report root wrote, so that
/// the name stays free for the next round of the race. Returns (written, refused before, lost at the end).
fn race(uid: u32, gid: u32, runs: usize) -> (usize, usize, usize) {
    let shared = sticky_dir();
    let (keep, precious) = victim();
    let dangling = keep.path().join("made-by-root");
    let report = shared.path().join("report.json");
    // perl: a tight loop of symlink and unlink, with no process per step.
    let script =
        "while (1) { symlink($ARGV[0], $ARGV[2]); unlink($ARGV[2]); symlink($ARGV[1], $ARGV[2]); unlink($ARGV[2]) }";
    let toggler = Command::new("perl")
        .args(["-e", script])
        .arg(&precious)
        .arg(&dangling)
        .arg(&report)
        .uid(uid)
        .gid(gid)
        .spawn()
        .expect("perl");
    let _toggler = Reaped(toggler);
    wait_for_toggler(&report);
    let (mut written, mut refused, mut lost) = (0, 0, 0);
    // Past `runs`, until both sides of the race were seen (a loaded machine may schedule the toggler rarely).
    for run in 0..runs * 10 {
        if run >= runs && refused + lost > 0 && written > 0 {
            break;
        }
        let out = pynish().arg("--report").arg(&report).args(["--", "true"]).output().unwrap();
        let said = stderr(&out);
        assert_eq!(fs::read_to_string(&precious).unwrap(), "precious\n", "run {run}: root's file was overwritten");
        assert!(!dangling.exists(), "run {run}: a file was made through the other user's link");
        match code(&out) {
            125 => {
                assert!(said.contains("of another user"), "run {run}: {said}");
                refused += 1;
            }
            0 if said.is_empty() => {
                let meta = fs::symlink_metadata(&report).unwrap();
                assert!(meta.is_file() && meta.uid() == 0, "run {run}: the report is not root's own file");
                report_line(fs::read_to_string(&report).unwrap().trim_end(), 0);
                fs::remove_file(&report).unwrap();
                written += 1;
            }
            0 => {
                assert!(said.contains("of another user"), "run {run}: {said}");
                lost += 1;
            }
            other => panic!("run {run}: exit {other}: {said}"),
        }
    }
    (written, refused, lost)
}

#[test]
fn another_users_toggling_link_never_steers_roots_report() {
    // Once: after 1,217 runs the report was renamed over root's file, protected_symlinks=1 or not, because the
    // link was read by hand between two checks.
    let Some((uid, gid)) = racer() else { return };
    let _one_at_a_time = SYSCTLS.lock().unwrap_or_else(|e| e.into_inner());
    for value in ["0", "1"] {
        let Some(_sysctl) = Sysctl::set("protected_symlinks", value) else { return };
        let (written, refused, lost) = race(uid, gid, 300);
        eprintln!("protected_symlinks={value}: {written} written, {refused} refused before the run, {lost} lost");
        assert!(refused + lost > 0, "the other user's link was never seen: no race took place");
        assert!(written > 0, "no run wrote its report between the other user's links");
    }
}

#[test]
fn a_timeline_fifo_without_a_reader_refuses_the_run_within_the_bound() {
    // Once: blocked root's pynish forever opening the FIFO, before the command ran.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("timeline.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let marker = dir.path().join("ran");
    // `timeout` ends a pynish that blocks, so that the test fails rather than hangs.
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "60", env!("CARGO_BIN_EXE_pynish"), "--timeline"]).arg(&fifo);
    cmd.args(["--", "touch"]).arg(&marker).env_remove("PYNISH_BACKEND");
    let start = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("no reader took it within 5s"), "{}", stderr(&out));
    assert!(took < Duration::from_secs(30), "pynish waited {took:?}");
    assert!(!marker.exists(), "the command ran");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn a_timeline_fifo_with_no_room_for_the_header_refuses_the_run_within_the_bound() {
    // A reader that opened the FIFO and never reads, its pipe full: the header, written before the run, once
    // blocked pynish as long as that lasted.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("timeline.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Read and write ends at once (O_RDWR never blocks), the pipe made small and filled.
    let held = fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
    // SAFETY: F_SETPIPE_SZ takes an integer.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&held), libc::F_SETPIPE_SZ, 4096) };
    while std::io::Write::write(&mut &held, &[b'x'; 512]).is_ok() {}
    let marker = dir.path().join("ran");
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "60", env!("CARGO_BIN_EXE_pynish"), "--timeline"]).arg(&fifo);
    cmd.args(["--", "touch"]).arg(&marker).env_remove("PYNISH_BACKEND");
    let start = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    drop(held);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot write the timeline"), "{}", stderr(&out));
    assert!(took < Duration::from_secs(30), "pynish waited {took:?}");
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn a_run_refused_for_want_of_a_thread_leaves_no_timeline() {
    // Once: `ulimit -u 1` refused the timeline's writer thread after the header was written: the new file
    // stayed, and an old one was truncated. A uid of its own, so that no other process counts against the limit.
    const LONE_UID: u32 = 61_917;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: running as another user at its process limit needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let (new, old) = (dir.path().join("new.tl"), dir.path().join("old.tl"));
    fs::write(&old, "the previous run's timeline\n").unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o666)).unwrap();
    let marker = dir.path().join("ran");
    for timeline in [&new, &old] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
        cmd.args(["--backend", "proc", "--timeline"]).arg(timeline).args(["--", "touch"]).arg(&marker);
        cmd.uid(LONE_UID).gid(LONE_UID).env_remove("PYNISH_BACKEND");
        // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                let one = libc::rlimit { rlim_cur: 1, rlim_max: 1 };
                if libc::setrlimit(libc::RLIMIT_NPROC, &one) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert_eq!(code(&out), 125, "{}", stderr(&out));
        assert!(stderr(&out).contains("timeline writer"), "{}", stderr(&out));
        assert!(!marker.exists(), "the command ran");
    }
    assert!(!new.exists(), "a refused run left a timeline behind");
    assert_eq!(fs::read_to_string(&old).unwrap(), "the previous run's timeline\n");
}

#[test]
fn another_users_link_as_a_directory_in_a_sticky_directory_is_refused_with_or_without_the_sysctl() {
    // Once: `--report /tmp/theirs/report.json`, where `theirs` was the other user's link to a directory of root's,
    // wrote root's report there (over root's own file) under protected_symlinks=0: only the last name was held to
    // the sticky rule. Root's own link in the same place is followed as before.
    let Some((uid, gid)) = other_user() else { return };
    let _one_at_a_time = SYSCTLS.lock().unwrap_or_else(|e| e.into_inner());
    let shared = sticky_dir();
    let (keep, precious) = victim();
    let theirs = shared.path().join("theirs");
    symlink(keep.path(), &theirs).unwrap();
    lchown(&theirs, Some(uid), Some(gid)).unwrap();
    let own_dir = tempfile::tempdir().unwrap();
    symlink(own_dir.path(), shared.path().join("mine")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let name = precious.file_name().unwrap();
    for value in ["0", "1"] {
        let Some(_sysctl) = Sysctl::set("protected_symlinks", value) else { return };
        for path in [theirs.join(name), theirs.join("new.json"), theirs.join("../theirs").join(name)] {
            for flag in ["--report", "--timeline"] {
                let out = run(flag, &path, &marker);
                let said = stderr(&out);
                let shown = format!("{flag} {}, protected_symlinks={value}", path.display());
                assert_eq!(code(&out), 125, "{shown}: {said}");
                assert_eq!(said.lines().count(), 1, "{shown}: one line: {said}");
                assert!(said.contains(&format!("symbolic link of another user (uid {uid})")), "{shown}: {said}");
                assert!(!marker.exists(), "{shown}: the command ran");
            }
        }
        let mine = shared.path().join("mine").join("report.json");
        let out = pynish().arg("--report").arg(&mine).args(["--", "true"]).output().unwrap();
        assert_eq!(code(&out), 0, "protected_symlinks={value}: {}", stderr(&out));
        report_line(fs::read_to_string(own_dir.path().join("report.json")).unwrap().trim_end(), 0);
    }
    assert_eq!(fs::read_to_string(&precious).unwrap(), "precious\n");
    assert!(!keep.path().join("new.json").exists(), "a file was made through the other user's link");
}

#[test]
fn a_report_its_user_may_not_write_is_refused_before_the_run_as_the_timeline_is() {
    // Once: a non-root user's `--report` to a read-only file of theirs, or to a new name in a directory they may
    // not write, ran the command and lost the report at the end (said on stderr, exit 0), where a shell's `>`
    // fails before the command and `--timeline` refused the run. Links to the same are held to the same rule.
    let Some((uid, gid)) = other_user() else { return };
    let home = tempfile::tempdir().unwrap();
    let at = |name: &str| home.path().join(name);
    fs::create_dir(at("closed")).unwrap();
    fs::write(at("read-only"), "kept\n").unwrap();
    symlink(at("read-only"), at("to-read-only")).unwrap();
    symlink(at("closed").join("new"), at("into-closed")).unwrap();
    for name in ["", "closed", "read-only", "to-read-only", "into-closed"] {
        std::os::unix::fs::lchown(at(name), Some(uid), Some(gid)).unwrap();
    }
    fs::set_permissions(at("read-only"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(at("closed"), fs::Permissions::from_mode(0o555)).unwrap();
    let marker = at("ran");
    for name in ["read-only", "closed/new", "to-read-only", "into-closed"] {
        let mut shell = Command::new("sh");
        shell.arg("-c").arg("echo x > \"$1\"").arg("sh").arg(at(name)).uid(uid).gid(gid);
        assert!(!shell.output().unwrap().status.success(), "{name}: the shell's > was allowed");
        for flag in ["--report", "--timeline"] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
            cmd.arg(flag).arg(at(name)).args(["--", "touch"]).arg(&marker).env_remove("PYNISH_BACKEND");
            let out = cmd.uid(uid).gid(gid).output().unwrap();
            let said = stderr(&out);
            assert_eq!(code(&out), 125, "{flag} {name}: {said}");
            assert_eq!(said.lines().count(), 1, "{flag} {name}: one line: {said}");
            assert!(said.contains("Permission denied"), "{flag} {name}: {said}");
            assert!(!marker.exists(), "{flag} {name}: the command ran");
        }
    }
    assert_eq!(fs::read_to_string(at("read-only")).unwrap(), "kept\n");
    assert!(!at("closed/new").exists());
    // What the user may write is written as before.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
    cmd.arg("--report").arg(at("report.json")).args(["--", "true"]).env_remove("PYNISH_BACKEND");
    let out = cmd.uid(uid).gid(gid).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::metadata(at("report.json")).unwrap().uid(), uid);
    report_line(fs::read_to_string(at("report.json")).unwrap().trim_end(), 0);
}

#[test]
fn another_users_hard_link_to_roots_file_in_a_sticky_directory_is_refused_whatever_protected_hardlinks_says() {
    // Once, under protected_hardlinks=0: the other user hard-linked a file of root's elsewhere into the sticky
    // directory, and root's `--timeline` there truncated that file and wrote the timeline into it. The link is
    // root's file by owner, so only its count of links tells it apart.
    let Some((uid, gid)) = other_user() else { return };
    let _one_at_a_time = SYSCTLS.lock().unwrap_or_else(|e| e.into_inner());
    let shared = sticky_dir();
    let (keep, precious) = victim();
    fs::set_permissions(keep.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let link = shared.path().join("report.json");
    {
        let Some(_sysctl) = Sysctl::set("protected_hardlinks", "0") else { return };
        let mut ln = Command::new("ln");
        ln.arg(&precious).arg(&link).uid(uid).gid(gid);
        assert!(ln.status().unwrap().success(), "the other user could not make the link");
    }
    assert_eq!(fs::metadata(&link).unwrap().ino(), fs::metadata(&precious).unwrap().ino());
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    for flag in ["--report", "--timeline"] {
        let out = run(flag, &link, &marker);
        let said = stderr(&out);
        assert_eq!(code(&out), 125, "{flag}: {said}");
        assert_eq!(said.lines().count(), 1, "{flag}: one line: {said}");
        assert!(said.contains("2 hard links"), "{flag}: {said}");
        assert!(!marker.exists(), "{flag}: the command ran");
    }
    assert_eq!(fs::read_to_string(&precious).unwrap(), "precious\n");
}

#[test]
fn another_users_toggling_directory_link_never_steers_roots_report() {
    // The directory on the way, raced: the other user keeps making and removing a link to root's directory at
    // the report's directory name. Under protected_symlinks=0 the kernel would follow it; pynish never may.
    let Some((uid, gid)) = racer() else { return };
    let _one_at_a_time = SYSCTLS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_sysctl) = Sysctl::set("protected_symlinks", "0") else { return };
    let shared = sticky_dir();
    let (keep, precious) = victim();
    let theirs = shared.path().join("d");
    let script = "while (1) { symlink($ARGV[0], $ARGV[1]); unlink($ARGV[1]) }";
    let toggler = Command::new("perl").args(["-e", script]).arg(keep.path()).arg(&theirs).uid(uid).gid(gid).spawn();
    let _toggler = Reaped(toggler.expect("perl"));
    let report = theirs.join(precious.file_name().unwrap());
    wait_for_toggler(&theirs);
    let mut refused = 0;
    let mut runs = 0;
    // At least 200 runs, and more until one saw the link (a loaded machine may schedule the toggler rarely).
    for run in 0..2000 {
        if run >= 200 && refused > 0 {
            break;
        }
        runs += 1;
        let out = pynish().arg("--report").arg(&report).args(["--", "true"]).output().unwrap();
        let said = stderr(&out);
        assert_eq!(fs::read_to_string(&precious).unwrap(), "precious\n", "run {run}: root's file was overwritten");
        assert_eq!(fs::read_dir(keep.path()).unwrap().count(), 1, "run {run}: a file was made in root's directory");
        if said.contains("symbolic link of another user") {
            refused += 1;
        } else {
            // The name was missing at that moment: refused (125) or, at the end, lost; never written.
            assert!(said.contains("No such file or directory"), "run {run}: exit {}: {said}", code(&out));
        }
    }
    eprintln!("{refused} of {runs} runs saw the other user's link and refused it");
    assert!(refused > 0, "the other user's link was never seen: no race took place");
}
