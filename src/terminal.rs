//! Sharing the controlling terminal with the command, so interactive commands behave as without pynish.
//!
//! The command runs in a process group of its own (so the whole group can be signalled). When pynish is the
//! terminal's foreground job, that group is made the foreground instead: the command reads the terminal, and
//! Ctrl-C / Ctrl-Z reach it once, straight from the kernel (pynish, now in the background, does not see them and
//! so never signals twice). When the command stops on Ctrl-Z, pynish hands the terminal back and stops itself,
//! so the shell's job control sees the stop; on `fg` it gives the terminal back to the command and continues it.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, raise, sigprocmask};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};
use std::os::fd::{BorrowedFd, RawFd};

/// The terminal pynish shares with the command.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    fd: RawFd,
}

impl Terminal {
    /// The terminal on stdin, stdout or stderr whose foreground job is pynish's own process group, if any.
    pub fn foreground() -> Option<Terminal> {
        let own = getpgrp();
        (0..=2).find_map(|fd| {
            // SAFETY: 0, 1 and 2 stay open for pynish's whole life; the borrow does not outlive this call.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            (nix::unistd::isatty(borrowed).unwrap_or(false) && tcgetpgrp(borrowed).ok() == Some(own))
                .then_some(Terminal { fd })
        })
    }

    pub fn fd(self) -> RawFd {
        self.fd
    }

    /// Makes `group` the foreground job (SIGTTOU is blocked: pynish may be in the background by now).
    pub fn give_to(self, group: Pid) {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTTOU);
        let mut old = SigSet::empty();
        let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
        // SAFETY: the descriptor is one of 0-2, open for pynish's whole life.
        let _ = tcsetpgrp(unsafe { BorrowedFd::borrow_raw(self.fd) }, group);
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }

    /// Takes the terminal back for pynish's own group.
    pub fn reclaim(self) {
        self.give_to(getpgrp());
    }

    /// While the command holds the terminal pynish is in the background: its own `-v` lines must not stop it
    /// with SIGTTOU when the terminal has `tostop` set. A blocked SIGTTOU lets the write through. (The command
    /// does not inherit the mask: the child's signal mask is reset before exec.)
    pub fn block_ttou(self) {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTTOU);
        let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    }

    /// The command stopped (Ctrl-Z): stop pynish too, and resume the command when pynish is continued.
    ///
    /// SIGTSTP, not SIGSTOP: when no job-control shell is there to continue pynish (pynish leads the terminal's
    /// session, as under `ssh -t` or `docker run -it`), its process group is orphaned and the kernel discards
    /// SIGTSTP, so pynish goes on and resumes the command instead of freezing both for ever.
    pub fn relay_stop(self, group: Pid) {
        self.reclaim();
        let _ = raise(Signal::SIGTSTP);
        // Continued by the shell's `fg` (or `bg`: then the command's reads stop it again, as usual).
        self.give_to(group);
        let _ = killpg(group, Signal::SIGCONT);
    }
}
