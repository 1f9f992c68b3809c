//! What a demanding user throws at the newer destinations (`--report` on a FIFO, `--report` and `--timeline` on
//! one file named two ways, `/proc/self/fd/N` of a closed descriptor, a full disk): each found once to hang, to
//! lose a file, or to run the command and then lose its report. Everything happens in a temporary directory.

use crate::util::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `sh -c 'touch MARKER; exit 3'`: the command, and the proof that it ran.
fn marked(marker: &Path) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("touch '{}'; exit 3", marker.display())]
}

#[test]
fn a_report_fifo_without_a_reader_still_ends_with_the_verdict() {
    // Once hung forever once the tree was gone, blocked opening the FIFO; SIGTERM did not end it either.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (out, took) = timed(pynish().arg("--report").arg(&fifo).args(["-w", "30", "--", "sh", "-c", "exit 3"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("no reader took it"), "{}", stderr(&out));
    assert!(took < Duration::from_secs(30), "pynish waited {took:?} for a reader");
}

#[test]
fn report_and_timeline_on_one_file_named_two_ways_are_refused_before_the_run() {
    // Once accepted: the report, renamed over the path at the end, erased the timeline.
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    symlink("run.json", at("link")).unwrap();
    let dotted = dir.path().join(".").join("run.json");
    for (report, timeline) in [(at("link"), at("run.json")), (dotted.clone(), at("run.json")), (at("run.json"), dotted)]
    {
        let marker = at("ran");
        let mut cmd = pynish();
        cmd.arg("--report").arg(&report).arg("--timeline").arg(&timeline).arg("--").args(marked(&marker));
        let out = cmd.output().unwrap();
        assert_eq!(code(&out), 125, "{report:?} {timeline:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("same file"), "{}", stderr(&out));
        assert!(!marker.exists(), "the command ran");
    }
    // An existing file, named through a link: also refused, and left as it was.
    fs::write(at("run.json"), "old").unwrap();
    let out = pynish()
        .arg("--report")
        .arg(at("link"))
        .arg("--timeline")
        .arg(at("run.json"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    assert_eq!(fs::read_to_string(at("run.json")).unwrap(), "old");
}

#[test]
fn report_and_timeline_may_share_a_pipe() {
    // Not a file the report would be renamed over: both go down stdout, the timeline first.
    let out = pynish().args(["--report", "/dev/stdout", "--timeline", "/dev/stdout", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.first().is_some_and(|l| l.contains("\"timeline\":1")), "{text}");
    let report = report_line(lines.last().unwrap(), code(&out));
    assert_eq!(report["verdict"], "completed");
}

#[test]
fn a_report_on_a_closed_descriptors_proc_link_is_refused_before_the_run() {
    // Once: the command ran, and the report was lost at the end (pynish tried to make a file in /proc).
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let out = pynish().args(["--report", "/proc/self/fd/987", "--"]).args(marked(&marker)).output().unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("not open"), "{}", stderr(&out));
    assert!(!marker.exists(), "the command ran");
}

/// A 64 KiB tmpfs, filled, unmounted when dropped; None where mounting is not allowed (not root).
struct FullDisk(tempfile::TempDir);

impl FullDisk {
    fn mount() -> Option<FullDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIP full disk: cannot mount a tmpfs here");
            return None;
        }
        let disk = FullDisk(dir);
        let _ = fs::write(disk.0.path().join("fill"), vec![0u8; 128 * 1024]); // ENOSPC once full
        Some(disk)
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_refuses_a_timeline_and_keeps_the_verdict_without_a_report() {
    let Some(disk) = FullDisk::mount() else { return };
    let dir = disk.0.path();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let out = pynish().arg("--timeline").arg(dir.join("tl")).arg("--").args(marked(&marker)).output().unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(!marker.exists(), "the command ran");

    let out = pynish().arg("--report").arg(dir.join("r.json")).args(["--"]).args(marked(&marker)).output().unwrap();
    assert_eq!(code(&out), 3, "the verdict's exit status stands: {}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    let left: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("fill")], "no temporary file left behind");
}

/// Kills a process the test learnt about when dropped, whatever the test's outcome.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn auto_on_proc_says_that_a_daemon_outlives_a_sigkilled_pynish() {
    // What `auto` gives up by taking proc for a wall-time-only run, seen and said by `pynish check`.
    use std::io::BufRead;
    let out = pynish().args(["check", "--json"]).output().unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let proc_choice = &findings["auto_choice"][0];
    assert_eq!(proc_choice["backend"], "proc", "{findings}");
    assert!(proc_choice["gives_up"].as_str().unwrap().contains("SIGKILL"), "{findings}");

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pynish"));
    cmd.env_remove("PYNISH_BACKEND").args(["-w", "60", "--", "sh", "-c", "setsid sleep 300 & echo $!; exec sleep 300"]);
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let daemon = KillOnDrop(line.trim().parse().expect("the daemon's pid"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(pid_alive(daemon.0), "the setsid daemon died with pynish on proc: README and check say it survives");
}

/// A panic in pynish with the tree running (forced, in debug builds only): the C main still catches it after
/// the unwinding ran the monitor's drop, which kills the whole tree, a setsid daemon included; pynish exits 101.
#[cfg(debug_assertions)]
#[test]
fn a_panic_kills_the_tree_and_exits_101_on_every_backend() {
    use std::io::BufRead;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("panic-now");
        // The sleeps hold no pipe of the test's: only pynish's end ends the output.
        let script = format!(
            "setsid sleep 300 >/dev/null 2>&1 & echo $!; echo $$; touch '{}'; exec sleep 300 >/dev/null 2>&1",
            marker.display()
        );
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pynish"));
        cmd.env("PYNISH_DEBUG_PANIC_AT", &marker).args(["--backend", backend, "-w", "60", "--", "sh", "-c", &script]);
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut pid = || KillOnDrop(lines.next().unwrap().unwrap().trim().parse().expect("a pid"));
        let (daemon, command) = (pid(), pid());
        let out = child.wait_with_output().unwrap();
        let stderr = stderr(&out);
        assert_eq!(code(&out), 101, "{backend}: {stderr}");
        assert!(stderr.contains("a panic forced"), "{backend}: {stderr}");
        assert_dead(&[daemon.0, command.0]);
    }
}

#[test]
fn a_run_refused_after_the_timeline_was_opened_leaves_no_file_and_keeps_an_old_one() {
    // The proc backend refuses --memory in a pid namespace whose /proc is another's: found after the timeline
    // was opened. Once: a new timeline stayed behind empty, an old one was truncated.
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = (dir.path().join("new.tl"), dir.path().join("old.tl"));
    fs::write(&old, "the previous run's timeline\n").unwrap();
    for timeline in [&new, &old] {
        let out = std::process::Command::new("unshare")
            .args(["--pid", "--fork"])
            .arg(env!("CARGO_BIN_EXE_pynish"))
            .args(["--backend", "proc", "--memory", "64MB", "--timeline"])
            .arg(timeline)
            .args(["--", "true"])
            .env_remove("PYNISH_BACKEND")
            .output()
            .unwrap();
        if code(&out) != 125 && !stderr(&out).contains("another pid namespace") {
            eprintln!("SKIP: cannot make a pid namespace here: {}", stderr(&out));
            return;
        }
        assert_eq!(code(&out), 125, "{}", stderr(&out));
        assert!(stderr(&out).contains("another pid namespace"), "{}", stderr(&out));
    }
    assert!(!new.exists(), "a refused run left a timeline behind");
    assert_eq!(fs::read_to_string(&old).unwrap(), "the previous run's timeline\n");
}

/// pynish run by `unshare --pid --fork [extra]` as pid 1 of a new pid namespace; None where that cannot be made.
fn in_new_pid_namespace(extra: &[&str], args: &[&str]) -> Option<std::process::Output> {
    let works = std::process::Command::new("unshare").args(["--pid", "--fork", "true"]).status();
    if !works.is_ok_and(|s| s.success()) {
        eprintln!("SKIP: cannot make a pid namespace here");
        return None;
    }
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork"]).args(extra).arg(env!("CARGO_BIN_EXE_pynish")).args(args);
    Some(cmd.env_remove("PYNISH_BACKEND").output().unwrap())
}

#[test]
fn auto_holds_cpu_time_in_a_group_under_a_foreign_proc_instead_of_refusing() {
    let findings: serde_json::Value =
        serde_json::from_slice(&pynish().args(["check", "--json"]).output().unwrap().stdout).unwrap();
    let Some(group) = findings["auto"].as_str().filter(|b| b.starts_with("cgroup")) else {
        eprintln!("SKIP: no cgroup backend here");
        return;
    };
    let spin = ["--json", "--cpu-time", "0.3", "-w", "30", "--", "sh", "-c", "while :; do :; done"];
    let Some(out) = in_new_pid_namespace(&[], &spin) else { return };
    let report = report(&out);
    assert_eq!(report["backend"], group, "{report}");
    assert_eq!(report["verdict"], "cpu_time", "{report}");
    assert_eq!(code(&out), 123, "{report}");
}

#[test]
fn with_its_own_proc_a_pid_namespace_uses_proc_as_usual() {
    let args = ["--json", "--backend", "proc", "--memory", "64MB", "--", "sh", "-c", "exit 2"];
    let Some(out) = in_new_pid_namespace(&["--mount-proc"], &args) else { return };
    let report = report(&out);
    assert_eq!(report["backend"], "proc", "{report}");
    assert_eq!((code(&out), &report["verdict"]), (2, &serde_json::json!("completed")), "{report}");
}
