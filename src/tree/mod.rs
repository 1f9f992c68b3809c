//! Backends that contain, measure and end the command's process tree, behind one small interface.
//!
//! Every backend relies on the same membership rule set up by `spawn`: pynish is a child subreaper, so every
//! descendant of the command stays a descendant of pynish (orphans are re-parented to it, not to init), and
//! "pynish has no children left" means "the tree is gone". The backends differ in how they measure the tree
//! and who enforces the limits: `proc` samples `/proc` and leaves the kernel only rlimits as a backstop; the
//! cgroup backends let the kernel hold memory and process limits and count CPU exactly for the whole group.

#[cfg(target_os = "linux")]
pub mod cgroup;
#[cfg(target_os = "linux")]
pub mod proc;

use crate::limits::LimitKind;
use crate::signals::Sig;
use anyhow::Result;
use std::os::fd::RawFd;
use std::time::Duration;

/// Sends `signal` to one member, then SIGCONT unless the signal ends it anyway, so that a stopped member runs
/// and can act on it: one pass over the tree instead of a second walk for SIGCONT.
pub fn deliver(pid: i32, signal: Sig, send: impl Fn(i32, Sig) -> bool) -> bool {
    let sent = send(pid, signal);
    if sent && signal != Sig::KILL {
        send(pid, Sig::CONT);
    }
    sent
}

/// Whether `pid` is in process group `group` (which then has had its signal already).
pub fn in_group(pid: i32, group: Option<i32>) -> bool {
    group.is_some_and(|g| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).is_ok_and(|p| p.as_raw() == g))
}

/// One reading of the live tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// CPU time in user mode of the whole tree so far, including members that have ended.
    pub cpu_user: Duration,
    /// CPU time in the kernel on the tree's behalf so far (zero with cgroup v1 unless `Tree::split_cpu` asked
    /// for it). The sum of both is exact; the split is the kernel's own estimate.
    pub cpu_system: Duration,
    /// Memory the tree holds now, as the backend counts it (resident set, or the group's charge).
    pub memory: u64,
    /// Live processes in the tree.
    pub processes: u64,
}

impl Sample {
    /// CPU time (user + system), what the CPU-time limit counts.
    pub fn cpu(&self) -> Duration {
        self.cpu_user + self.cpu_system
    }

    /// A sample whose CPU time is `total` exactly, split like `user`:`system` but with neither part below its
    /// value in `last`: the limit sees the exact total, and each part of the split only grows.
    pub fn split_cpu(total: Duration, user: Duration, system: Duration, last: &Sample) -> (Duration, Duration) {
        let total = total.max(last.cpu());
        let estimate = if user + system > Duration::ZERO {
            Duration::from_nanos((total.as_nanos() * system.as_nanos() / (user + system).as_nanos()) as u64)
        } else {
            Duration::ZERO
        };
        let system = estimate.max(last.cpu_system).min(total.saturating_sub(last.cpu_user));
        (total - system, system)
    }
}

/// What the kernel counted for the whole run, read once the tree is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelUsage {
    pub cpu_user: Option<Duration>,
    pub cpu_system: Option<Duration>,
    pub peak_memory: Option<u64>,
    pub peak_processes: Option<u64>,
}

/// A mechanism that measures and ends the tree.
pub trait Tree {
    /// `proc`, `cgroup1` or `cgroup2`, as in the report.
    fn name(&self) -> &'static str;

    /// Which mechanism holds `limit` with this backend, as in the report's `enforcement`.
    fn enforcement(&self, limit: LimitKind) -> &'static str;

    /// `cpuset` where a cpuset group holds `--cpus` beside the affinity set before exec (so that no member can
    /// widen its own), else None: the affinity alone.
    fn cpus_held_by(&self) -> Option<&'static str> {
        None
    }

    /// Descriptors of `cgroup.procs` files the child writes `0` to before exec, so that it runs every instruction
    /// of the command inside its group.
    fn join_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// The directory of the one group the child is to be born in (`clone3` with `CLONE_INTO_CGROUP`, cgroup v2
    /// only), so that it need not write `join_fds`.
    fn birth_group(&self) -> Option<RawFd> {
        None
    }

    /// Measures the live tree.
    fn sample(&mut self) -> Result<Sample>;

    /// Asks for the user/system split of CPU time in every sample where it costs an extra read (cgroup v1);
    /// elsewhere it comes with what a sample reads anyway.
    fn split_cpu(&mut self) {}

    /// A limit the kernel enforced by itself (an OOM kill in the group, a fork refused by `pids.max`).
    fn kernel_hit(&mut self) -> Option<LimitKind> {
        None
    }

    /// Whether the kernel's OOM killer killed a member of the run's group (or of a group below it), whoever's
    /// limit it was: with no `kernel_hit`, the kill came from outside the run (see `enclosing`).
    fn oom_killed(&mut self) -> bool {
        false
    }

    /// Whether the kernel refused a fork in the run's group, whoever's process limit it was.
    fn fork_refused(&mut self) -> bool {
        false
    }

    /// The live members, listed before a signal that may kill them at once is sent, so that each is counted
    /// although `signal_all`'s own listing, after it, may no longer find it: a cgroup lists no task that has
    /// exited, and a walk of `/proc` can miss a member whose dying parent hands it on to pynish as it goes.
    fn listed_before_killing(&mut self) -> Vec<i32>;

    /// Sends `signal` to every live member of the tree outside process group `signalled_group` (which the caller
    /// has already signalled with one `killpg`, so that no member gets the signal twice), each followed by
    /// SIGCONT (see `deliver`); returns the members that got the signal, by this call or by that `killpg`.
    fn signal_all(&mut self, signal: Sig, signalled_group: Option<i32>) -> Vec<i32>;

    /// Kills every live member with nothing escaping (a cgroup does it atomically); returns the members killed.
    fn kill_all(&mut self) -> Vec<i32> {
        self.signal_all(Sig::KILL, None)
    }

    /// The kernel's own counters for the run, once the tree is gone.
    fn final_usage(&mut self) -> KernelUsage {
        KernelUsage::default()
    }

    /// Removes what the backend created (groups); called once the tree is gone, and again on drop.
    fn cleanup(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Which mechanism contains and measures the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// Why a run's limits need a kernel group, or None when pynish's own timer and counters hold them all.
///
/// Only a resident memory limit and a process limit do: in a group the kernel holds them exactly (no fork, no
/// page past the limit), where the proc backend can only sample and overshoot between two samples. Wall time is
/// pynish's own clock with every backend, and CPU time is exact with proc too (every member is reaped by its parent
/// or by pynish, the subreaper, so `RUSAGE_CHILDREN` plus the live members' CPU clocks miss nothing).
/// `--memory-kind virtual` is RLIMIT_AS with every backend. A CPU quota needs a kernel CPU controller, which only
/// a group has (proc refuses it, see `CPU_QUOTA_NEEDS`).
pub fn group_needed_for(limits: &crate::limits::Limits) -> Option<&'static str> {
    use crate::limits::MemoryKind;
    if limits.cpu_quota.is_some() {
        return Some("--cpu-quota");
    }
    match (limits.memory, limits.memory_kind, limits.processes) {
        (Some(_), MemoryKind::Resident, Some(_)) => Some("--memory and --processes"),
        (Some(_), MemoryKind::Resident, None) => Some("--memory"),
        (_, _, Some(_)) => Some("--processes"),
        _ => None,
    }
}

/// Why a run with `--cpu-quota` cannot use the proc backend, and what would work: a quota that pynish only
/// sampled would overshoot and stop the tree rather than throttle it, so there is none rather than a false one.
pub const CPU_QUOTA_NEEDS: &str = "--cpu-quota needs a kernel CPU controller, which the proc backend has not: use \
     --backend cgroup1 with a writable cpu hierarchy, or cgroup2 with the cpu controller delegated to pynish's group \
     (systemd-run --user --scope -p Delegate=yes, or --delegate); pynish check says which this machine has";

/// Why `auto` takes proc for a run without a memory or process limit (`-v`, `pynish check`).
pub const NO_GROUP_NEEDED: &str = "no memory or process limit: wall and CPU time are exact with proc (pynish's own \
     timer and CPU counters), without the cost of making and joining a cgroup";

/// The backend for this run: the one asked for, or under `auto` proc when no limit needs a kernel group (see
/// `group_needed_for`), else the best one that works here (cgroup v2, else cgroup v1, else proc), with the reason
/// it was chosen (shown by `-v`). A cgroup backend that was asked for and cannot be used here is an error that
/// says why. Any cgroup choice first sweeps the groups an earlier pynish left behind when it was killed (see
/// `cgroup`).
#[cfg(target_os = "linux")]
pub fn select(choice: BackendChoice, limits: &crate::limits::Limits) -> Result<(Box<dyn Tree>, String)> {
    use cgroup::{v1::V1Tree, v2::V2Tree};
    use std::fmt::Write;
    let proc = || -> Box<dyn Tree> { Box::new(proc::ProcTree::new(limits)) };
    match choice {
        BackendChoice::Proc => Ok((proc(), "asked for with --backend proc".into())),
        BackendChoice::Cgroup2 => {
            cgroup::sweep_everywhere();
            let tree = V2Tree::open(limits).map_err(|e| e.context("cannot use --backend cgroup2"))?;
            let why = format!("asked for with --backend cgroup2; {}", tree.placement());
            Ok((Box::new(tree), why))
        }
        BackendChoice::Cgroup1 => {
            cgroup::sweep_everywhere();
            let tree = V1Tree::open(limits).map_err(|e| e.context("cannot use --backend cgroup1"))?;
            let why = format!("asked for with --backend cgroup1; {}", tree.placement());
            Ok((Box::new(tree), why))
        }
        BackendChoice::Auto => {
            let mut why = match (group_needed_for(limits), proc::refusal(limits)) {
                (Some(needed), _) => format!("{needed} asked for: a cgroup lets the kernel hold it exactly; "),
                // A /proc of another pid namespace: what proc would sample there, a group still holds.
                (None, Some(refused)) => format!("proc cannot hold these limits here ({refused}); "),
                (None, None) => {
                    let why = format!("{NO_GROUP_NEEDED}; auto uses a cgroup for --memory or --processes");
                    return Ok((proc(), why));
                }
            };
            cgroup::sweep_everywhere();
            let v2 = match V2Tree::open(limits) {
                Ok(tree) => {
                    let _ = write!(why, "{}", tree.placement());
                    return Ok((Box::new(tree), why));
                }
                Err(e) => e,
            };
            let _ = write!(why, "cgroup v2 not usable: {v2:#}");
            match V1Tree::open(limits) {
                Ok(tree) => {
                    let _ = write!(why, "; {}", tree.placement());
                    Ok((Box::new(tree), why))
                }
                Err(v1) => {
                    let _ = write!(why, "; cgroup v1 not usable: {v1:#}; proc samples it instead");
                    Ok((proc(), why))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Limits, MemoryKind};
    use std::time::Duration;

    #[test]
    fn only_memory_process_and_cpu_quota_limits_need_a_group() {
        let mut limits = Limits::default();
        assert_eq!(group_needed_for(&limits), None);
        limits.wall_time = Some(Duration::from_secs(1));
        limits.cpu_time = Some(Duration::from_secs(1));
        assert_eq!(group_needed_for(&limits), None);
        limits.memory = Some(1 << 30);
        limits.memory_kind = MemoryKind::Virtual;
        assert_eq!(group_needed_for(&limits), None, "RLIMIT_AS needs no group");
        limits.memory_kind = MemoryKind::Resident;
        assert_eq!(group_needed_for(&limits), Some("--memory"));
        limits.processes = Some(10);
        assert_eq!(group_needed_for(&limits), Some("--memory and --processes"));
        limits.memory = None;
        assert_eq!(group_needed_for(&limits), Some("--processes"));
        limits.cpu_quota = Some(0.5);
        assert_eq!(group_needed_for(&limits), Some("--cpu-quota"));
        limits.processes = None;
        assert_eq!(group_needed_for(&limits), Some("--cpu-quota"), "only a kernel controller throttles");
    }
}
