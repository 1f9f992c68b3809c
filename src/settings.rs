//! Turns the parsed command line into the typed `Settings` the rest of pynish works from.

use crate::cli::Cli;
use crate::limits::Limits;
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Which mechanism contains and measures the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// proc, unless --memory or --processes needs a kernel group: then cgroup v2, else v1, else proc
    Auto,
    /// A cgroup v2 group of its own (needs write access to a delegated group)
    Cgroup2,
    /// cgroup v1 groups in the memory, cpuacct, pids and freezer hierarchies
    Cgroup1,
    /// Sample /proc for the tree, with rlimits as the kernel's backstop
    Proc,
}

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
    pub fn from_cli(cli: Cli) -> Result<Settings> {
        if cli.command.is_empty() {
            bail!("no command given (usage: pynish [OPTIONS] -- COMMAND [ARGS...])");
        }
        if let Some(path) = &cli.report {
            crate::report::check_destination(path)?;
        }
        if let Some(path) = &cli.timeline {
            check_destination(path, "timeline")?;
            if cli.report.as_ref().is_some_and(|report| crate::report::same_file(report, path)) {
                bail!("--report and --timeline name the same file {}", path.display());
            }
        }
        if let Some(fd) = cli.report_fd {
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
        let backend = match (cli.leave_leftovers, cli.backend) {
            (true, BackendChoice::Auto) => BackendChoice::Proc,
            (true, BackendChoice::Cgroup1 | BackendChoice::Cgroup2) => {
                bail!("--leave-leftovers needs the proc backend (a cgroup's members die with its group)")
            }
            (_, backend) => backend,
        };
        Ok(Settings {
            limits: Limits {
                wall_time: cli.wall_time,
                cpu_time: cli.cpu_time,
                memory: cli.memory,
                memory_kind: cli.memory_kind,
                processes: cli.processes,
            },
            grace: cli.grace,
            signal: cli.signal,
            preserve_status: cli.preserve_status,
            leave_leftovers: cli.leave_leftovers,
            json: cli.json,
            report: cli.report,
            report_fd: cli.report_fd,
            timeline: cli.timeline,
            label: cli.label,
            quiet: cli.quiet,
            verbose: cli.verbose,
            backend,
            delegate: cli.delegate,
            command: cli.command,
            adopt: cli.adopt.zip(cli.adopt_fd).map(|(pid, fd)| Adopt { pid, fd }),
            lifeline: cli.lifeline_fd,
        })
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
