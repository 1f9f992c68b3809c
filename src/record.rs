//! The run's record: what a run was asked, and what it produced, as plain data.
//!
//! The monitor fills it; `verdict` decides from its facts; `report` renders schema 1 from it, and `timeline` its
//! header and `end` line. It stands below all of them and imports none of them (only the leaves `limits` and `signals`), so
//! that a change to the report's layout, or a new output, never reaches into the watch loop, and the loop never
//! learns an output's types. Every type here is `Serialize` and `Deserialize`: a Rust caller can keep a record,
//! send it elsewhere and read it back, without pynish's own machinery.

use crate::limits::{LimitKind, Limits, MemoryKind};
use crate::signals::Sig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Seconds as the report writes them: microseconds are as precise as any counter behind them, more digits would
/// only be noise.
pub fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// What the run was asked to do, known before it starts; the report and the timeline's header both carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asked {
    /// `--label`: a caller's name for the run, carried through unchanged.
    pub label: Option<String>,
    /// The command and its arguments, as text (lossy where they were not UTF-8): for people and scripts to read.
    pub command: Vec<String>,
    /// The limits and the escalation asked for.
    pub limits: LimitsAsked,
}

/// The limits asked for, in schema 1's units (seconds, bytes, signal names), so that a script compares them with
/// the usage without converting; `None`: unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsAsked {
    /// `--wall-time`, in seconds.
    pub wall_time_s: Option<f64>,
    /// `--cpu-time`, in seconds.
    pub cpu_time_s: Option<f64>,
    /// `--memory`, in bytes.
    pub memory_bytes: Option<u64>,
    /// What `memory_bytes` counts.
    pub memory_kind: MemoryKind,
    /// `--processes`.
    pub processes: Option<u64>,
    /// `--grace`, in seconds.
    pub grace_s: f64,
    /// `--signal`, e.g. `SIGTERM` or `SIGRTMIN+6`.
    pub signal: String,
    /// `--open-files` (schema 2).
    #[serde(default)]
    pub open_files: Option<u64>,
    /// `--file-size`, in bytes (schema 2).
    #[serde(default)]
    pub file_size_bytes: Option<u64>,
    /// `--stack`, in bytes (schema 2).
    #[serde(default)]
    pub stack_bytes: Option<u64>,
    /// `--core-size`, in bytes (schema 2).
    #[serde(default)]
    pub core_size_bytes: Option<u64>,
    /// `--soft-wall-time`, in seconds (schema 2).
    #[serde(default)]
    pub soft_wall_time_s: Option<f64>,
    /// `--soft-cpu-time`, in seconds (schema 2).
    #[serde(default)]
    pub soft_cpu_time_s: Option<f64>,
    /// `--soft-memory`, in bytes (schema 2).
    #[serde(default)]
    pub soft_memory_bytes: Option<u64>,
    /// `--soft-signal`, when a soft limit was asked (schema 2).
    #[serde(default)]
    pub soft_signal: Option<String>,
    /// `--cpus`, as taskset prints a list (`0,2-3`) (schema 2).
    #[serde(default)]
    pub cpus: Option<String>,
    /// `--cpu-quota`, in CPUs (schema 2).
    #[serde(default)]
    pub cpu_quota: Option<f64>,
}

impl LimitsAsked {
    /// The limits as the run holds them, in schema 1's units.
    pub fn new(limits: &Limits, grace: Duration, signal: Sig) -> LimitsAsked {
        LimitsAsked {
            wall_time_s: limits.wall_time.map(seconds),
            cpu_time_s: limits.cpu_time.map(seconds),
            memory_bytes: limits.memory,
            memory_kind: limits.memory_kind,
            processes: limits.processes,
            grace_s: seconds(grace),
            signal: signal.name().into_owned(),
            open_files: limits.rlimits.open_files,
            file_size_bytes: limits.rlimits.file_size,
            stack_bytes: limits.rlimits.stack,
            core_size_bytes: limits.rlimits.core_size,
            soft_wall_time_s: limits.soft.wall_time.map(seconds),
            soft_cpu_time_s: limits.soft.cpu_time.map(seconds),
            soft_memory_bytes: limits.soft.memory,
            soft_signal: limits.soft.any().then(|| limits.soft.signal.name().into_owned()),
            cpus: limits.cpus.as_deref().map(crate::units::format_cpu_list),
            cpu_quota: limits.cpu_quota,
        }
    }
}

/// Which mechanism holds each limit asked for (`timer`, `proc`, `cgroup1`, `cgroup2`, `rlimit`), so that a reader
/// knows how exact each verdict can be; `None`: the limit was not asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// Always pynish's own timer.
    pub wall_time: Option<String>,
    /// The backend's CPU counters, or `rlimit` when RLIMIT_CPU ended the command first.
    pub cpu_time: Option<String>,
    /// The backend, or `rlimit` for `--memory-kind virtual`.
    pub memory: Option<String>,
    /// The backend.
    pub processes: Option<String>,
    /// `rlimit` (RLIMIT_FSIZE) when `--file-size` was asked (schema 2).
    #[serde(default)]
    pub file_size: Option<String>,
    /// `--cpus` (schema 2): `affinity` (sched_setaffinity before exec, inherited; a member may widen its own), or
    /// `cpuset` where a cpuset group holds the CPUs too (cgroup1), so that none can.
    #[serde(default)]
    pub cpus: Option<String>,
    /// `--cpu-quota` (schema 2): the backend whose CPU controller throttles the tree (`cgroup1`, `cgroup2`).
    #[serde(default)]
    pub cpu_quota: Option<String>,
}

impl Enforcement {
    /// The mechanisms for `limits`, with `backend` naming what the chosen backend holds each limit with (a CPU
    /// quota is held by the backend's CPU controller, as CPU time is counted by it).
    pub fn new(limits: &Limits, backend: &dyn Fn(LimitKind) -> &'static str) -> Enforcement {
        let l = limits;
        let name = |s: &'static str| s.to_owned();
        Enforcement {
            wall_time: l.wall_time.map(|_| name("timer")),
            cpu_time: l.cpu_time.map(|_| name(backend(LimitKind::CpuTime))),
            memory: l.memory.map(|_| {
                name(match l.memory_kind {
                    MemoryKind::Resident => backend(LimitKind::Memory),
                    MemoryKind::Virtual => "rlimit",
                })
            }),
            processes: l.processes.map(|_| name(backend(LimitKind::Processes))),
            file_size: l.rlimits.file_size.map(|_| name("rlimit")),
            cpus: l.cpus.as_ref().map(|_| name("affinity")),
            cpu_quota: l.cpu_quota.map(|_| name(backend(LimitKind::CpuTime))),
        }
    }
}

/// How the command's first process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It exited by itself with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled(#[serde(with = "signal_name")] Sig),
}

/// Everything the verdict depends on, gathered by the monitor; `verdict::decide` reads nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The first limit pynish saw crossed (and acted on).
    pub limit: Option<LimitKind>,
    /// A limit the kernel enforced by itself (cgroup OOM kill, refused fork, SIGXCPU from RLIMIT_CPU).
    pub kernel_limit: Option<LimitKind>,
    /// A terminating signal pynish itself received and passed on to the tree.
    #[serde(with = "optional_signal_name")]
    pub received: Option<Sig>,
    /// How the command ended.
    pub status: Option<Status>,
    /// `--preserve-status`: the command's own status is the exit status even after a limit.
    pub preserve_status: bool,
    /// The soft limit whose warning signal ended the command's first process (it did not handle it): the
    /// verdict is that limit's kind, as BenchExec's cputime-soft.
    pub soft_limit: Option<LimitKind>,
}

/// A soft limit the tree reached: its warning went to every member once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftHit {
    /// Which one.
    pub limit: LimitKind,
    /// When, since the start.
    pub at: Duration,
    /// Members that received the warning.
    pub signalled: usize,
}

/// What escalation did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// The first signal sent to the tree (SIGKILL itself with `--signal KILL` or `--grace 0`).
    #[serde(with = "optional_signal_name")]
    pub first_signal: Option<Sig>,
    /// When, since the start.
    pub first_signal_at: Option<Duration>,
    /// Members that received the first signal.
    pub signalled: usize,
    /// When SIGKILL went out, since the start, if it had to.
    pub sigkill_at: Option<Duration>,
    /// Members that received SIGKILL.
    pub killed: usize,
}

/// The tree's usage over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time in user mode of every member, ended ones included.
    pub cpu_user: Duration,
    /// CPU time in the kernel on the members' behalf.
    pub cpu_system: Duration,
    /// The most memory the tree held at once, as the backend counts it.
    pub peak_memory: u64,
    /// The most members alive at once.
    pub max_processes: u64,
    /// Bytes the members read from storage, ended members included (task I/O accounting); None where the
    /// kernel does not count it.
    #[serde(default)]
    pub io_read: Option<u64>,
    /// Bytes the members sent to storage (dirtied in the page cache or written directly), less what was
    /// truncated before it was written back; None where the kernel does not count it.
    #[serde(default)]
    pub io_write: Option<u64>,
}

/// Whose limit it was when the kernel killed a member (an OOM kill) or refused a fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Whose {
    /// The run's own limit (`--memory`, `--processes`) held by its own group.
    Run,
    /// A limit outside the run: an enclosing group's, or the machine's.
    Outside,
}

/// A limit outside the run that the kernel enforced on the run's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideLimit {
    /// Memory (an OOM kill) or processes (a refused fork).
    pub kind: LimitKind,
    /// The enclosing group's path in its hierarchy (`/slurm/job7`); None: the machine, or not known.
    pub group: Option<String>,
    /// That group's limit (bytes or processes), where readable.
    pub limit: Option<u64>,
}

/// What `--output` captured of the tree's stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// FILE, as given (lossy where it was not UTF-8).
    pub file: String,
    /// Bytes of the tree's output in FILE (the marker line not counted).
    pub bytes_written: u64,
    /// Bytes of the tree's output not in FILE: the middle, dropped by `--output-limit`, and any a failed write
    /// lost. `bytes_written + bytes_dropped` is all the tree wrote.
    pub bytes_dropped: u64,
    /// `--output-limit`, in bytes; None: unlimited.
    pub limit_bytes: Option<u64>,
}

/// Everything the run produced, once the tree is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// What the verdict is decided from.
    pub facts: Facts,
    /// The command's first process.
    pub pid: i32,
    /// From the start until the tree was gone.
    pub wall: Duration,
    /// The whole tree's usage.
    pub usage: Usage,
    /// What escalation did.
    pub escalation: Escalation,
    /// The soft limits reached, in order.
    pub soft: Vec<SoftHit>,
    /// Whose OOM killer killed a member, if one did.
    #[serde(default)]
    pub oom: Option<Whose>,
    /// Whose process limit refused a fork, if one did.
    #[serde(default)]
    pub fork_refused: Option<Whose>,
    /// The outside limit behind `oom` or `fork_refused` being `outside`.
    #[serde(default)]
    pub outside: Option<OutsideLimit>,
}

/// A signal as its name (`SIGTERM`, `SIGRTMIN+6`), the form a person and the report read, rather than its
/// number, which differs between architectures (and, for a real-time one, between C libraries).
mod signal_name {
    use crate::signals::Sig;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(signal: &Sig, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_str(&signal.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Sig, D::Error> {
        let name = String::deserialize(input)?;
        name.parse().map_err(|_| D::Error::custom(format!("unknown signal {name}")))
    }
}

/// `signal_name` for an optional signal.
mod optional_signal_name {
    use crate::signals::Sig;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(signal: &Option<Sig>, out: S) -> Result<S::Ok, S::Error> {
        match signal {
            Some(signal) => out.serialize_some(&signal.name()),
            None => out.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<Sig>, D::Error> {
        let name = Option::<String>::deserialize(input)?;
        name.map(|name| name.parse().map_err(|_| D::Error::custom(format!("unknown signal {name}")))).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn an_outcome_reads_back_as_it_was_written() {
        let outcome = Outcome {
            facts: Facts {
                limit: Some(LimitKind::Memory),
                received: Some(Signal::SIGHUP.into()),
                status: Some(Status::Signaled(Sig::KILL)),
                ..Facts::default()
            },
            pid: 42,
            soft: vec![SoftHit { limit: LimitKind::WallTime, at: Duration::from_millis(700), signalled: 2 }],
            wall: Duration::from_millis(1500),
            usage: Usage { cpu_user: Duration::from_millis(3), peak_memory: 1 << 20, ..Usage::default() },
            escalation: Escalation {
                first_signal: Some(Sig::TERM),
                first_signal_at: Some(Duration::from_millis(7)),
                signalled: 2,
                ..Escalation::default()
            },
            oom: Some(Whose::Outside),
            fork_refused: None,
            outside: Some(OutsideLimit { kind: LimitKind::Memory, group: Some("/job".into()), limit: Some(1 << 27) }),
        };
        let json = serde_json::to_string(&outcome).unwrap();
        assert!(json.contains(r#""status":{"signaled":"SIGKILL"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
    }
}
