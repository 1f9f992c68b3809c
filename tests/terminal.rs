//! pynish on a real (pseudo-)terminal: an interactive command reads the terminal as without pynish, Ctrl-C ends
//! the command once, Ctrl-Z and `fg` in a job-control shell stop and resume the run, and the terminal goes back to
//! the shell afterwards.
//!
//! Two set-ups: pynish itself as the session leader of a fresh pty (as under `ssh -t`, `docker run -it` or
//! `script -c`), and an interactive bash on the pty that runs pynish as a job (a user at a terminal).

use crate::harness::*;
use crate::util::testkit;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The master side of a pty, with everything the terminal printed gathered by a reader thread.
struct Pty {
    writer: std::fs::File,
    seen: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl Pty {
    /// Opens a pty and starts `cmd` as the session leader with the pty as its controlling terminal (and as its
    /// stdin, stdout and stderr).
    fn spawn(cmd: &mut Command) -> (Pty, Child) {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        drop(slave);
        let master: OwnedFd = pty.master;
        let mut reader = std::fs::File::from(master.try_clone().unwrap());
        let seen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once nothing holds the slave side open any more.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (lock, cond) = &*sink;
                lock.lock().unwrap().extend_from_slice(&buf[..n]);
                cond.notify_all();
            }
        });
        (Pty { writer: std::fs::File::from(master), seen }, child)
    }

    /// Types `bytes` on the terminal's keyboard.
    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to the pty");
    }

    /// What the terminal showed so far.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.seen.0.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal showed `needle` `times` times in all; false after `timeout`.
    fn expect_n(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.seen;
        let mut seen = lock.lock().unwrap();
        loop {
            if String::from_utf8_lossy(&seen).matches(needle).count() >= times {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            seen = cond.wait_timeout(seen, deadline - now).unwrap().0;
        }
    }

    fn expect(&self, needle: &str, timeout: Duration) -> bool {
        self.expect_n(needle, 1, timeout)
    }

    /// Asserts the terminal showed `needle` within the test's patience.
    fn must_show(&self, needle: &str) {
        assert!(self.expect(needle, PATIENCE), "the terminal never showed {needle:?}; it showed:\n{}", self.screen());
    }
}

const CTRL_C: &[u8] = b"\x03";
const CTRL_Z: &[u8] = b"\x1a";
const CTRL_D: &[u8] = b"\x04";

/// pynish for a terminal test (the report goes to a file: the terminal is for the command).
fn pynish_tty(scene: &Scene, backend: &str, extra: &[&str]) -> Command {
    let mut cmd = pynish_cmd(&scene.tag);
    cmd.args(["--backend", backend, "--report"]).arg(scene.path("report.json")).args(extra);
    cmd
}

/// The --report file, checked against pynish's exit `status` (see `util::check_invariants`).
fn file_report(scene: &Scene, status: std::process::ExitStatus) -> serde_json::Value {
    crate::util::report_file(&scene.path("report.json"), shell_code(status))
}

/// Runs `argv` under pynish as the session leader of a pty, types `input`, and expects `wanted` on the terminal
/// and a clean exit.
fn reads_the_terminal(argv: &[&str], input: &[u8], wanted: &str) {
    each_backend(|backend| {
        let scene = Scene::new("tty-read");
        let (mut pty, mut child) = Pty::spawn(pynish_tty(&scene, backend, &["--wall-time", "60s", "--"]).args(argv));
        pty.send(input);
        pty.must_show(wanted);
        let status = wait_timeout(&mut child, PATIENCE).expect("pynish ended");
        assert_eq!(shell_code(status), 0, "{backend}: screen:\n{}", pty.screen());
        let report = file_report(&scene, status);
        assert_eq!(report["verdict"], "completed", "{backend}: {report}");
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn shell_read_gets_a_line_from_the_terminal() {
    reads_the_terminal(&["sh", "-c", "read x; echo \"got $x\""], b"hello\n", "got hello");
}

#[test]
fn python_input_reads_the_terminal() {
    if Command::new("python3").arg("-c").arg("pass").status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("SKIP: no python3 on this machine");
        return;
    }
    reads_the_terminal(&["python3", "-c", "print('got', input())"], b"snake\n", "got snake");
}

#[test]
fn cat_echoes_the_terminal_and_ends_on_ctrl_d() {
    each_backend(|backend| {
        let scene = Scene::new("tty-cat");
        let (mut pty, mut child) = Pty::spawn(&mut pynish_tty(&scene, backend, &["--wall-time", "60s", "--", "cat"]));
        pty.send(b"meow\n");
        // Once as the terminal's echo, once from cat.
        assert!(
            pty.expect_n("meow", 2, PATIENCE),
            "{backend}: cat did not answer; the terminal showed:\n{}",
            pty.screen()
        );
        pty.send(CTRL_D);
        let status = wait_timeout(&mut child, PATIENCE).expect("cat ended on Ctrl-D");
        assert_eq!(shell_code(status), 0, "{backend}");
        assert_eq!(file_report(&scene, status)["verdict"], "completed", "{backend}");
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn ctrl_c_ends_the_command_and_pynish_dies_of_sigint() {
    each_backend(|backend| {
        let scene = Scene::new("tty-int");
        let argv = ["--wall-time", "60s", "--", "sh", "-c", "echo RE''ADY; exec cat"];
        let (mut pty, mut child) = Pty::spawn(&mut pynish_tty(&scene, backend, &argv));
        pty.must_show("READY");
        pty.send(CTRL_C);
        let status = wait_timeout(&mut child, PATIENCE).expect("Ctrl-C ended the run");
        assert_eq!(shell_code(status), 130, "{backend}: {status:?}");
        let report = file_report(&scene, status);
        assert_eq!(report["verdict"], "signaled", "{backend}: {report}");
        assert_eq!(report["signal"], "SIGINT", "{backend}: {report}");
        // The kernel, not pynish, delivered it: pynish was in the background and received nothing itself.
        assert!(report["received_signal"].is_null(), "{backend}: {report}");
        assert!(report["escalation"]["first_signal"].is_null(), "{backend}: {report}");
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn ctrl_c_reaches_each_member_once() {
    // Four recorders in the command's group log every signal; Ctrl-C must reach each one once (the kernel sends
    // it to the foreground group, and pynish, in the background, must not pass on a copy of its own).
    each_backend(|backend| {
        let scene = Scene::new("tty-int-once");
        let mut cmd = pynish_tty(&scene, backend, &["--grace", "200ms", "--", &testkit(), "record"]);
        let (mut pty, mut child) = Pty::spawn(cmd.arg(scene.dir.path()).arg("4"));
        let pids = wait_pids(&scene.path("pids"));
        pty.send(CTRL_C);
        let log = scene.path("log");
        let has = |pid: i32, signal: &str| lines(&log).iter().any(|l| *l == format!("{pid} {signal}"));
        let all = wait_until(PATIENCE, || pids.iter().all(|&p| has(p, "SIGINT")));
        // End the run with SIGTERM to pynish. A copy of SIGINT pynish passed on would have been sent before this
        // TERM, and a recorder takes pending signals lowest number first: once TERM is logged, no INT can follow.
        send(child.id(), libc::SIGTERM);
        let ended = wait_timeout(&mut child, PATIENCE);
        let got = lines(&log);
        assert!(all, "{backend}: Ctrl-C did not reach every member: {got:?}");
        let Some(status) = ended else { panic!("{backend}: pynish did not end on SIGTERM") };
        assert!(pids.iter().all(|&p| has(p, "SIGTERM")), "{backend}: SIGTERM was not passed on: {got:?}");
        for pid in &pids {
            let ints = got.iter().filter(|l| **l == format!("{pid} SIGINT")).count();
            assert_eq!(ints, 1, "{backend}: member {pid} got SIGINT {ints} times: {got:?}");
        }
        assert_eq!(file_report(&scene, status)["received_signal"], "SIGTERM", "{backend}");
        assert_run_gone(&scene.tag, &pids);
        drop(pty);
    });
}

#[test]
fn ctrl_z_without_a_job_control_shell_does_not_freeze_the_run() {
    // pynish is the session leader (ssh -t, docker run -it, script -c): no shell can `fg` it. Ctrl-Z stops the
    // command; pynish must not stop itself for good, and its wall-time limit must still end the run.
    each_backend(|backend| {
        let scene = Scene::new("tty-tstp");
        let argv = ["--wall-time", "1s", "--grace", "500ms", "--", "sh", "-c", "echo RE''ADY; exec cat"];
        let (mut pty, mut child) = Pty::spawn(&mut pynish_tty(&scene, backend, &argv));
        pty.must_show("READY");
        pty.send(CTRL_Z);
        let mut status = None;
        wait_until(Duration::from_secs(10), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        let Some(status) = status else {
            let states: Vec<_> = survivors(&scene.tag).iter().map(|&p| (p, state(p).unwrap_or('?'))).collect();
            // Continue pynish so that it ends the run itself (and removes what its backend made).
            send(child.id(), libc::SIGCONT);
            let after = wait_timeout(&mut child, PATIENCE);
            panic!(
                "{backend}: pynish (pid {}) hung after Ctrl-Z; (pid, state) of the run: {states:?}; \
                 after SIGCONT it ended with {after:?}",
                child.id()
            );
        };
        assert_eq!(shell_code(status), 124, "{backend}");
        assert_eq!(file_report(&scene, status)["verdict"], "wall_time", "{backend}");
        assert_run_gone(&scene.tag, &[]);
    });
}

/// An interactive bash on a pty, with a prompt the tests can wait for.
fn bash(scene: &Scene) -> (Pty, Child) {
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "--noediting", "-i"])
        .env(TAG_VAR, &scene.tag)
        .env("PS1", "PROMPT> ")
        .env("TERM", "dumb")
        .env("PATH", format!("{}:{}", dir_of(env!("CARGO_BIN_EXE_pynish")), std::env::var("PATH").unwrap()));
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        cmd.env_remove(var);
    }
    close_extra_fds(&mut cmd, &[]);
    let (pty, child) = Pty::spawn(&mut cmd);
    pty.must_show("PROMPT> ");
    (pty, child)
}

fn dir_of(path: &str) -> String {
    std::path::Path::new(path).parent().unwrap().to_string_lossy().into_owned()
}

fn exit_bash(mut pty: Pty, mut child: Child) {
    pty.send(b"exit\n");
    if wait_timeout(&mut child, PATIENCE).is_none() {
        panic!("bash did not exit; the terminal showed:\n{}", pty.screen());
    }
}

#[test]
fn ctrl_z_and_fg_in_a_job_control_shell_stop_and_resume_the_run() {
    each_backend(|backend| {
        let scene = Scene::new("tty-fg");
        let (mut pty, child) = bash(&scene);
        let report = scene.file("report.json");
        pty.send(
            format!(
                "pynish --backend {backend} --report {report} -- sh -c 'echo RE\"\"ADY; read x; echo \"got $x\"'\n"
            )
            .as_bytes(),
        );
        pty.must_show("READY");
        pty.send(CTRL_Z);
        pty.must_show("Stopped");
        assert!(pty.expect_n("PROMPT> ", 2, PATIENCE), "{backend}: no prompt after Ctrl-Z:\n{}", pty.screen());
        pty.send(b"fg\n");
        pty.send(b"resumed\n");
        pty.must_show("got resumed");
        assert!(pty.expect_n("PROMPT> ", 3, PATIENCE), "{backend}: no prompt after the run:\n{}", pty.screen());
        // The shell has its terminal back: it reads and runs the next line.
        pty.send(b"echo \"st\"\"atus $?\"\n");
        pty.must_show("status 0");
        // pynish's status is the one bash printed above.
        let report = crate::util::report_file(std::path::Path::new(&report), 0);
        assert_eq!(report["verdict"], "completed", "{backend}: {report}");
        exit_bash(pty, child);
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn pynish_in_the_background_leaves_the_terminal_to_the_shell() {
    each_backend(|backend| {
        let scene = Scene::new("tty-bg");
        let (mut pty, child) = bash(&scene);
        pty.send(format!("pynish --backend {backend} --wall-time 60s -- sleep 300 &\n").as_bytes());
        pty.send(b"echo \"still\"\"here\"\n");
        pty.must_show("stillhere");
        pty.send(b"kill %1; wait $!; echo \"wa\"\"ited $?\"\n");
        pty.must_show("waited 143");
        exit_bash(pty, child);
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn verbose_pynish_is_not_stopped_by_its_own_output_under_tostop() {
    // With `stty tostop` a background process that writes to the terminal gets SIGTTOU. pynish gives the terminal
    // to the command, so its own -v lines must not stop it (and with it the wall-time limit).
    each_backend(|backend| {
        let scene = Scene::new("tty-tostop");
        let (mut pty, child) = bash(&scene);
        pty.send(
            format!("stty tostop; pynish --backend {backend} -v --wall-time 1s -- sleep 30; echo \"ex\"\"it $?\"\n")
                .as_bytes(),
        );
        // "exit N" shows either way: 124 when the limit ended the run, 128+N when a stop signal ended the job.
        let shown = pty.expect("exit ", PATIENCE);
        let screen = pty.screen();
        if !screen.contains("exit 124") {
            // Let the stopped pynish finish the run itself.
            pty.send(b"stty -tostop; fg; echo \"re\"\"covered\"\n");
            pty.expect("recovered", PATIENCE);
        }
        assert!(shown && screen.contains("exit 124"), "{backend}: pynish did not end at its limit:\n{screen}");
        exit_bash(pty, child);
        assert_run_gone(&scene.tag, &[]);
    });
}
