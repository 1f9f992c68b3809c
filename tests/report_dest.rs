//! `--report PATH` where PATH is not a plain file: a FIFO's reader gets the report, a symbolic link stays and its
//! target gets it, a device node stays a device node, a `/proc/self/fd/N` link writes where that descriptor
//! goes; a new report's mode follows the umask, a replaced one keeps its mode and owner. Everything happens in
//! a temporary directory: the machine's own `/dev` is only looked at (for the numbers of `null` and `full`).

use crate::util::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Output, Stdio};

/// A report file's one line, parsed, checked against pynish's real exit code.
fn parsed(text: &str, output: &Output) -> Value {
    assert_eq!(text.lines().count(), 1, "one report line: {text:?}");
    let report: Value = serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("bad report ({e}): {text}"));
    assert_eq!(report["exit_code"], code(output), "{report}");
    report
}

fn run_with_report(path: &Path, command: &[&str]) -> Output {
    let mut cmd = pynish();
    cmd.arg("--report").arg(path).arg("--").args(command);
    cmd.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_fifos_reader_gets_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The test holds the FIFO open for writing too, only until pynish has ended: the reader then sees the end of
    // the data whether pynish wrote the report or not, and nothing waits for anything but pynish.
    let writer = fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let mut reader = fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(&fifo).unwrap();
    nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty())).unwrap();
    let out = run_with_report(&fifo, &["sh", "-c", "exit 3"]);
    drop(writer);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let report = parsed(&text, &out);
    assert_eq!(report["command_exit_code"], 3);
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
}

#[test]
fn a_symlinks_target_gets_the_report_and_keeps_its_mode_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.json");
    let link = dir.path().join("link.json");
    fs::write(&target, "old\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    let root = nix::unistd::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(&target, Some(1234), Some(2345)).unwrap();
    }
    symlink("target.json", &link).unwrap();
    let out = run_with_report(&link, &["true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("target.json"), "the link is still the link");
    parsed(&fs::read_to_string(&target).unwrap(), &out);
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640, "the replaced file keeps its mode");
    if root {
        assert_eq!((meta.uid(), meta.gid()), (1234, 2345), "the replaced file keeps its owner");
    }
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
}

#[test]
fn a_dangling_symlink_gets_its_target_made() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("reports")).unwrap();
    let link = dir.path().join("latest.json");
    symlink("reports/run-1.json", &link).unwrap();
    let out = run_with_report(&link, &["true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    parsed(&fs::read_to_string(dir.path().join("reports/run-1.json")).unwrap(), &out);
}

/// A character device node in `dir` with the numbers of `/dev/<name>` (read, never opened); None where mknod is
/// not allowed (announced).
fn device_like(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    let rdev = fs::metadata(Path::new("/dev").join(name)).unwrap().rdev();
    let node = dir.join(name);
    match mknod(&node, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), rdev) {
        Ok(()) => Some(node),
        Err(e) => {
            eprintln!("SKIP: cannot make a device node here ({e})");
            None
        }
    }
}

#[test]
fn a_device_node_is_written_in_place_and_stays_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let Some(null) = device_like(dir.path(), "null") else { return };
    let rdev = fs::metadata(&null).unwrap().rdev();
    let out = run_with_report(&null, &["sh", "-c", "exit 4"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "the report went into the device");
    let meta = fs::symlink_metadata(&null).unwrap();
    assert!(meta.file_type().is_char_device(), "still a character device");
    assert_eq!(meta.rdev(), rdev);
}

#[test]
fn a_full_device_costs_the_report_not_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let Some(full) = device_like(dir.path(), "full") else { return };
    for (command, exit) in [(&["sh", "-c", "exit 3"][..], 3), (&["true"], 0)] {
        let out = run_with_report(&full, command);
        assert_eq!(code(&out), exit, "the command's exit status: {}", stderr(&out));
        let said = stderr(&out);
        assert_eq!(said.lines().count(), 1, "one line: {said}");
        assert!(said.starts_with("pynish: cannot write the report to"), "{said}");
        assert!(said.contains("No space left on device"), "{said}");
        assert!(fs::symlink_metadata(&full).unwrap().file_type().is_char_device(), "still a character device");
    }
}

#[test]
fn a_link_to_proc_self_fd_1_writes_to_pynishs_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stdout.json");
    symlink("/proc/self/fd/1", &link).unwrap();

    // stdout a pipe: the report follows the command's output.
    let out = run_with_report(&link, &["echo", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (first, rest) = stdout.split_once('\n').unwrap();
    assert_eq!(first, "hello");
    parsed(rest, &out);

    // stdout a regular file: the report is added after the command's output, which stays.
    let file = dir.path().join("out.txt");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pynish"));
    cmd.arg("--report").arg(&link).args(["--", "echo", "hello"]);
    cmd.stdout(Stdio::from(fs::File::create(&file).unwrap()));
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&file).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    assert_eq!(first, "hello", "the command's output stays: {text}");
    parsed(rest, &out);
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

#[test]
fn a_new_report_gets_0666_less_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for (umask, mode) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let path = dir.path().join(format!("umask-{umask}.json"));
        let script = format!("umask {umask}; exec \"$0\" --report \"$1\" -- true");
        let out = std::process::Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_pynish")])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        parsed(&fs::read_to_string(&path).unwrap(), &out);
        let got = fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(got, mode, "umask {umask}: mode {got:o}");
    }
}

#[test]
fn a_replaced_report_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    fs::write(&path, "old\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let out = run_with_report(&path, &["true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    parsed(&fs::read_to_string(&path).unwrap(), &out);
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
}

#[test]
fn a_link_to_a_directory_is_bad_input_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("report.json");
    symlink(".", &link).unwrap();
    let marker = dir.path().join("ran");
    let out = run_with_report(&link, &["touch", marker.to_str().unwrap()]);
    assert_eq!(code(&out), 125);
    let said = stderr(&out);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("is a directory"), "{said}");
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn a_path_ending_in_a_slash_names_a_directory_and_is_refused_before_the_run() {
    // Once: `--report out.json/` wrote the file `out.json`, where a shell's `>` says "Is a directory", and
    // `--timeline` made it too.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.json"), "old\n").unwrap();
    let marker = dir.path().join("ran");
    for flag in ["--report", "--timeline"] {
        for name in ["new.json/", "old.json/"] {
            let path = format!("{}/{name}", dir.path().display());
            let out = pynish().arg(flag).arg(&path).args(["--", "touch"]).arg(&marker).output().unwrap();
            assert_eq!(code(&out), 125, "{flag} {name}: {}", stderr(&out));
            assert!(stderr(&out).contains("names a directory"), "{flag} {name}: {}", stderr(&out));
            assert!(!marker.exists(), "{flag} {name}: the command ran");
        }
    }
    assert!(!dir.path().join("new.json").exists(), "a file was made");
    assert_eq!(fs::read_to_string(dir.path().join("old.json")).unwrap(), "old\n");
}

#[test]
fn a_refused_path_with_a_newline_in_it_is_said_on_one_line() {
    // Once: `--report $'dir\nname/x'` was refused with its path printed as it is, the error spread over two lines.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for flag in ["--report", "--timeline"] {
        for name in ["missing\nline/report.json", "new\nline.json/"] {
            let path = dir.path().join(name);
            let out = pynish().arg(flag).arg(&path).args(["--", "touch"]).arg(&marker).output().unwrap();
            let said = stderr(&out);
            assert_eq!(code(&out), 125, "{flag} {name:?}: {said}");
            assert_eq!(said.lines().count(), 1, "{flag} {name:?}: one line: {said:?}");
            assert!(said.contains("\\n"), "{flag} {name:?}: the newline shown escaped: {said:?}");
            assert!(!marker.exists(), "{flag} {name:?}: the command ran");
        }
    }
}
