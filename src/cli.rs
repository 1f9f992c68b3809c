//! The command-line definition, and nothing else: clap types stop here (see `settings.rs`).

use crate::limits::MemoryKind;
use crate::settings::BackendChoice;
use crate::signals::parse_signal;
use crate::units::{parse_duration, parse_size};
use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const LONG_ABOUT: &str = "\
Run one command under wall-time, CPU-time, memory and process limits that hold for its whole process tree, \
escalate from a polite signal to SIGKILL, and report what happened: completed (with its exit code), killed by a \
signal, or stopped at a limit, and which one.";

const AFTER_LONG_HELP: &str = "\
Units:
  Durations: 250ms, 7s, 1.5h, 1h 30m, 2d; a bare number is seconds (as in GNU timeout).
  Sizes: 500MB = 500*10^6 bytes, 500MiB = 500*2^20 bytes, 1.5GiB; a bare number is bytes.

Exit status:
  N        the command exited by itself with code N (all limits held)
  128+N    the command was killed by signal N that pynish did not send (or pynish was asked to stop by N)
  124      wall-time limit reached          123  CPU-time limit reached
  122      memory limit reached             121  process limit reached
  125      pynish failed or the input was bad (nothing is run)
  126      the command cannot be executed   127  the command was not found
  With --preserve-status the command's own status is returned even when a limit was hit.

Environment:
  PYNISH_GRACE, PYNISH_SIGNAL, PYNISH_BACKEND set defaults for --grace, --signal and --backend;
  a flag on the command line wins over the environment.

The JSON report (--json, --report, --report-fd) is documented in README.md and in pynish(1).";

/// Run a command under resource limits for its whole process tree, and report the verdict.
#[derive(Debug, Parser)]
#[command(
    name = "pynish",
    version,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub subcommand: Option<Sub>,

    /// Stop the command after this much real time (e.g. 7s, 1.5h)
    #[arg(short = 'w', long, value_name = "DUR", value_parser = positive_duration, help_heading = "Limits")]
    pub wall_time: Option<Duration>,

    /// Stop the command once its whole tree used this much CPU time, user + system (e.g. 300ms, 1.5h)
    #[arg(short = 'c', long, value_name = "DUR", value_parser = positive_duration, help_heading = "Limits")]
    pub cpu_time: Option<Duration>,

    /// Stop the command once its whole tree holds this much memory (500MB = 500*10^6, 500MiB = 500*2^20 bytes)
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = positive_size, help_heading = "Limits")]
    pub memory: Option<u64>,

    /// What --memory counts: resident memory of the whole tree, or address space per process (RLIMIT_AS)
    #[arg(long, value_name = "KIND", value_enum, default_value_t = MemoryKind::Resident, help_heading = "Limits")]
    pub memory_kind: MemoryKind,

    /// Stop the command once its tree has more than this many processes at once
    #[arg(short = 'p', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Limits")]
    pub processes: Option<u64>,

    /// Time between the first signal and SIGKILL
    #[arg(short = 'g', long, value_name = "DUR", value_parser = parse_duration, default_value = "2s", env = "PYNISH_GRACE", help_heading = "Escalation")]
    pub grace: Duration,

    /// First signal sent to the tree when a limit is reached (name or number)
    #[arg(short = 's', long, value_name = "SIG", value_parser = parse_signal, default_value = "TERM", env = "PYNISH_SIGNAL", help_heading = "Escalation")]
    pub signal: Signal,

    /// Exit with the command's own status even when a limit was reached
    #[arg(long, help_heading = "Escalation")]
    pub preserve_status: bool,

    /// Print the JSON report on one line on stderr after the whole tree is gone
    #[arg(long, help_heading = "Reporting")]
    pub json: bool,

    /// Write the JSON report to FILE (atomically); the directory must exist
    #[arg(long, value_name = "FILE", help_heading = "Reporting")]
    pub report: Option<PathBuf>,

    /// Write the JSON report to this open file descriptor (e.g. --report-fd 3 ... 3>report.json)
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(0..), help_heading = "Reporting")]
    pub report_fd: Option<i32>,

    /// A name for this run, carried into the report
    #[arg(long, value_name = "TEXT", help_heading = "Reporting")]
    pub label: Option<String>,

    /// Print nothing of pynish's own, not even the line that says a limit was reached
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Reporting")]
    pub quiet: bool,

    /// Print one line on stderr per supervision event
    #[arg(short, long, help_heading = "Reporting")]
    pub verbose: bool,

    /// How the tree is contained and measured: a cgroup when one can be made, else /proc and rlimits
    #[arg(long, value_name = "BACKEND", value_enum, default_value_t = BackendChoice::Auto, env = "PYNISH_BACKEND", help_heading = "Backend")]
    pub backend: BackendChoice,

    /// The command to run, and its arguments (write `--` before it)
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Tell which limits this machine and user can enforce, with which backend, and why not the others
    Check {
        /// Print the findings as one JSON object
        #[arg(long)]
        json: bool,
    },
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

fn positive_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("must be greater than zero".into()),
        bytes => Ok(bytes),
    }
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        super::command().debug_assert();
    }
}
