//! The validated run spec: the typed `Settings` the rest of pynish works from, a pure value with no clap types
//! (`cli` builds it at the edge), checked before anything runs.

use crate::limits::Limits;
use crate::record::{Asked, LimitsAsked};
use crate::tree::BackendChoice;
use anyhow::{Context, Result, bail};
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
            crate::report::check_destination(path)?;
        }
        if let Some(path) = &self.timeline {
            check_destination(path, "timeline")?;
            if self.report.as_ref().is_some_and(|report| crate::report::same_file(report, path)) {
                bail!("--report and --timeline name the same file {}", path.display());
            }
        }
        if let Some(fd) = self.report_fd {
            // Refuse a descriptor that is not open now rather than lose the report at the end.
            // SAFETY: F_GETFL only reads the descriptor's status flags; an unopened number yields EBADF.
            let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFL) };
            // A closed 0, 1 or 2 is open now only because Rust's runtime put /dev/null there.
            if flags < 0 || crate::inherit::was_closed(fd) {
                bail!("--report-fd {fd} is not an open file descriptor");
            }
            if flags & nix::libc::O_ACCMODE == nix::libc::O_RDONLY {
                bail!("--report-fd {fd} is open for reading only");
            }
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

/// The timeline file (`--report` has its own rules in `report::destination`) must go to a directory that exists
/// and must not be a directory itself: found out before anything runs, not after.
fn check_destination(path: &std::path::Path, what: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = std::fs::metadata(&dir).with_context(|| format!("{what} directory {} is not usable", dir.display()))?;
    if !meta.is_dir() {
        bail!("{what} directory {} is not a directory", dir.display());
    }
    if path.is_dir() {
        bail!("{what} file {} is a directory", path.display());
    }
    Ok(())
}
