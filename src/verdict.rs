//! What happened to the command, decided from the facts the monitor gathered: a pure function, tested alone.

use crate::exit_code::ExitCode;
use crate::limits::LimitKind;
use crate::record::{Facts, Status};
use serde::{Deserialize, Serialize};

/// The verdict a script branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The command ended by itself, within every limit (whatever its exit code).
    Completed,
    /// A signal ended it that pynish did not send for a limit (its own crash, someone's kill, or a terminating
    /// signal pynish received and passed on).
    Signaled,
    /// The wall-time limit was reached, even if the command then exited 0 within its grace.
    WallTime,
    /// The CPU-time limit was reached, by pynish's count or RLIMIT_CPU's.
    CpuTime,
    /// The memory limit was reached, by pynish's count or the kernel's (an OOM kill by the run's own group's
    /// limit; an enclosing group's or the machine's OOM killer is `Signaled`, see `record::Whose`).
    Memory,
    /// The process limit was reached, by pynish's count or the kernel's (a fork refused by the run's own group).
    Processes,
    /// A member was killed by SIGXFSZ: it wrote past `--file-size` (report schema 2).
    FileSize,
    /// The command could not be started: nothing ran.
    SpawnError,
}

impl From<LimitKind> for Verdict {
    fn from(kind: LimitKind) -> Verdict {
        match kind {
            LimitKind::WallTime => Verdict::WallTime,
            LimitKind::CpuTime => Verdict::CpuTime,
            LimitKind::Memory => Verdict::Memory,
            LimitKind::Processes => Verdict::Processes,
            LimitKind::FileSize => Verdict::FileSize,
        }
    }
}

/// The verdict and pynish's exit code.
pub fn decide(facts: &Facts) -> (Verdict, ExitCode) {
    let own = match facts.status {
        Some(Status::Exited(code)) => ExitCode::Command(code as u8),
        Some(Status::Signaled(signal)) => ExitCode::Signal(signal),
        None => ExitCode::Error,
    };
    if let Some(limit) = facts.limit.or(facts.kernel_limit).or(facts.soft_limit) {
        let code = if facts.preserve_status {
            own
        } else {
            match limit {
                LimitKind::WallTime => ExitCode::WallTime,
                LimitKind::CpuTime => ExitCode::CpuTime,
                LimitKind::Memory => ExitCode::Memory,
                LimitKind::Processes => ExitCode::Processes,
                LimitKind::FileSize => ExitCode::FileSize,
            }
        };
        return (limit.into(), code);
    }
    if let Some(signal) = facts.received {
        return (Verdict::Signaled, ExitCode::Signal(signal));
    }
    match facts.status {
        Some(Status::Signaled(_)) => (Verdict::Signaled, own),
        _ => (Verdict::Completed, own),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::Sig;
    use nix::sys::signal::Signal;

    #[test]
    fn completed_keeps_exit_code() {
        let facts = Facts { status: Some(Status::Exited(3)), ..Facts::default() };
        assert_eq!(decide(&facts), (Verdict::Completed, ExitCode::Command(3)));
    }

    #[test]
    fn limit_wins_over_clean_exit_in_grace() {
        let facts = Facts { limit: Some(LimitKind::WallTime), status: Some(Status::Exited(0)), ..Facts::default() };
        assert_eq!(decide(&facts), (Verdict::WallTime, ExitCode::WallTime));
    }

    #[test]
    fn preserve_status_returns_command_status() {
        let facts = Facts {
            limit: Some(LimitKind::Memory),
            status: Some(Status::Signaled(Sig::KILL)),
            preserve_status: true,
            ..Facts::default()
        };
        assert_eq!(decide(&facts), (Verdict::Memory, ExitCode::Signal(Sig::KILL)));
    }

    #[test]
    fn kernel_kill_is_a_limit_not_a_signal() {
        let facts = Facts {
            kernel_limit: Some(LimitKind::CpuTime),
            status: Some(Status::Signaled(Sig::XCPU)),
            ..Facts::default()
        };
        assert_eq!(decide(&facts), (Verdict::CpuTime, ExitCode::CpuTime));
    }

    #[test]
    fn received_signal_is_reported() {
        let facts =
            Facts { received: Some(Signal::SIGHUP.into()), status: Some(Status::Exited(0)), ..Facts::default() };
        assert_eq!(decide(&facts), (Verdict::Signaled, ExitCode::Signal(Signal::SIGHUP.into())));
    }

    #[test]
    fn foreign_signal_passes_through() {
        let facts = Facts { status: Some(Status::Signaled(Signal::SIGSEGV.into())), ..Facts::default() };
        assert_eq!(decide(&facts), (Verdict::Signaled, ExitCode::Signal(Signal::SIGSEGV.into())));
    }
}
