//! The process state pynish inherits from its caller, and what of it the command gets back.
//!
//! Only Linux runs the probe (`.init_array`); elsewhere nothing is known to have been closed.
//!
//! Passthrough means the command starts as it would without pynish, and as under `timeout`:
//! - a standard descriptor (0, 1, 2) the caller left closed is closed for the command too. Rust's runtime opens
//!   `/dev/null` on a closed 0, 1 or 2 before `main`, so which were closed is seen earlier, by `probe`, a
//!   function in `.init_array` that the C runtime calls before Rust's `main` (and so before std's
//!   sanitisation); pynish's own use of the reopened descriptors (its messages to `/dev/null`) stays harmless;
//! - a signal the caller ignored stays ignored (`nohup`), SIGPIPE included, which Rust's runtime ignores for
//!   itself and std's `Command` resets to default in the child: its disposition is also seen by `probe`;
//! - SIGCHLD is the exception, reset to default, for pynish from the start (an ignored SIGCHLD makes the kernel
//!   reap the children itself, and their statuses are lost) and so for the command, whose own `wait` then works;
//! - the signal mask is empty (std's `Command` keeps the caller's): a command started with SIGTERM blocked could
//!   not act on pynish's first signal, and would lose its grace period waiting for SIGKILL.

use nix::libc;
use std::sync::atomic::{AtomicU8, Ordering};

/// What `probe` saw: bit n (0..=2) set when descriptor n was closed, `SIGPIPE_IGNORED` when SIGPIPE was ignored,
/// `PROBED` once it ran at all.
static INHERITED: AtomicU8 = AtomicU8::new(0);
const SIGPIPE_IGNORED: u8 = 1 << 3;
/// Bits of the signals in `CAUGHT_THOUGH_IGNORED`, in its order, when they were ignored.
const CAUGHT_IGNORED: [u8; 2] = [1 << 4, 1 << 5];
const PROBED: u8 = 1 << 7;

/// Signals pynish catches even when its caller ignored them, and gives back ignored to the command: a shell
/// starts a background job (`pynish ... &` in a script) with SIGINT and SIGQUIT ignored, and GNU timeout still
/// ends its command on `kill -INT`; pynish must not be the one process that cannot be interrupted. (SIGHUP
/// stays ignored for pynish too: `nohup` asks for exactly that.)
pub const CAUGHT_THOUGH_IGNORED: [i32; 2] = [libc::SIGINT, libc::SIGQUIT];

/// Looks at the standard descriptors and SIGPIPE before Rust's runtime changes them. Only observes: fcntl and
/// sigaction queries, one atomic store.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
extern "C" fn probe() {
    let mut seen = PROBED;
    for fd in 0..=2 {
        // SAFETY: F_GETFD on any integer only reads the descriptor table; EBADF means closed.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            seen |= 1 << fd;
        }
    }
    let watched = CAUGHT_THOUGH_IGNORED.iter().zip(CAUGHT_IGNORED).chain([(&libc::SIGPIPE, SIGPIPE_IGNORED)]);
    for (&signal, bit) in watched {
        if ignored(signal) {
            seen |= bit;
        }
    }
    INHERITED.store(seen, Ordering::SeqCst);
}

/// Whether `signal` is ignored now.
fn ignored(signal: i32) -> bool {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current disposition into `current`, which is large enough.
    let read = unsafe { libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr()) } == 0;
    // SAFETY: sigaction filled `current` when it returned 0.
    read && unsafe { current.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Puts `probe` among the functions the C runtime (glibc or musl) runs before `main`; Rust's runtime does its
/// own set-up (reopening closed descriptors, ignoring SIGPIPE) only once `main` has started.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static PROBE: extern "C" fn() = probe;

/// Whether the caller started pynish with standard descriptor `fd` closed.
pub fn was_closed(fd: i32) -> bool {
    (0..=2).contains(&fd) && INHERITED.load(Ordering::SeqCst) & (1 << fd) != 0
}

/// Whether the probe ran (it always should on Linux; without it, nothing is known to have been closed).
#[cfg(test)]
fn probed() -> bool {
    INHERITED.load(Ordering::SeqCst) & PROBED != 0
}

/// pynish's own start: SIGCHLD back to default, before anything forks, so that every status is there for
/// `waitpid` (pynish then catches it; exec resets a caught signal to default for the command).
pub fn reset_sigchld() {
    // SAFETY: installing SIG_DFL runs no code of ours as a handler.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
}

/// Just before exec, in the forked child (async-signal-safe calls only, nothing allocated), or in pynish itself
/// when it execs again (`--delegate`): the empty signal mask, SIGPIPE, SIGINT and SIGQUIT ignored again if the
/// caller ignored them, and the standard descriptors the caller had closed closed again.
///
/// # Safety
/// Only to be called right before exec (it closes descriptors and changes the signal mask).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub unsafe fn restore_in_child() {
    let seen = INHERITED.load(Ordering::SeqCst);
    // SAFETY: sigemptyset fills a local set; sigprocmask and signal take plain values; close takes an integer.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if seen & SIGPIPE_IGNORED != 0 {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        for (signal, bit) in CAUGHT_THOUGH_IGNORED.into_iter().zip(CAUGHT_IGNORED) {
            if seen & bit != 0 {
                libc::signal(signal, libc::SIG_IGN);
            }
        }
        for fd in 0..=2 {
            if seen & (1 << fd) != 0 {
                libc::close(fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_runs_before_main() {
        // The test harness is started by cargo with every standard descriptor open.
        assert!(probed(), "the .init_array probe did not run");
        assert!(!was_closed(3) && !was_closed(-1), "only 0, 1 and 2 are probed");
    }
}
