//! The only place pynish's exit-code numbers live.
//!
//! The command's own status passes through untouched; the codes below 128 that pynish claims for itself follow
//! GNU timeout (124 for the wall clock, 125–127 for its own failures) and count down from there for the other
//! limits, so a shell `case` can branch on every outcome.

use crate::signals::Sig;

/// Why pynish ends with the status it ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The command exited by itself with this code.
    Command(u8),
    /// A signal not sent by pynish ended the command (the shell's 128+N).
    Signal(Sig),
    /// The wall-time limit was reached (124, as GNU timeout).
    WallTime,
    /// The CPU-time limit was reached.
    CpuTime,
    /// The memory limit was reached.
    Memory,
    /// The process limit was reached.
    Processes,
    /// The file-size rlimit was reached (a member killed by SIGXFSZ).
    FileSize,
    /// pynish itself failed or the input was bad; nothing, or not all, was run.
    Error,
    /// The command exists but could not be executed.
    NotExecutable,
    /// The command was not found.
    NotFound,
}

/// GNU timeout's number, so that scripts written for `timeout` keep working.
pub const WALL_TIME: u8 = 124;
/// Counting down from 124, one number per limit: a `case` tells every limit apart.
pub const CPU_TIME: u8 = 123;
/// See `CPU_TIME`.
pub const MEMORY: u8 = 122;
/// See `CPU_TIME`.
pub const PROCESSES: u8 = 121;
/// See `CPU_TIME`.
pub const FILE_SIZE: u8 = 120;
/// GNU timeout's "timeout itself failed": bad input or pynish's own failure, never the command's.
pub const ERROR: u8 = 125;
/// The shell's (and timeout's) number for a command found but not executable.
pub const NOT_EXECUTABLE: u8 = 126;
/// The shell's (and timeout's) number for a command not found.
pub const NOT_FOUND: u8 = 127;

impl From<ExitCode> for u8 {
    fn from(code: ExitCode) -> u8 {
        match code {
            ExitCode::Command(code) => code,
            ExitCode::Signal(sig) => 128u8.wrapping_add(sig.number() as u8),
            ExitCode::WallTime => WALL_TIME,
            ExitCode::CpuTime => CPU_TIME,
            ExitCode::Memory => MEMORY,
            ExitCode::Processes => PROCESSES,
            ExitCode::FileSize => FILE_SIZE,
            ExitCode::Error => ERROR,
            ExitCode::NotExecutable => NOT_EXECUTABLE,
            ExitCode::NotFound => NOT_FOUND,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn numbers_are_stable() {
        assert_eq!(u8::from(ExitCode::Command(3)), 3);
        assert_eq!(u8::from(ExitCode::Signal(Signal::SIGSEGV.into())), 139);
        assert_eq!(u8::from(ExitCode::Signal(Sig::KILL)), 137);
        assert_eq!(u8::from(ExitCode::WallTime), 124);
        assert_eq!(u8::from(ExitCode::CpuTime), 123);
        assert_eq!(u8::from(ExitCode::Memory), 122);
        assert_eq!(u8::from(ExitCode::Processes), 121);
        assert_eq!(u8::from(ExitCode::FileSize), 120);
        assert_eq!(u8::from(ExitCode::Error), 125);
        assert_eq!(u8::from(ExitCode::NotExecutable), 126);
        assert_eq!(u8::from(ExitCode::NotFound), 127);
    }
}
