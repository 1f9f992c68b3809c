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
    pub json: bool,
    pub report: Option<PathBuf>,
    pub report_fd: Option<i32>,
    pub label: Option<String>,
    pub quiet: bool,
    pub verbose: bool,
    pub backend: BackendChoice,
    pub delegate: bool,
    pub command: Vec<OsString>,
}

impl Settings {
    pub fn from_cli(cli: Cli) -> Result<Settings> {
        if cli.command.is_empty() {
            bail!("no command given (usage: pynish [OPTIONS] -- COMMAND [ARGS...])");
        }
        if let Some(path) = &cli.report {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let meta =
                std::fs::metadata(&dir).with_context(|| format!("report directory {} is not usable", dir.display()))?;
            if !meta.is_dir() {
                bail!("report directory {} is not a directory", dir.display());
            }
            if path.is_dir() {
                bail!("report file {} is a directory", path.display());
            }
        }
        if let Some(fd) = cli.report_fd {
            // Refuse a descriptor that is not open now rather than lose the report at the end.
            // SAFETY: F_GETFL only reads the descriptor's status flags; an unopened number yields EBADF.
            let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFL) };
            if flags < 0 {
                bail!("--report-fd {fd} is not an open file descriptor");
            }
            if flags & nix::libc::O_ACCMODE == nix::libc::O_RDONLY {
                bail!("--report-fd {fd} is open for reading only");
            }
        }
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
            json: cli.json,
            report: cli.report,
            report_fd: cli.report_fd,
            label: cli.label,
            quiet: cli.quiet,
            verbose: cli.verbose,
            backend: cli.backend,
            delegate: cli.delegate,
            command: cli.command,
        })
    }
}
