//! The validated run spec: the typed `Settings` the rest of pynish works from, a pure value with no clap types
//! (`cli` builds it at the edge), checked before anything runs.

use crate::destination;
use crate::limits::Limits;
use crate::record::{Asked, LimitsAsked};
use crate::signals::Sig;
pub use crate::tree::BackendChoice;
use anyhow::{Result, bail};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a run needs to know, with no clap types.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The limits the whole tree is held to.
    pub limits: Limits,
    /// `--grace`: from the first signal to SIGKILL, time for the command to clean up.
    pub grace: Duration,
    /// `--signal`: the first signal, the one a command can catch to clean up (standard or real-time).
    pub signal: Sig,
    /// `--preserve-status`: exit as the command did even after a limit, for callers that only read the report.
    pub preserve_status: bool,
    /// `--leave-leftovers`: exit when the command's first process ends, leaving the rest running.
    pub leave_leftovers: bool,
    /// `--json`: the report on stderr, after everything the command printed.
    pub json: bool,
    /// `--report`: the report written atomically to this file (checked before the run).
    pub report: Option<PathBuf>,
    /// `--report-fd`: the report written to this descriptor, open (and checked) before the run.
    pub report_fd: Option<i32>,
    /// `--timeline`: usage over time written to this file while the command runs.
    pub timeline: Option<PathBuf>,
    /// `--schema`: the report's layout, 1 (frozen, for strict readers) or `report::SCHEMA`.
    pub schema: u32,
    /// `--label`: carried into the report, so that a caller running many jobs tells their reports apart.
    pub label: Option<String>,
    /// `--quiet`: nothing of pynish's own on stderr.
    pub quiet: bool,
    /// `--verbose`: one line per supervision event on stderr.
    pub verbose: bool,
    /// `--backend`, with `auto` resolved where a flag decides it (see `Settings::validated`).
    pub backend: BackendChoice,
    /// `--delegate`: re-run in a delegated systemd scope when that gives pynish a cgroup v2 group.
    pub delegate: bool,
    /// The command and its arguments, as given (not necessarily UTF-8).
    pub command: Vec<OsString>,
    /// `--adopt PID --adopt-fd FD`: supervise this held child instead of starting `command`.
    pub adopt: Option<Adopt>,
    /// `--lifeline-fd FD`: the read end of a pipe whose closing ends the run (`lifeline`).
    pub lifeline: Option<i32>,
    /// `--output`: the tree's stdout and stderr go to this file (checked before the run).
    pub output: Option<PathBuf>,
    /// `--output-limit`: the output file keeps at most this many bytes (its first and last half).
    pub output_limit: Option<u64>,
}

/// An existing child to supervise instead of a command to start (`--adopt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopt {
    /// The held child, which must be pynish's own and not waited for.
    pub pid: i32,
    /// Where the release byte goes; closed once the child runs.
    pub fd: i32,
}

impl Settings {
    /// Checks what can be checked before anything runs (a destination that cannot take its file, a descriptor
    /// that is not open, a backend that cannot honour `--leave-leftovers`), so that bad input ends with 125 and
    /// nothing run rather than a lost report at the end; resolves `--backend auto` where a flag decides it.
    pub fn validated(mut self) -> Result<Settings> {
        if self.command.is_empty() {
            bail!("no command given (usage: pynish [OPTIONS] -- COMMAND [ARGS...])");
        }
        if let Some(path) = &self.report {
            destination::check(path, "report")?;
        }
        if let Some(path) = &self.timeline {
            destination::check(path, "timeline")?;
            if self.report.as_ref().is_some_and(|report| destination::same_file(report, path)) {
                bail!("--report and --timeline name the same file {}", destination::shown(path));
            }
        }
        if let Some(path) = &self.output {
            destination::check(path, "output")?;
            for (flag, other) in [("--report", &self.report), ("--timeline", &self.timeline)] {
                if other.as_ref().is_some_and(|other| destination::same_file(other, path)) {
                    bail!("{flag} and --output name the same file {}", destination::shown(path));
                }
            }
        } else if self.output_limit.is_some() {
            bail!("--output-limit needs --output");
        }
        if let Some(fd) = self.report_fd {
            destination::check_fd(fd, "--report-fd")?;
        }
        self.limits.rlimits.check().map_err(anyhow::Error::msg)?;
        let (l, soft) = (&self.limits, &self.limits.soft);
        let units = crate::units::format_duration;
        if let (Some(soft), Some(hard)) = (soft.wall_time, l.wall_time)
            && soft >= hard
        {
            bail!("--soft-wall-time {} must be below --wall-time {}", units(soft), units(hard));
        }
        if let (Some(soft), Some(hard)) = (soft.cpu_time, l.cpu_time)
            && soft >= hard
        {
            bail!("--soft-cpu-time {} must be below --cpu-time {}", units(soft), units(hard));
        }
        if let (Some(soft), Some(hard)) = (soft.memory, l.memory)
            && soft >= hard
        {
            let size = crate::units::format_size;
            bail!("--soft-memory {} must be below --memory {}", size(soft), size(hard));
        }
        if soft.memory.is_some() && l.memory_kind == crate::limits::MemoryKind::Virtual {
            bail!("--soft-memory counts resident memory; it cannot go with --memory-kind virtual");
        }
        // Neither can be handled: SIGKILL would end the tree at the soft limit (that is a hard limit: --wall-time,
        // --cpu-time, --memory), and SIGSTOP is undone by the SIGCONT every signal to the tree is followed by.
        if [Sig::KILL, Sig::STOP].contains(&soft.signal) {
            bail!(
                "--soft-signal {} cannot be handled, so it cannot warn: name one the command traps (USR1, TERM, ...)",
                soft.signal
            );
        }
        if let Some(cpus) = &l.cpus {
            crate::limits::check_cpus(cpus)?;
        }
        self.backend = match (self.leave_leftovers, self.backend) {
            (true, BackendChoice::Auto) => BackendChoice::Proc,
            (true, BackendChoice::Cgroup1 | BackendChoice::Cgroup2) => {
                bail!("--leave-leftovers needs the proc backend (a cgroup's members die with its group)")
            }
            (_, backend) => backend,
        };
        Ok(self)
    }

    /// What the run is asked, as the record (and so the report and the timeline's header) carries it.
    pub fn asked(&self) -> Asked {
        Asked {
            label: self.label.clone(),
            command: self.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            limits: LimitsAsked::new(&self.limits, self.grace, self.signal),
        }
    }
}
