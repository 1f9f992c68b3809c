//! The signals pynish handles, turned into a descriptor the watch loop can sleep on.
//!
//! A handler records the signal in a bit set and writes one byte to a non-blocking socket; the loop polls the
//! other end, drains it, and takes the set. Both steps are async-signal-safe (an atomic `fetch_or` and a
//! `write`). A signal that was ignored when pynish started is left ignored, so the command inherits it ignored
//! through exec, exactly as without pynish (`nohup pynish ...` keeps SIGHUP ignored); SIGINT and SIGQUIT are
//! caught all the same (a script's background job has them ignored), and ignored again for the command
//! (`inherit::CAUGHT_THOUGH_IGNORED`). SIGCHLD is never ignored
//! here: `inherit` resets it to default when pynish starts. The watched signals are unblocked, whatever mask
//! pynish was started with.

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};

/// Signals received and not yet taken, one bit per signal number.
static PENDING: AtomicU64 = AtomicU64::new(0);

pub struct Wakeup {
    read: UnixStream,
    /// Kept open for the handlers, which write to its raw descriptor.
    _write: UnixStream,
}

/// Whether `signal` is ignored (SIG_IGN) right now.
fn is_ignored(signal: Signal) -> bool {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current disposition into `current`, which is large enough.
    let read = unsafe { libc::sigaction(signal as i32, std::ptr::null(), current.as_mut_ptr()) } == 0;
    // SAFETY: sigaction filled `current` when it returned 0; zeroed memory is a valid sigaction otherwise.
    read && unsafe { current.assume_init() }.sa_sigaction == libc::SIG_IGN
}

impl Wakeup {
    /// Installs handlers for `signals` (those not ignored now).
    pub fn install(signals: &[Signal]) -> std::io::Result<Wakeup> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let fd = write.as_raw_fd();
        let watched = |s: &Signal| !is_ignored(*s) || crate::inherit::CAUGHT_THOUGH_IGNORED.contains(&(*s as i32));
        for &signal in signals.iter().filter(|s| watched(s)) {
            let bit = 1u64 << (signal as i32);
            let action = move || {
                PENDING.fetch_or(bit, Ordering::SeqCst);
                // SAFETY: write is async-signal-safe; a full socket just means a wake-up is already pending.
                unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
            };
            // SAFETY: the action only does an atomic OR and a write(2), both async-signal-safe.
            unsafe { signal_hook::low_level::register(signal as i32, action) }?;
        }
        // A caller may have started pynish with some of them blocked (a runtime that blocks signals in the
        // thread that spawns): pynish must still receive them. (The command's mask is emptied in `spawn`.)
        let mut set = SigSet::empty();
        signals.iter().for_each(|&s| set.add(s));
        sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)?;
        Ok(Wakeup { read, _write: write })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Drains the wake-up bytes and returns the signals received since the last call, lowest number first.
    pub fn take(&mut self) -> Vec<Signal> {
        let mut sink = [0u8; 64];
        while matches!(self.read.read(&mut sink), Ok(n) if n > 0) {}
        let bits = PENDING.swap(0, Ordering::SeqCst);
        (1..64).filter(|n| bits & (1 << n) != 0).filter_map(|n| Signal::try_from(n).ok()).collect()
    }
}
