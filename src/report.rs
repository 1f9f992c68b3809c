//! The JSON report (a public contract: see README) and the one-line message, and where they are written.
//!
//! Both are written only after the whole tree is gone, so they never interleave with the command's output.

use crate::exit_code::ExitCode;
use crate::limits::{LimitKind, Limits};
use crate::record::{Asked, Captured, Enforcement, LimitsAsked, Outcome, Status, Whose, seconds as secs};
use crate::signals::Sig;
use crate::verdict::Verdict;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Version of the report's layout, bumped when fields are added. Schema 2 is schema 1 plus fields: no field of
/// schema 1 changed name, type or meaning, and `--schema 1` still writes schema 1 exactly (`schema1`).
pub const SCHEMA: u32 = 2;

/// The JSON report: one object on one line, written once the whole tree is gone. A public contract (README,
/// `man pynish`): fields are added with a new `schema`, never changed or removed; every field added after
/// schema 1 has a serde default, so that a schema-1 line still reads into this type. Rust callers read it back
/// with serde (see the crate's example).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `SCHEMA`: a reader checks it before trusting the rest.
    pub schema: u32,
    /// `--label`, to tell the reports of many jobs apart.
    pub label: Option<String>,
    /// What happened, the one field a script branches on.
    pub verdict: Verdict,
    /// pynish's own exit status.
    pub exit_code: u8,
    /// The command's exit code, when it exited by itself.
    pub command_exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    pub signal: Option<String>,
    /// A terminating signal pynish received and passed on to the tree.
    pub received_signal: Option<String>,
    /// The limits asked for, to compare the usage with.
    pub limits: LimitsAsked,
    /// What the whole tree used.
    pub usage: UsageReport,
    /// What pynish had to do to end the tree.
    pub escalation: EscalationReport,
    /// `proc`, `cgroup1` or `cgroup2`: how the tree was contained and measured.
    pub backend: String,
    /// Which mechanism held each limit, so that a reader knows how exact the verdict is.
    pub enforcement: Enforcement,
    /// The command and its arguments, as text.
    pub command: Vec<String>,
    /// The command's first process, none when it could not be started.
    pub pid: Option<i32>,
    /// Why the command could not be started (verdict `spawn_error`).
    pub error: Option<String>,
    /// When the command was started, RFC 3339 in UTC with microseconds (schema 2): with `hostname`, what a harness
    /// files a run under.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The machine the run was on, as `hostname` prints it (schema 2).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The soft limits the tree reached, in order, each warned of once (schema 2).
    #[serde(default)]
    pub soft: Vec<SoftReport>,
    /// Whose OOM killer killed a member of the tree: `run` (the run's own `--memory`, held by its group),
    /// `outside` (an enclosing group's limit, or the machine's), or none (schema 2).
    #[serde(default)]
    pub oom: Option<Whose>,
    /// Whose process limit refused a fork in the tree: `run` or `outside`, as `oom` (schema 2).
    #[serde(default)]
    pub fork_refused: Option<Whose>,
    /// What `--output` captured, None without it (schema 2).
    #[serde(default)]
    pub output: Option<Captured>,
}

/// A soft limit reached, as the report tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftReport {
    /// `wall_time`, `cpu_time` or `memory`.
    pub limit: LimitKind,
    /// Seconds from the start.
    pub at_s: f64,
    /// The warning sent (`--soft-signal`).
    pub signal: String,
    /// Members that received it.
    pub signalled_processes: usize,
}

/// The tree's usage in the report's units (seconds, bytes), the same units as `limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UsageReport {
    /// From the start until the whole tree was gone.
    pub wall_time_s: f64,
    /// User-mode CPU of every member, ended ones included.
    pub cpu_user_s: f64,
    /// Kernel CPU on the members' behalf.
    pub cpu_system_s: f64,
    /// Their sum, what `--cpu-time` limits: given so that no reader adds rounded halves.
    pub cpu_time_s: f64,
    /// The most memory the tree held at once, as the backend counts it.
    pub peak_memory_bytes: u64,
    /// The most members alive at once.
    pub max_processes: u64,
    /// Bytes the tree read from storage, ended members included; none where the kernel keeps no task I/O
    /// accounting (schema 2).
    #[serde(default)]
    pub io_read_bytes: Option<u64>,
    /// Bytes the tree sent to storage, ended members included; none where unknown (schema 2).
    #[serde(default)]
    pub io_write_bytes: Option<u64>,
}

/// What pynish sent to end the tree, and when: shows whether the command used its grace to clean up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EscalationReport {
    /// The first signal sent to every member, e.g. `SIGTERM`; none when the command ended by itself.
    pub first_signal: Option<String>,
    /// Seconds from the start.
    pub first_signal_at_s: Option<f64>,
    /// Members that received it.
    pub signalled_processes: usize,
    /// Whether the grace ran out (or was skipped) and SIGKILL had to follow.
    pub sigkill_sent: bool,
    /// Seconds from the start.
    pub sigkill_at_s: Option<f64>,
    /// Members that received SIGKILL.
    pub killed_processes: usize,
}

impl Report {
    /// Renders the report from what the run was asked and what it produced; `enforcement` comes from the
    /// backend, which the record does not know.
    pub fn from_outcome(
        asked: &Asked,
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
            label: asked.label.clone(),
            verdict,
            exit_code: code.into(),
            command_exit_code: match outcome.facts.status {
                Some(Status::Exited(code)) => Some(code),
                _ => None,
            },
            signal: match outcome.facts.status {
                Some(Status::Signaled(signal)) => Some(signal.name().into_owned()),
                _ => None,
            },
            received_signal: outcome.facts.received.map(|s| s.name().into_owned()),
            limits: asked.limits.clone(),
            usage: UsageReport {
                wall_time_s: secs(outcome.wall),
                cpu_user_s: secs(usage.cpu_user),
                cpu_system_s: secs(usage.cpu_system),
                cpu_time_s: secs(usage.cpu_user + usage.cpu_system),
                peak_memory_bytes: usage.peak_memory,
                max_processes: usage.max_processes,
                io_read_bytes: usage.io_read,
                io_write_bytes: usage.io_write,
            },
            escalation: EscalationReport {
                first_signal: esc.first_signal.map(|s| s.name().into_owned()),
                first_signal_at_s: esc.first_signal_at.map(secs),
                signalled_processes: esc.signalled,
                sigkill_sent: esc.sigkill_at.is_some(),
                sigkill_at_s: esc.sigkill_at.map(secs),
                killed_processes: esc.killed,
            },
            backend: backend.to_owned(),
            enforcement,
            command: asked.command.clone(),
            pid: Some(outcome.pid),
            error: None,
            started_at: None,
            hostname: None,
            soft: outcome
                .soft
                .iter()
                .map(|hit| SoftReport {
                    limit: hit.limit,
                    at_s: secs(hit.at),
                    signal: asked.limits.soft_signal.clone().unwrap_or_default(),
                    signalled_processes: hit.signalled,
                })
                .collect(),
            oom: outcome.oom,
            fork_refused: outcome.fork_refused,
            output: None,
        }
    }

    /// The report for a command that could not be started.
    pub fn spawn_error(asked: &Asked, code: ExitCode, backend: &'static str, error: String) -> Report {
        Report {
            schema: SCHEMA,
            label: asked.label.clone(),
            verdict: Verdict::SpawnError,
            exit_code: code.into(),
            command_exit_code: None,
            signal: None,
            received_signal: None,
            limits: asked.limits.clone(),
            usage: UsageReport::default(),
            escalation: EscalationReport::default(),
            backend: backend.to_owned(),
            enforcement: Enforcement::default(),
            command: asked.command.clone(),
            pid: None,
            error: Some(error),
            started_at: None,
            hostname: None,
            soft: Vec::new(),
            oom: None,
            fork_refused: None,
            output: None,
        }
    }

    /// The report with when and where the run started (`Started`).
    pub fn started(self, started: &Started) -> Report {
        Report { started_at: Some(started.at.clone()), hostname: started.hostname.clone(), ..self }
    }

    /// The one line written to every destination, identical in each.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the report holds only plain values")
    }
}

/// When and where a run started, taken once just before the command starts and written to both the timeline's
/// header and the report, so that the two agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// RFC 3339, UTC, microseconds (`2026-12-07T11:04:14.123456Z`).
    pub at: String,
    /// This machine's name; none where the kernel gives none that is text.
    pub hostname: Option<String>,
}

impl Started {
    /// Now, on this machine.
    pub fn now() -> Started {
        Started {
            at: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            hostname: nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok()),
        }
    }
}

/// The one line a limit hit prints without `--json` (`pynish: wall-time limit 7s reached; sent SIGTERM, ...`);
/// `backend` names the mechanism when no signal was sent.
pub fn message(limits: &Limits, grace: Duration, outcome: &Outcome, verdict: Verdict, backend: &str) -> Option<String> {
    let kind = match verdict {
        Verdict::WallTime => LimitKind::WallTime,
        Verdict::CpuTime => LimitKind::CpuTime,
        Verdict::Memory => LimitKind::Memory,
        Verdict::Processes => LimitKind::Processes,
        Verdict::FileSize => LimitKind::FileSize,
        _ => return None,
    };
    let facts = &outcome.facts;
    if facts.limit.is_none() && facts.kernel_limit.is_none() && facts.soft_limit == Some(kind) {
        let signal = limits.soft.signal;
        let (what, shown) = (kind.describe(), limits.show_soft(kind));
        return Some(format!("pynish: soft {what} limit {shown} reached; its warning {signal} ended the command"));
    }
    let mut line = format!("pynish: {} limit {} reached", kind.describe(), limits.show(kind));
    let esc = &outcome.escalation;
    let grace = crate::units::format_duration(grace);
    match (esc.first_signal, esc.sigkill_at.is_some()) {
        (Some(Sig::KILL), _) => line += "; sent SIGKILL",
        (Some(first), true) => line += &format!("; sent {first}, SIGKILL after {grace}"),
        (Some(first), false) => line += &format!("; sent {first}, the command ended within the {grace} grace"),
        (None, true) => line += "; sent SIGKILL",
        (None, false) if kind == LimitKind::FileSize => line += ": the kernel's RLIMIT_FSIZE killed a member (SIGXFSZ)",
        (None, false) if outcome.facts.kernel_limit.is_some() => {
            let rlimit = kind == LimitKind::CpuTime
                || (kind == LimitKind::Memory && limits.memory_kind == crate::limits::MemoryKind::Virtual);
            if rlimit {
                line += " (enforced by the kernel: an rlimit)";
            } else {
                line += &format!(" (enforced by the kernel: the {backend} group's limit)");
            }
        }
        (None, false) => {
            line +=
                &format!(" (seen once the tree had ended, by {}; nothing was signalled)", final_figures(kind, backend));
        }
    }
    Some(line)
}

/// What found `kind` crossed in the final figures with `backend`: the limit was crossed between two samples by
/// a member that has ended since, so no kernel and no signal enforced it.
fn final_figures(kind: LimitKind, backend: &str) -> String {
    match (kind, backend) {
        (LimitKind::Memory, "proc") => {
            "pynish's check of the reaped processes' peak resident memory (getrusage), not by the kernel".into()
        }
        (LimitKind::CpuTime, "proc") => "pynish's count of the reaped processes' CPU time (getrusage)".into(),
        (_, "proc") => "pynish's count of the tree's processes".into(),
        _ => format!("pynish's check of the {backend} group's high-water marks"),
    }
}

/// The one line said on stderr when the kernel enforced a limit outside the run on its tree (an enclosing
/// group's OOM killer or process limit, or the machine's OOM killer): the verdict is then not the run's limit,
/// and the user is pointed at the limit that was.
pub fn outside_message(limits: &Limits, outcome: &Outcome) -> Option<String> {
    let outside = outcome.outside.as_ref()?;
    let own = limits.show(outside.kind);
    let show = |n: u64| match outside.kind {
        LimitKind::Memory => crate::units::format_size(n),
        _ => n.to_string(),
    };
    let place = match (&outside.group, outside.limit) {
        (Some(group), Some(limit)) if outside.kind == LimitKind::Memory => {
            format!("the enclosing cgroup {group} limits memory to {}", show(limit))
        }
        (Some(group), Some(limit)) => format!("the enclosing cgroup {group} allows {} processes", show(limit)),
        (Some(group), None) => format!("the enclosing cgroup {group} reached its limit"),
        (None, _) if outside.kind == LimitKind::Memory && outcome.oom == Some(Whose::Outside) => {
            "no enclosing group's limit was reached: the machine ran out of memory".into()
        }
        (None, _) => "no enclosing group's limit was found".into(),
    };
    let flag = match outside.kind {
        LimitKind::Memory => "--memory",
        _ => "--processes",
    };
    let ours =
        if own.is_empty() { "this run has none".to_string() } else { format!("pynish's {flag} {own} was not reached") };
    let what = match (outside.kind, outcome.facts.status) {
        (LimitKind::Memory, Some(Status::Signaled(Sig::KILL))) => "the command was killed by an OOM killer",
        (LimitKind::Memory, _) => "a member of the tree was killed by an OOM killer",
        _ => "a fork in the tree was refused by a process limit",
    };
    Some(format!("pynish: {what} outside this run ({place}); {ours}"))
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
