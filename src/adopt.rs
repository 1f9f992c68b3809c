//! `--adopt PID --adopt-fd FD`: supervise a child that already exists instead of starting a command.
//!
//! The caller forked the process to limit and holds it on a pipe, then exec'd pynish, which (same pid) is its
//! parent. pynish does from outside what `spawn` does in the child before exec: writes its pid into the run's
//! `cgroup.procs` files, makes it the leader of a process group of its own (allowed on a child that has not
//! exec'd), gives that group the terminal's foreground when pynish holds it, sets its rlimits with `prlimit` and
//! its CPUs (`--cpus`) with `sched_setaffinity`. Only then does pynish release it, by writing one byte to the pipe
//! and closing it. Any failure kills the held child before it ran anything of its own: it is never released
//! unlimited. The held child arms its own PR_SET_PDEATHSIG (pynish cannot do that for another process).

use crate::settings::Adopt;
use crate::spawn::{Plan, SpawnError};
use anyhow::{Context, Result, anyhow, bail};
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, getpid, setpgid};
use std::os::fd::RawFd;

/// The byte that releases the held child.
pub const GO: u8 = b'G';

/// The parent pid and state letter of `pid`, from `/proc/PID/stat`.
fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The parent pid and state letter from the text of a `/proc/PID/stat` file.
fn parse_stat(stat: &str) -> Option<(i32, char)> {
    // The command name may contain anything, ")" included: the fields start after the last ")".
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Refuses an `--adopt` that pynish cannot honour, before anything is set up (bad input: exit 125).
pub fn validate(adopt: Adopt) -> Result<()> {
    let me = getpid().as_raw();
    match parent_and_state(adopt.pid) {
        None => bail!("--adopt {}: no such process", adopt.pid),
        Some((ppid, _)) if ppid != me => {
            bail!("--adopt {}: not a child of this pynish (pid {me}; its parent is {ppid})", adopt.pid)
        }
        Some((_, 'Z')) => bail!("--adopt {}: the process has already ended", adopt.pid),
        Some(_) => {}
    }
    // SAFETY: F_GETFL only reads the descriptor's status flags; an unopened number yields EBADF.
    let flags = unsafe { libc::fcntl(adopt.fd, libc::F_GETFL) };
    if flags < 0 {
        bail!("--adopt-fd {} is not an open file descriptor", adopt.fd);
    }
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        bail!("--adopt-fd {} is open for reading only", adopt.fd);
    }
    Ok(())
}

fn os_error(what: &str) -> anyhow::Error {
    anyhow!("{what}: {}", std::io::Error::last_os_error())
}

/// Everything `spawn`'s `pre_exec` does, done to the held child from outside.
fn place(pid: i32, plan: &Plan) -> Result<()> {
    let line = format!("{pid}\n");
    for &fd in &plan.join_fds {
        // SAFETY: writes a buffer we own to a descriptor the backend keeps open for the whole run.
        if unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) } < 0 {
            return Err(os_error("cannot move the adopted process into the run's cgroup"));
        }
    }
    setpgid(Pid::from_raw(pid), Pid::from_raw(pid)).context("cannot give the adopted process its own group")?;
    if let Some(tty) = plan.terminal {
        // pynish has blocked SIGTTOU (it holds the foreground); a failure only leaves the group in the background.
        // SAFETY: tcsetpgrp takes a descriptor and a group id and touches no memory of ours.
        unsafe { libc::tcsetpgrp(tty, pid) };
    }
    for &(resource, soft, hard) in &plan.rlimits {
        let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        // SAFETY: prlimit reads the rlimit we pass and writes nothing (no old-limit pointer).
        if unsafe { libc::prlimit(pid, resource as _, &limit, std::ptr::null_mut()) } < 0 {
            return Err(os_error("cannot set the adopted process's rlimits"));
        }
    }
    if let Some(set) = &plan.cpus {
        // SAFETY: sched_setaffinity reads the set we pass, of the size we give.
        if unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), set) } < 0 {
            return Err(os_error("cannot set the adopted process's CPUs (--cpus)"));
        }
    }
    Ok(())
}

/// Releases the held child.
fn release(fd: RawFd) -> Result<()> {
    // SAFETY: writes one byte from a static to a descriptor validated as open for writing.
    let written = unsafe { libc::write(fd, [GO].as_ptr().cast(), 1) };
    // SAFETY: the descriptor is ours (passed to pynish for this) and not used again.
    unsafe { libc::close(fd) };
    if written != 1 {
        return Err(os_error("cannot release the adopted process (--adopt-fd)"));
    }
    Ok(())
}

/// Places the held child in the run as `plan` says, then releases it; on failure it is killed unreleased.
pub fn adopt(adopt: Adopt, plan: &Plan) -> Result<Pid, SpawnError> {
    let pid = Pid::from_raw(adopt.pid);
    match place(adopt.pid, plan).and_then(|()| release(adopt.fd)) {
        Ok(()) => Ok(pid),
        Err(error) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            Err(SpawnError::Setup(error.context(format!("cannot adopt process {}", adopt.pid))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_the_last_parenthesis() {
        assert_eq!(parse_stat("42 (sh) S 7 42 42 0 -1"), Some((7, 'S')));
        assert_eq!(parse_stat("42 (a) Z (b)) R 9 1 1"), Some((9, 'R')));
        assert_eq!(parse_stat("42 (truncated"), None);
    }

    #[test]
    fn a_non_child_is_refused() {
        let error = validate(Adopt { pid: 1, fd: 1 }).unwrap_err().to_string();
        assert!(error.contains("not a child of this pynish"), "{error}");
    }
}
