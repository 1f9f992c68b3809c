//! The limits a run is held to, validated once from the command line, and the names of the limits.

use clap::ValueEnum;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What the memory limit counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// Resident memory summed over the whole tree
    #[default]
    Resident,
    /// Address space of each process separately (RLIMIT_AS), as pynisher did
    Virtual,
}

/// The limits asked for; `None` means unlimited.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Real time from the start of the command, as GNU timeout counts it.
    pub wall_time: Option<Duration>,
    /// User + system CPU time of the whole tree, ended members included.
    pub cpu_time: Option<Duration>,
    /// Bytes, counted as `memory_kind` says.
    pub memory: Option<u64>,
    /// What `memory` counts.
    pub memory_kind: MemoryKind,
    /// Members alive at once.
    pub processes: Option<u64>,
    /// Soft limits: a warning signal to the tree, once each, before the hard limits end it.
    pub soft: Soft,
    /// Per-process rlimits set before exec and inherited by every member (prlimit's, for the whole tree).
    pub rlimits: Rlimits,
    /// `--cpus`: the CPUs the whole tree may run on, sorted, each once (taskset's, for the whole tree).
    pub cpus: Option<Vec<usize>>,
    /// `--cpu-quota`: CPUs' worth of time per second of wall time, for the whole tree together (a kernel CPU
    /// controller throttles it; the proc backend has none, so it refuses).
    pub cpu_quota: Option<f64>,
}

/// `--soft-wall-time`, `--soft-cpu-time`, `--soft-memory`: when the tree reaches one, every member gets `signal`
/// once, and the run goes on under its hard limits, so that an anytime solver or a trial can write its best result
/// before it is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Soft {
    /// Real time from the start.
    pub wall_time: Option<Duration>,
    /// CPU time of the whole tree, ended members included, counted as `--cpu-time` counts it.
    pub cpu_time: Option<Duration>,
    /// Bytes of the tree's memory, counted as `--memory` (resident) counts it.
    pub memory: Option<u64>,
    /// `--soft-signal`: SIGURG by default, whose default action is to ignore it, so that a command that does not
    /// listen for the warning is never ended by it (Go's runtime chose SIGURG for its own preemption signal for
    /// the same reason).
    pub signal: crate::signals::Sig,
}

impl Default for Soft {
    fn default() -> Soft {
        Soft { wall_time: None, cpu_time: None, memory: None, signal: crate::signals::Sig::URG }
    }
}

impl Soft {
    /// The soft limits asked, in the order they are checked.
    pub fn any(&self) -> bool {
        self.wall_time.is_some() || self.cpu_time.is_some() || self.memory.is_some()
    }
}

/// `--open-files`, `--file-size`, `--stack`, `--core-size`: the kernel holds each per process; pynish sets them in
/// the command before exec, so every descendant inherits them, and names a member killed by SIGXFSZ a limit hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rlimits {
    /// RLIMIT_NOFILE: descriptors open at once per process.
    pub open_files: Option<u64>,
    /// RLIMIT_FSIZE: bytes a process may write to one file (SIGXFSZ beyond).
    pub file_size: Option<u64>,
    /// RLIMIT_STACK: bytes of each process's main-thread stack.
    pub stack: Option<u64>,
    /// RLIMIT_CORE: bytes of a core dump; 0 forbids them.
    pub core_size: Option<u64>,
}

impl Rlimits {
    /// Each asked rlimit with its resource and flag, for setting and for checking against the caller's hard limit.
    pub fn asked(&self) -> Vec<(Resource, &'static str, u64)> {
        [
            (Resource::RLIMIT_NOFILE, "--open-files", self.open_files),
            (Resource::RLIMIT_FSIZE, "--file-size", self.file_size),
            (Resource::RLIMIT_STACK, "--stack", self.stack),
            (Resource::RLIMIT_CORE, "--core-size", self.core_size),
        ]
        .into_iter()
        .filter_map(|(resource, flag, value)| value.map(|value| (resource, flag, value)))
        .collect()
    }

    /// Bad input: an rlimit above the hard limit pynish inherited that this process may not raise. Refused
    /// rather than capped, so that a run never holds a limit other than the one it reports.
    pub fn check(&self) -> Result<(), String> {
        for (resource, flag, value) in self.asked() {
            let Ok((soft, hard)) = getrlimit(resource) else { continue };
            if value <= hard {
                continue;
            }
            // Raising a hard limit takes CAP_SYS_RESOURCE (and RLIMIT_NOFILE stops at fs.nr_open even then):
            // tried on pynish itself and undone at once, so that the command is never started to fail at exec.
            if let Err(errno) = setrlimit(resource, soft, value) {
                return Err(format!(
                    "{flag} {value} is above the hard limit {hard} that pynish inherited (ulimit -H), and this \
                     process may not raise it ({errno})"
                ));
            }
            let _ = setrlimit(resource, soft, hard);
        }
        Ok(())
    }
}

/// Bad input: a `--cpus` CPU that is offline or outside pynish's own affinity (a CPU the kernel would refuse, or
/// one a batch system's cpuset keeps from the job), named with the CPUs that are allowed.
pub fn check_cpus(cpus: &[usize]) -> anyhow::Result<()> {
    let allowed = allowed_cpus()?;
    if let Some(cpu) = cpus.iter().find(|cpu| !allowed.contains(cpu)) {
        anyhow::bail!(
            "--cpus: CPU {cpu} is not online or not allowed to pynish (allowed here: {})",
            crate::units::format_cpu_list(&allowed)
        );
    }
    Ok(())
}

/// The CPUs this process may run on: its affinity mask, online CPUs only.
pub fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    use nix::libc;
    // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity writes at most the size we pass into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pid 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } < 0 {
        anyhow::bail!("cannot read pynish's CPU affinity: {}", std::io::Error::last_os_error());
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok();
    let online = online.and_then(|text| crate::units::parse_cpu_list(text.trim()).ok());
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads bit `cpu` of the set, below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .filter(|cpu| online.as_ref().is_none_or(|online| online.contains(cpu)))
        .collect())
}

/// In the grace period a tree may reach this multiple of its process limit before it is killed at once. Here,
/// below both, because the monitor enforces it and the proc backend sizes its census by it.
pub const GRACE_PROCESS_SLACK: u64 = 2;

/// One of the four limits; the verdict names the first one crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `--wall-time`.
    WallTime,
    /// `--cpu-time`.
    CpuTime,
    /// `--memory`.
    Memory,
    /// `--processes`.
    Processes,
    /// `--file-size` (RLIMIT_FSIZE): a member was killed by SIGXFSZ.
    FileSize,
}

impl LimitKind {
    /// How the limit is named in messages (`wall-time limit 7s reached`).
    pub fn describe(self) -> &'static str {
        match self {
            LimitKind::WallTime => "wall-time",
            LimitKind::CpuTime => "CPU-time",
            LimitKind::Memory => "memory",
            LimitKind::Processes => "process",
            LimitKind::FileSize => "file-size",
        }
    }
}

impl Limits {
    /// The limit as the user would write it, for messages.
    pub fn show(&self, kind: LimitKind) -> String {
        use crate::units::format_duration;
        match kind {
            LimitKind::WallTime => self.wall_time.map(format_duration).unwrap_or_default(),
            LimitKind::CpuTime => self.cpu_time.map(format_duration).unwrap_or_default(),
            LimitKind::Memory => self.memory.map(crate::units::format_size).unwrap_or_default(),
            LimitKind::Processes => self.processes.map(|n| n.to_string()).unwrap_or_default(),
            LimitKind::FileSize => self.rlimits.file_size.map(crate::units::format_size).unwrap_or_default(),
        }
    }

    /// A soft limit as the user would write it, for messages (empty for a kind that has no soft limit).
    pub fn show_soft(&self, kind: LimitKind) -> String {
        use crate::units::format_duration;
        match kind {
            LimitKind::WallTime => self.soft.wall_time.map(format_duration).unwrap_or_default(),
            LimitKind::CpuTime => self.soft.cpu_time.map(format_duration).unwrap_or_default(),
            LimitKind::Memory => self.soft.memory.map(crate::units::format_size).unwrap_or_default(),
            _ => String::new(),
        }
    }
}

/// `(soft, hard)` capped at the hard limit pynish inherited for `resource`, which its children inherit too.
///
/// Raising a hard limit takes CAP_SYS_RESOURCE: without the cap, a run asking for more than the caller's hard
/// RLIMIT_CPU (a nested Python call with a looser `cpu_time`, a job under a batch system's limit) would not start
/// at all ("Operation not permitted"). The inherited limit holds the child anyway, and pynish's own accounting of
/// the whole tree enforces the limit asked; the kernel's rlimit is only its backstop.
pub fn within_inherited(resource: Resource, soft: u64, hard: u64) -> (u64, u64) {
    match getrlimit(resource) {
        Ok((_, inherited)) => (soft.min(inherited), hard.min(inherited)),
        Err(_) => (soft, hard),
    }
}
