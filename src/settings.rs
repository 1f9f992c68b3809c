//! The validated run spec: the typed `Settings` the rest of pynish works from, a pure value with no clap types
//! (`cli` builds it at the edge), checked before anything runs.

use crate::destination;
use crate::limits::Limits;
use crate::record::{Asked, LimitsAsked};
use crate::tree::BackendChoice;
use anyhow::{Result, bail};
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a run needs to know, with no clap types.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub grace: Duration,
    pub signal: Signal,
    pub preserve_status: bool,
    /// `--leave-leftovers`: exit when the command's first process ends, leaving the rest running.
    pub leave_leftovers: bool,
    pub json: bool,
    pub report: Option<PathBuf>,
    pub report_fd: Option<i32>,
    pub timeline: Option<PathBuf>,
    pub label: Option<String>,
    pub quiet: bool,
    pub verbose: bool,
    pub backend: BackendChoice,
    pub delegate: bool,
    pub command: Vec<OsString>,
    /// `--adopt PID --adopt-fd FD`: supervise this held child instead of starting `command`.
    pub adopt: Option<Adopt>,
    /// `--lifeline-fd FD`: the read end of a pipe whose closing ends the run (`lifeline`).
    pub lifeline: Option<i32>,
}

/// An existing child to supervise instead of a command to start (`--adopt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopt {
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
                bail!("--report and --timeline name the same file {}", path.display());
            }
        }
        if let Some(fd) = self.report_fd {
            destination::check_fd(fd, "--report-fd")?;
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
