//! `--lifeline-fd FD`: the tree ends when the process that started pynish dies.
//!
//! A caller that must not leave a run behind when it dies (the Python package: its process can be SIGKILLed or
//! OOM-killed mid-call, and its calls come from threads, so PR_SET_PDEATHSIG on pynish would fire when the
//! calling *thread* ends) makes a pipe, keeps the write end to itself and passes the read end here. The kernel
//! closes the write end when the caller dies, however it dies: pynish then sees POLLHUP and ends the whole tree
//! exactly as on a SIGTERM to itself (first signal, grace period, SIGKILL). Nothing is ever written on the pipe;
//! data, should some come, is read and ignored.

use anyhow::{Result, bail};
use nix::libc;
use nix::poll::{PollFd, PollFlags};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

/// Refuses a `--lifeline-fd` that is not an open descriptor pynish can read (bad input: exit 125).
pub fn validate(fd: i32) -> Result<()> {
    // SAFETY: F_GETFL only reads the descriptor's status flags; an unopened number yields EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // A closed 0, 1 or 2 is open now only because Rust's runtime put /dev/null there.
    if flags < 0 || crate::inherit::was_closed(fd) {
        bail!("--lifeline-fd {fd} is not an open file descriptor");
    }
    if flags & libc::O_ACCMODE == libc::O_WRONLY {
        bail!("--lifeline-fd {fd} is open for writing only");
    }
    Ok(())
}

/// The read end of the caller's pipe, watched by the monitor's `ppoll` until it is cut.
pub struct Lifeline {
    fd: OwnedFd,
}

impl Lifeline {
    /// Takes over `fd` (checked by `validate`), close-on-exec from now on: the command must not hold it.
    pub fn take(fd: i32) -> Lifeline {
        // SAFETY: `validate` found `fd` open; pynish owns it from here (nothing else in pynish uses the number).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: F_SETFD with FD_CLOEXEC changes only this descriptor's flag.
        unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_SETFD, libc::FD_CLOEXEC) };
        Lifeline { fd }
    }

    /// What `ppoll` watches: readable (data or end-of-file) or hung up.
    pub fn poll_fd(&self) -> PollFd<'_> {
        PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)
    }

    /// Whether `ppoll`'s answer for `poll_fd` says every write end is closed: the caller is gone.
    pub fn cut(&self, revents: Option<PollFlags>) -> bool {
        let Some(revents) = revents else { return false };
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return true;
        }
        if revents.contains(PollFlags::POLLIN) {
            return drain(self.fd.as_fd());
        }
        false
    }
}

/// Reads what was written, without blocking (another pynish may share this read end and have taken it); true
/// on end-of-file.
fn drain(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let mut sink = [0u8; 256];
    loop {
        let mut probe = [libc::pollfd { fd: raw, events: libc::POLLIN, revents: 0 }];
        // SAFETY: poll reads and writes the one pollfd entry it is given.
        if unsafe { libc::poll(probe.as_mut_ptr(), 1, 0) } <= 0 || probe[0].revents == 0 {
            return false;
        }
        if probe[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return true;
        }
        // SAFETY: read writes at most `sink.len()` bytes into `sink`. Data is there (POLLIN), so this returns
        // at once unless another reader took it first, which `poll` above rules out only for the moment.
        match unsafe { libc::read(raw, sink.as_mut_ptr().cast(), sink.len()) } {
            0 => return true,
            n if n < 0 => return false,
            _ => {}
        }
    }
}
