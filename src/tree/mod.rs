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
use anyhow::Result;
use nix::sys::signal::Signal;
use std::os::fd::RawFd;
use std::time::Duration;

/// Sends `signal` to one member, then SIGCONT unless the signal ends it anyway, so that a stopped member runs
/// and can act on it: one pass over the tree instead of a second walk for SIGCONT.
pub fn deliver(pid: i32, signal: Signal, send: impl Fn(i32, Signal) -> bool) -> bool {
    let sent = send(pid, signal);
    if sent && signal != Signal::SIGKILL {
        send(pid, Signal::SIGCONT);
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

    /// Descriptors of `cgroup.procs` files the child writes `0` to before exec, so that it runs every instruction
    /// of the command inside its group.
    fn join_fds(&self) -> Vec<RawFd> {
        Vec::new()
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

    /// The live members, listed before a signal that may kill them at once is sent, so that each is counted
    /// although `signal_all`'s own listing, after it, may no longer find it: a cgroup lists no task that has
    /// exited, and a walk of `/proc` can miss a member whose dying parent hands it on to pynish as it goes.
    fn listed_before_killing(&mut self) -> Vec<i32>;

    /// Sends `signal` to every live member of the tree outside process group `signalled_group` (which the caller
    /// has already signalled with one `killpg`, so that no member gets the signal twice), each followed by
    /// SIGCONT (see `deliver`); returns the members that got the signal, by this call or by that `killpg`.
    fn signal_all(&mut self, signal: Signal, signalled_group: Option<i32>) -> Vec<i32>;

    /// Kills every live member with nothing escaping (a cgroup does it atomically); returns the members killed.
    fn kill_all(&mut self) -> Vec<i32> {
        self.signal_all(Signal::SIGKILL, None)
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

/// The backend for this run: the one asked for, or under `auto` the best one that works here (cgroup v2, else
/// cgroup v1, else proc), with the reason it was chosen (shown by `-v`). A cgroup backend that was asked for and
/// cannot be used here is an error that says why. Any cgroup choice first sweeps the groups an earlier pynish
/// left behind when it was killed (see `cgroup`).
pub fn select(
    choice: crate::settings::BackendChoice,
    limits: &crate::limits::Limits,
) -> Result<(Box<dyn Tree>, String)> {
    use crate::settings::BackendChoice;
    use cgroup::{v1::V1Tree, v2::V2Tree};
    use std::fmt::Write;
    if choice != BackendChoice::Proc {
        cgroup::sweep_everywhere();
    }
    match choice {
        BackendChoice::Proc => {
            Ok((Box::new(proc::ProcTree::new(limits.processes)), "asked for with --backend proc".into()))
        }
        BackendChoice::Cgroup2 => {
            let tree = V2Tree::open(limits).map_err(|e| e.context("cannot use --backend cgroup2"))?;
            let why = format!("asked for with --backend cgroup2; {}", tree.placement());
            Ok((Box::new(tree), why))
        }
        BackendChoice::Cgroup1 => {
            let tree = V1Tree::open(limits).map_err(|e| e.context("cannot use --backend cgroup1"))?;
            let why = format!("asked for with --backend cgroup1; {}", tree.placement());
            Ok((Box::new(tree), why))
        }
        BackendChoice::Auto => {
            let v2 = match V2Tree::open(limits) {
                Ok(tree) => {
                    let why = tree.placement().to_string();
                    return Ok((Box::new(tree), why));
                }
                Err(e) => e,
            };
            let mut why = format!("cgroup v2 not usable: {v2:#}");
            match V1Tree::open(limits) {
                Ok(tree) => {
                    let _ = write!(why, "; {}", tree.placement());
                    Ok((Box::new(tree), why))
                }
                Err(v1) => {
                    let _ = write!(why, "; cgroup v1 not usable: {v1:#}");
                    Ok((Box::new(proc::ProcTree::new(limits.processes)), why))
                }
            }
        }
    }
}
