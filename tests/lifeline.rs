//! `--lifeline-fd FD`: once every write end of the caller's pipe is closed (the caller died), pynish ends the
//! whole tree as on a SIGTERM to itself, setsid grandchildren and the grace period included; the read end never
//! reaches the command; a descriptor that is not open is bad input.

use crate::harness::*;
use crate::util::*;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A pipe, both ends close-on-exec: (read, write).
fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

/// The inode that `/proc/PID/fd/*` names as `pipe:[INODE]` for descriptor `fd` of this process.
fn pipe_inode(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap().to_string_lossy().into_owned()
}

/// Whether any descriptor of `pid` is `link` (e.g. `pipe:[123]`).
fn holds(pid: i32, link: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.flatten().any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == link)))
        .unwrap_or(false)
}

#[test]
fn a_cut_lifeline_ends_the_whole_tree_as_sigterm_does() {
    let scene = Scene::new("lifeline-cut");
    let (read, write) = pipe();
    let link = pipe_inode(read);
    let mut cmd = scene.pynish("proc");
    cmd.args(["--grace", "1s", "--lifeline-fd", "3", "--", &testkit(), "escape", "setsid"]).arg(scene.path("pid"));
    close_extra_fds(&mut cmd, &[3]);
    // SAFETY: dup2 and fcntl are async-signal-safe; descriptor 3 ends up the read end, not close-on-exec (dup2
    // onto itself would keep the flag), while the pipe's own ends stay close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            let done = if read == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(read, 3) };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // SAFETY: closing our copy of the read end: only pynish holds one now.
    unsafe { libc::close(read) };
    let escaped = wait_pids(&scene.path("pid"))[0];
    assert!(alive_in_run(escaped, &scene.tag));
    assert!(!holds(escaped, &link), "the command's tree holds the lifeline's read end");

    let cut = Instant::now();
    // SAFETY: the only write end: this is what the kernel does when the caller dies.
    unsafe { libc::close(write) };
    let out = output_timeout(child, PATIENCE).expect("pynish ended");
    let took = cut.elapsed();
    let report = scene.report(&out);
    assert_eq!(report["verdict"], "signaled", "{report}");
    assert_eq!(report["received_signal"], "SIGTERM", "{report}");
    // The escaped grandchild ignores SIGTERM: it got the grace period, then SIGKILL.
    assert_eq!(report["escalation"]["sigkill_sent"], true, "{report}");
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(shell_code(out.status), 128 + libc::SIGTERM);
    assert_run_gone(&scene.tag, &[escaped]);
}

#[test]
fn a_lifeline_that_is_not_open_is_refused_and_nothing_runs() {
    let scene = Scene::new("lifeline-bad");
    let marker = scene.file("ran");
    let out = pynish().args(["--lifeline-fd", "97", "--", "touch", &marker]).output().unwrap();
    assert_eq!(code(&out), 125);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--lifeline-fd 97 is not an open file descriptor"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!scene.path("ran").exists());
}

#[test]
fn the_lifeline_flag_is_hidden_from_help() {
    for flag in ["--help", "help"] {
        let out = pynish().arg(flag).output().unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("lifeline"), "{flag} shows --lifeline-fd");
    }
}
