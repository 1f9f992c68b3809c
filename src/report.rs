//! The JSON report (a public contract: see README) and the one-line message, and where they are written.
//!
//! Both are written only after the whole tree is gone, so they never interleave with the command's output.

use crate::exit_code::ExitCode;
use crate::limits::{LimitKind, Limits, MemoryKind};
use crate::monitor::Outcome;
use crate::settings::Settings;
use crate::verdict::{Status, Verdict};
use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use serde::Serialize;
use std::time::Duration;

/// Version of the report's layout; bumped when a field changes meaning or goes away.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub label: Option<String>,
    pub verdict: Verdict,
    /// pynish's own exit status.
    pub exit_code: u8,
    /// The command's exit code, when it exited by itself.
    pub command_exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    pub signal: Option<&'static str>,
    /// A terminating signal pynish received and passed on to the tree.
    pub received_signal: Option<&'static str>,
    pub limits: LimitsReport,
    pub usage: UsageReport,
    pub escalation: EscalationReport,
    pub backend: &'static str,
    pub enforcement: Enforcement,
    pub command: Vec<String>,
    pub pid: Option<i32>,
    /// Why the command could not be started (verdict `spawn_error`).
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LimitsReport {
    pub wall_time_s: Option<f64>,
    pub cpu_time_s: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_kind: MemoryKind,
    pub processes: Option<u64>,
    pub grace_s: f64,
    pub signal: &'static str,
}

#[derive(Debug, Serialize, Default)]
pub struct UsageReport {
    pub wall_time_s: f64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub cpu_time_s: f64,
    pub peak_memory_bytes: u64,
    pub max_processes: u64,
}

#[derive(Debug, Serialize, Default)]
pub struct EscalationReport {
    pub first_signal: Option<&'static str>,
    pub first_signal_at_s: Option<f64>,
    pub signalled_processes: usize,
    pub sigkill_sent: bool,
    pub sigkill_at_s: Option<f64>,
    pub killed_processes: usize,
}

#[derive(Debug, Serialize, Default)]
pub struct Enforcement {
    pub wall_time: Option<&'static str>,
    pub cpu_time: Option<&'static str>,
    pub memory: Option<&'static str>,
    pub processes: Option<&'static str>,
}

fn secs(d: Duration) -> f64 {
    // Microseconds are as precise as any counter behind them; more digits would only be noise.
    (d.as_secs_f64() * 1e6).round() / 1e6
}

impl LimitsReport {
    pub fn new(settings: &Settings) -> LimitsReport {
        let l: &Limits = &settings.limits;
        LimitsReport {
            wall_time_s: l.wall_time.map(secs),
            cpu_time_s: l.cpu_time.map(secs),
            memory_bytes: l.memory,
            memory_kind: l.memory_kind,
            processes: l.processes,
            grace_s: secs(settings.grace),
            signal: settings.signal.as_str(),
        }
    }
}

/// Which mechanism holds each limit that was asked for.
pub fn enforcement(settings: &Settings, backend: &dyn Fn(LimitKind) -> &'static str) -> Enforcement {
    let l = &settings.limits;
    Enforcement {
        wall_time: l.wall_time.map(|_| "timer"),
        cpu_time: l.cpu_time.map(|_| backend(LimitKind::CpuTime)),
        memory: l.memory.map(|_| match l.memory_kind {
            MemoryKind::Resident => backend(LimitKind::Memory),
            MemoryKind::Virtual => "rlimit",
        }),
        processes: l.processes.map(|_| backend(LimitKind::Processes)),
    }
}

pub fn command_strings(settings: &Settings) -> Vec<String> {
    settings.command.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

impl Report {
    pub fn from_outcome(
        settings: &Settings,
        outcome: &Outcome,
        verdict: Verdict,
        code: ExitCode,
        backend: &'static str,
        enforcement: Enforcement,
    ) -> Report {
        let usage = &outcome.usage;
        let esc = &outcome.escalation;
        Report {
            schema: SCHEMA,
            label: settings.label.clone(),
            verdict,
            exit_code: code.into(),
            command_exit_code: match outcome.facts.status {
                Some(Status::Exited(code)) => Some(code),
                _ => None,
            },
            signal: match outcome.facts.status {
                Some(Status::Signaled(signal)) => Some(signal.as_str()),
                _ => None,
            },
            received_signal: outcome.facts.received.map(|s| s.as_str()),
            limits: LimitsReport::new(settings),
            usage: UsageReport {
                wall_time_s: secs(outcome.wall),
                cpu_user_s: secs(usage.cpu_user),
                cpu_system_s: secs(usage.cpu_system),
                cpu_time_s: secs(usage.cpu_user + usage.cpu_system),
                peak_memory_bytes: usage.peak_memory,
                max_processes: usage.max_processes,
            },
            escalation: EscalationReport {
                first_signal: esc.first_signal.map(|s| s.as_str()),
                first_signal_at_s: esc.first_signal_at.map(secs),
                signalled_processes: esc.signalled,
                sigkill_sent: esc.sigkill_at.is_some(),
                sigkill_at_s: esc.sigkill_at.map(secs),
                killed_processes: esc.killed,
            },
            backend,
            enforcement,
            command: command_strings(settings),
            pid: Some(outcome.pid),
            error: None,
        }
    }

    /// The report for a command that could not be started.
    pub fn spawn_error(settings: &Settings, code: ExitCode, backend: &'static str, error: String) -> Report {
        Report {
            schema: SCHEMA,
            label: settings.label.clone(),
            verdict: Verdict::SpawnError,
            exit_code: code.into(),
            command_exit_code: None,
            signal: None,
            received_signal: None,
            limits: LimitsReport::new(settings),
            usage: UsageReport::default(),
            escalation: EscalationReport::default(),
            backend,
            enforcement: Enforcement::default(),
            command: command_strings(settings),
            pid: None,
            error: Some(error),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the report holds only plain values")
    }
}

/// The one line a limit hit prints without `--json` (`pynish: wall-time limit 7s reached; sent SIGTERM, ...`).
pub fn message(settings: &Settings, outcome: &Outcome, verdict: Verdict) -> Option<String> {
    let kind = match verdict {
        Verdict::WallTime => LimitKind::WallTime,
        Verdict::CpuTime => LimitKind::CpuTime,
        Verdict::Memory => LimitKind::Memory,
        Verdict::Processes => LimitKind::Processes,
        _ => return None,
    };
    let mut line = format!("pynish: {} limit {} reached", kind.describe(), settings.limits.show(kind));
    let esc = &outcome.escalation;
    let grace = crate::units::format_duration(settings.grace);
    match (esc.first_signal, esc.sigkill_at.is_some()) {
        (Some(Signal::SIGKILL), _) => line += "; sent SIGKILL",
        (Some(first), true) => line += &format!("; sent {first}, SIGKILL after {grace}"),
        (Some(first), false) => line += &format!("; sent {first}, the command ended within the {grace} grace"),
        (None, true) => line += "; sent SIGKILL",
        (None, false) => line += " (enforced by the kernel)",
    }
    Some(line)
}

/// Writes `json` to `path`: atomically to a regular file, in place to a FIFO or a device (see `destination`).
pub fn write_file(path: &std::path::Path, json: &str) -> Result<()> {
    crate::destination::write_report(path, &format!("{json}\n"))
}

/// Writes `json` to an open descriptor the caller passed (see `destination::write_fd`).
pub fn write_fd(fd: i32, json: &str) -> Result<()> {
    crate::destination::write_fd(fd, &format!("{json}\n"))
        .with_context(|| format!("cannot write the report to fd {fd}"))
}
