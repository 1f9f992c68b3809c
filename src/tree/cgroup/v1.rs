//! The cgroup v1 backend: one group per hierarchy (memory, cpuacct, pids, and freezer when mounted; cpu for
//! `--cpu-quota` and cpuset for `--cpus`, only when asked), each a child of pynish's own group in that
//! hierarchy; the child joins them all before exec, through one `cgroup.procs` descriptor per hierarchy.
//!
//! v1 has no rule against processes in inner groups, so the groups simply go below pynish's current ones. The
//! kernel holds `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, so swap does not extend it),
//! `pids.max`, `cpu.cfs_quota_us` and `cpuset.cpus`. v1's OOM killer kills one process, not the group: it shows as `oom_kill` in `memory.oom_control`
//! (kernels before 4.13 lack it; `memory.failcnt` stands in), and the monitor then ends the rest of the tree.
//! CPU is `cpuacct.usage` (nanoseconds of run time); its user/system split comes from `cpuacct.usage_user`/
//! `usage_sys` (else `cpuacct.stat`), scaled to add up to `cpuacct.usage` (in samples, from `cpuacct.usage_all`,
//! read only for `--timeline`). Kill: freeze, SIGKILL every member, thaw, repeated until the group is empty.

use super::{
    Host, Kernel, REMOVE_PATIENCE, create_group, keyed, kill_and_remove, kill_group, read_keyed, read_number, run_name,
    signal_members, write_file,
};
use crate::limits::{LimitKind, Limits, MemoryKind};
use crate::signals::Sig;
use crate::tree::{KernelUsage, Sample, Tree};
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

/// Controllers a run needs: memory and process limits and counts, and exact CPU time.
pub const CONTROLLERS: [&str; 3] = ["memory", "cpuacct", "pids"];

/// A mounted v1 hierarchy and pynish's group in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub controllers: Vec<String>,
    pub current: PathBuf,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// What shows an OOM kill in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OomCounter {
    /// `oom_kill` in `memory.oom_control` (4.13+).
    OomKill,
    /// `memory.failcnt`: the limit was reached (also when reclaim then succeeded).
    Failcnt,
}

pub struct V1Tree {
    host: Box<dyn Host>,
    /// Every group made, and the descriptor of its `cgroup.procs` for the child.
    groups: Vec<(PathBuf, Option<File>)>,
    /// The lock on each group, held until the groups are gone (see `super::claim_stale`).
    locks: Vec<File>,
    memory: PathBuf,
    cpuacct: PathBuf,
    pids: PathBuf,
    freezer: Option<PathBuf>,
    /// The group in the cpu hierarchy, made only for `--cpu-quota`.
    cpu: Option<PathBuf>,
    /// The group in the cpuset hierarchy, made only for `--cpus` where that hierarchy is writable.
    cpuset: Option<PathBuf>,
    memory_limited: bool,
    processes_limited: bool,
    oom_counter: OomCounter,
    ooms_before: u64,
    refused_forks_before: u64,
    /// `memory.failcnt` plus `memory.memsw.failcnt` at the start: counted only in the group whose own limit was
    /// reached, unlike `oom_kill`, which counts in the killed process's group whoever's limit it was.
    failcnt_before: u64,
    /// The machine's `oom_kill` count (`/proc/vmstat`) at the start.
    machine_ooms_before: Option<u64>,
    /// A fork was seen refused in a group below the run's (a nested run's), whose counts go when it is removed.
    refused_below: bool,
    /// The previous sample (CPU never goes backwards).
    last: Sample,
    /// Whether samples split CPU time into user and system (a second read).
    split_cpu: bool,
    cleaned: bool,
}

impl V1Tree {
    /// The groups for a run on this machine, found from `/proc/self`.
    pub fn open(limits: &Limits) -> Result<V1Tree> {
        let found = super::Discovery::from_proc()?;
        if found.v1.is_empty() {
            bail!("no cgroup v1 hierarchy is mounted");
        }
        V1Tree::create(Box::new(Kernel), &found.v1, limits)
    }

    /// The groups for a run below pynish's groups `hierarchies`.
    pub fn create(host: Box<dyn Host>, hierarchies: &[Hierarchy], limits: &Limits) -> Result<V1Tree> {
        let uid = host.uid();
        let mut chosen: Vec<&Hierarchy> = Vec::new();
        for controller in CONTROLLERS {
            let Some(hierarchy) = hierarchies.iter().find(|h| h.has(controller)) else {
                bail!("no cgroup v1 hierarchy has the {controller} controller");
            };
            if !host.writable(&hierarchy.current) {
                bail!("cgroup v1 {controller} group {} is not writable by uid {uid}", hierarchy.current.display());
            }
            if !chosen.contains(&hierarchy) {
                chosen.push(hierarchy);
            }
        }
        if limits.cpu_quota.is_some() {
            // Only when asked: a group in one more hierarchy is one more mkdir, attach and rmdir for every run.
            let Some(hierarchy) = hierarchies.iter().find(|h| h.has("cpu")) else {
                bail!("--cpu-quota: no cgroup v1 hierarchy has the cpu controller");
            };
            if !host.writable(&hierarchy.current) {
                bail!("--cpu-quota: cgroup v1 cpu group {} is not writable by uid {uid}", hierarchy.current.display());
            }
            if !chosen.contains(&hierarchy) {
                chosen.push(hierarchy);
            }
        }
        // `--cpus`, in groups this backend makes anyway: a cpuset also stops a member from widening its own
        // affinity. Without a writable cpuset hierarchy the affinity set before exec holds alone.
        let cpuset = hierarchies.iter().find(|h| h.has("cpuset")).filter(|h| host.writable(&h.current));
        if let Some(cpuset) = cpuset.filter(|c| limits.cpus.is_some() && !chosen.contains(c)) {
            chosen.push(cpuset);
        }
        let freezer = hierarchies.iter().find(|h| h.has("freezer")).filter(|h| host.writable(&h.current));
        if let Some(freezer) = freezer.filter(|f| !chosen.contains(f)) {
            chosen.push(freezer);
        }
        let name = run_name(host.as_ref());
        let dir_of = |controller: &str| chosen.iter().find(|h| h.has(controller)).map(|h| h.current.join(&name));
        let mut tree = V1Tree {
            memory: dir_of("memory").unwrap_or_default(),
            cpuacct: dir_of("cpuacct").unwrap_or_default(),
            pids: dir_of("pids").unwrap_or_default(),
            freezer: dir_of("freezer"),
            cpu: limits.cpu_quota.and_then(|_| dir_of("cpu")),
            cpuset: limits.cpus.as_ref().and_then(|_| dir_of("cpuset")),
            host,
            groups: Vec::new(),
            locks: Vec::new(),
            memory_limited: false,
            processes_limited: false,
            oom_counter: OomCounter::OomKill,
            ooms_before: 0,
            refused_forks_before: 0,
            failcnt_before: 0,
            machine_ooms_before: None,
            refused_below: false,
            last: Sample::default(),
            split_cpu: false,
            cleaned: false,
        };
        for hierarchy in chosen {
            let dir = hierarchy.current.join(&name);
            match create_group(tree.host.as_ref(), &dir) {
                Ok(lock) => tree.locks.push(lock),
                Err(e) => {
                    let _ = tree.cleanup();
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
            tree.groups.push((dir, None));
        }
        if let Err(error) = tree.configure(limits) {
            let _ = tree.cleanup();
            return Err(error);
        }
        Ok(tree)
    }

    fn configure(&mut self, limits: &Limits) -> Result<()> {
        let host = self.host.as_ref();
        if let (Some(bytes), MemoryKind::Resident) = (limits.memory, limits.memory_kind) {
            write_file(host, &self.memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // Memory plus swap at the same bound: swapping out does not make room. Absent without swap accounting.
            let memsw = self.memory.join("memory.memsw.limit_in_bytes");
            if host.exists(&memsw) {
                write_file(host, &memsw, &bytes.to_string())?;
            }
            self.memory_limited = true;
        }
        if let Some(n) = limits.processes {
            write_file(host, &self.pids.join("pids.max"), &n.to_string())?;
            self.processes_limited = true;
        }
        if let (Some(cpus), Some(cpuset)) = (&limits.cpus, &self.cpuset) {
            // A new cpuset group has no CPUs and no memory nodes: no task can join it before both are written.
            let parent = cpuset.parent().map(|p| p.join("cpuset.mems")).unwrap_or_default();
            let mems = host.read(&parent).with_context(|| format!("cannot read {}", parent.display()))?;
            write_file(host, &cpuset.join("cpuset.cpus"), &crate::units::format_cpu_list(cpus))?;
            write_file(host, &cpuset.join("cpuset.mems"), mems.trim())?;
        }
        if let (Some(cores), Some(cpu)) = (limits.cpu_quota, &self.cpu) {
            let (quota, period) = super::quota_and_period(cores);
            write_file(host, &cpu.join("cpu.cfs_period_us"), &period.to_string())?;
            write_file(host, &cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        match read_keyed(host, &self.memory.join("memory.oom_control"), "oom_kill") {
            Some(n) => self.ooms_before = n,
            None => {
                self.oom_counter = OomCounter::Failcnt;
                self.ooms_before = read_number(host, &self.memory.join("memory.failcnt")).unwrap_or(0);
            }
        }
        self.refused_forks_before = read_keyed(host, &self.pids.join("pids.events"), "max").unwrap_or(0);
        self.failcnt_before = failcnt(host, &self.memory);
        self.machine_ooms_before = machine_ooms(host);
        for (dir, join) in &mut self.groups {
            let procs = dir.join("cgroup.procs");
            *join = Some(host.open_for_write(&procs).with_context(|| format!("cannot open {}", procs.display()))?);
        }
        Ok(())
    }

    /// Where the groups are, for `-v` and `pynish check`.
    pub fn placement(&self) -> String {
        let dirs: Vec<String> = self.groups.iter().map(|(d, _)| d.display().to_string()).collect();
        format!("groups {}", dirs.join(", "))
    }

    /// The groups made for the run.
    #[cfg(test)]
    pub fn groups(&self) -> Vec<PathBuf> {
        self.groups.iter().map(|(d, _)| d.clone()).collect()
    }

    /// Whether the run's own memory limit was reached and the kernel's OOM killer then killed in its tree. v1
    /// counts `oom_kill` in the killed process's group only: in this group when an enclosing group's limit (or
    /// the machine) killed one of the run's members, and in an inner group (a nested pynish's) when this run's
    /// limit killed a member of it. So the kill alone does not say whose limit it was: `failcnt` does (counted
    /// only where the limit was reached), with a kill seen in this group or, for an inner group's member, on the
    /// machine's count.
    fn own_limit_killed(&self) -> bool {
        let killed_here = self.ooms().is_some_and(|n| n > self.ooms_before);
        if self.oom_counter == OomCounter::Failcnt {
            return killed_here; // kernels before 4.13: failcnt is all there is
        }
        let host = self.host.as_ref();
        let limit_reached = failcnt(host, &self.memory) > self.failcnt_before || at_limit(host, &self.memory);
        let killed_on_machine =
            machine_ooms(self.host.as_ref()).zip(self.machine_ooms_before).is_some_and(|(now, before)| now > before);
        limit_reached && (killed_here || killed_on_machine)
    }

    fn ooms(&self) -> Option<u64> {
        let host = self.host.as_ref();
        match self.oom_counter {
            OomCounter::OomKill => read_keyed(host, &self.memory.join("memory.oom_control"), "oom_kill"),
            OomCounter::Failcnt => read_number(host, &self.memory.join("memory.failcnt")).ok(),
        }
    }
}

/// How often the memory limit of group `dir` itself was reached, with or without swap.
fn failcnt(host: &dyn Host, dir: &std::path::Path) -> u64 {
    let count = |name: &str| read_number(host, &dir.join(name)).unwrap_or(0);
    count("memory.failcnt").saturating_add(count("memory.memsw.failcnt"))
}

/// Whether group `dir`'s charge ever stood at its own limit (`max_usage_in_bytes` at `limit_in_bytes`, with or
/// without swap): a charge only reaches the limit by hitting it. Needed beside `failcnt`: with
/// `memory.memsw.limit_in_bytes` set, Linux 6.18 was seen here to count neither failcnt when the group's limit
/// killed (its memsw counter refuses first, and counts no failure).
pub fn at_limit(host: &dyn Host, dir: &std::path::Path) -> bool {
    let reached =
        |usage: &str, limit: &str| match (read_number(host, &dir.join(usage)), read_number(host, &dir.join(limit))) {
            (Ok(usage), Ok(limit)) => limit < (1 << 62) && usage >= limit,
            _ => false,
        };
    reached("memory.max_usage_in_bytes", "memory.limit_in_bytes")
        || reached("memory.memsw.max_usage_in_bytes", "memory.memsw.limit_in_bytes")
}

/// The counters that show a v1 group's own limit reached: its failure count, and whether it stands at its limit.
pub fn pressure(host: &dyn Host, dir: &std::path::Path) -> (u64, bool) {
    (failcnt(host, dir), at_limit(host, dir))
}

/// The machine's count of OOM kills, every cause.
fn machine_ooms(host: &dyn Host) -> Option<u64> {
    read_keyed(host, std::path::Path::new(super::VMSTAT), "oom_kill")
}

/// The user and system nanoseconds in `cpuacct.usage_all` (`cpu user system`, then one line per CPU), summed.
fn usage_all(text: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines();
    if lines.next()?.split_ascii_whitespace().collect::<Vec<_>>() != ["cpu", "user", "system"] {
        return None;
    }
    lines.try_fold((0u64, 0u64), |(user, system), line| {
        let mut fields = line.split_ascii_whitespace().skip(1).map(|f| f.parse::<u64>().ok());
        Some((user.saturating_add(fields.next()??), system.saturating_add(fields.next()??)))
    })
}

/// Splits `total` in the ratio `user : system`.
fn split(total: Duration, user: u64, system: u64) -> (Duration, Duration) {
    if user + system == 0 {
        return (total, Duration::ZERO);
    }
    let user = Duration::from_nanos((total.as_nanos() * user as u128 / (user as u128 + system as u128)) as u64);
    (user, total.saturating_sub(user))
}

impl Tree for V1Tree {
    fn name(&self) -> &'static str {
        "cgroup1"
    }

    fn enforcement(&self, _limit: LimitKind) -> &'static str {
        "cgroup1"
    }

    fn cpus_held_by(&self) -> Option<&'static str> {
        self.cpuset.as_ref().map(|_| "cpuset")
    }

    fn join_fds(&self) -> Vec<RawFd> {
        self.groups.iter().filter_map(|(_, f)| f.as_ref().map(|f| f.as_raw_fd())).collect()
    }

    fn sample(&mut self) -> Result<Sample> {
        let host = self.host.as_ref();
        // `cpuacct.usage` is the exact run time the limit counts. The user/system split (`cpuacct.usage_all`,
        // 4.7+) is counted in ticks on recent kernels and does not add up to it, so it only apportions the
        // total; and it costs a second read, so it is read only when asked for (`--timeline`).
        let total = Duration::from_nanos(read_number(host, &self.cpuacct.join("cpuacct.usage"))?);
        let split = if self.split_cpu {
            host.read(&self.cpuacct.join("cpuacct.usage_all")).ok().and_then(|t| usage_all(&t))
        } else {
            None
        };
        let (user, system) =
            split.map_or((total, Duration::ZERO), |(u, s)| (Duration::from_nanos(u), Duration::from_nanos(s)));
        let (cpu_user, cpu_system) = Sample::split_cpu(total, user, system, &self.last);
        self.last = Sample {
            cpu_user,
            cpu_system,
            memory: read_number(host, &self.memory.join("memory.usage_in_bytes"))?,
            processes: read_number(host, &self.pids.join("pids.current"))?,
        };
        Ok(self.last)
    }

    fn split_cpu(&mut self) {
        self.split_cpu = true;
    }

    fn kernel_hit(&mut self) -> Option<LimitKind> {
        if self.memory_limited && self.own_limit_killed() {
            return Some(LimitKind::Memory);
        }
        if self.processes_limited {
            // v1 counts a refused fork in the forking task's own group only: a nested run's fork refused by this
            // run's limit counts in the nested run's group, which is seen only while it exists (every sample).
            self.refused_below = self.refused_below || super::refused_below(self.host.as_ref(), &self.pids);
            let refused = self.fork_refused() || self.refused_below;
            if refused && super::process_limit_reached(self.host.as_ref(), &self.pids) {
                return Some(LimitKind::Processes);
            }
        }
        None
    }

    fn fork_refused(&mut self) -> bool {
        read_keyed(self.host.as_ref(), &self.pids.join("pids.events"), "max")
            .is_some_and(|n| n > self.refused_forks_before)
    }

    fn oom_killed(&mut self) -> bool {
        self.oom_counter == OomCounter::OomKill && self.ooms().is_some_and(|n| n > self.ooms_before)
    }

    fn listed_before_killing(&mut self) -> Vec<i32> {
        super::procs_below(self.host.as_ref(), &self.cpuacct)
    }

    fn signal_all(&mut self, signal: Sig, signalled_group: Option<i32>) -> Vec<i32> {
        signal_members(self.host.as_ref(), &self.cpuacct, signal, signalled_group)
    }

    fn kill_all(&mut self) -> Vec<i32> {
        kill_group(self.host.as_ref(), &self.cpuacct, self.freezer.as_deref())
    }

    fn final_usage(&mut self) -> KernelUsage {
        let host = self.host.as_ref();
        let file = |name: &str| self.cpuacct.join(name);
        let total = read_number(host, &file("cpuacct.usage")).ok().map(Duration::from_nanos);
        let parts =
            match (read_number(host, &file("cpuacct.usage_user")), read_number(host, &file("cpuacct.usage_sys"))) {
                (Ok(user), Ok(system)) => Some((user, system)),
                _ => {
                    host.read(&file("cpuacct.stat")).ok().and_then(|s| Some((keyed(&s, "user")?, keyed(&s, "system")?)))
                }
            };
        let (cpu_user, cpu_system) = match (total, parts) {
            (Some(total), Some((user, system))) => {
                let (user, system) = split(total, user, system);
                (Some(user), Some(system))
            }
            _ => (None, None),
        };
        KernelUsage {
            cpu_user,
            cpu_system,
            peak_memory: read_number(host, &self.memory.join("memory.max_usage_in_bytes")).ok(),
            peak_processes: read_number(host, &self.pids.join("pids.peak")).ok(),
        }
    }

    fn cleanup(&mut self) -> Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let host = self.host.as_ref();
        let mut failed = Vec::new();
        for (dir, join) in &mut self.groups {
            *join = None;
            // Empty once the tree is gone; a member that left pynish's tree (only a process ptraced from outside
            // can) must not keep the group alive. Every member is in every group: killing through any one is
            // enough.
            if let Err(e) = kill_and_remove(host, dir, self.freezer.as_deref(), REMOVE_PATIENCE) {
                failed.push(format!("{}: {e}", dir.display()));
            }
        }
        self.locks.clear();
        if !failed.is_empty() {
            bail!("cannot remove {}", failed.join("; "));
        }
        Ok(())
    }
}

impl Drop for V1Tree {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

/// A hierarchy of the fake, named after its first controller.
#[cfg(test)]
fn hierarchy(root: &std::path::Path, controllers: &[&str]) -> Hierarchy {
    Hierarchy { controllers: controllers.iter().map(|c| c.to_string()).collect(), current: root.join(controllers[0]) }
}

#[cfg(test)]
mod tests {
    use super::super::fake::Fake;
    use super::super::procs;
    use super::*;

    fn setup(with_freezer: bool) -> (Fake, Vec<Hierarchy>) {
        let mut names = vec!["memory", "cpuacct", "pids"];
        if with_freezer {
            names.push("freezer");
        }
        let fake = Fake::v1(&names);
        let root = fake.root();
        let hierarchies = names.iter().map(|n| hierarchy(&root, &[n])).collect();
        (fake, hierarchies)
    }

    #[test]
    fn one_group_per_hierarchy_with_limits() {
        let (fake, hierarchies) = setup(true);
        let limits = Limits { memory: Some(100_000_000), processes: Some(50), ..Limits::default() };
        let mut tree = V1Tree::create(fake.boxed(), &hierarchies, &limits).unwrap();
        let groups = tree.groups();
        assert_eq!(groups.len(), 4);
        assert_eq!(tree.join_fds().len(), 4);
        let memory = &groups[0];
        assert_eq!(fake.get(&memory.join("memory.limit_in_bytes")), "100000000");
        assert_eq!(fake.get(&memory.join("memory.memsw.limit_in_bytes")), "100000000");
        assert_eq!(fake.get(&groups[2].join("pids.max")), "50");

        fake.set(&groups[1].join("cpuacct.usage"), "1500000000");
        // Tick-counted on recent kernels: the split does not add up to cpuacct.usage, it only apportions it.
        fake.set(
            &groups[1].join("cpuacct.usage_all"),
            "cpu user system\n0 700000000 20000000\n1 500000000 580000000\n",
        );
        fake.set(&groups[1].join("cpuacct.usage_user"), "1000000000");
        fake.set(&groups[1].join("cpuacct.usage_sys"), "480000000");
        fake.set(&memory.join("memory.usage_in_bytes"), "8192");
        fake.set(&groups[2].join("pids.current"), "2");
        tree.split_cpu(); // else all of it shows as user time, for one read less
        let sample = tree.sample().unwrap();
        let (user, system) = (Duration::from_millis(1000), Duration::from_millis(500));
        assert_eq!(sample, Sample { cpu_user: user, cpu_system: system, memory: 8192, processes: 2 });

        assert_eq!(tree.kernel_hit(), None);
        fake.set(&memory.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
        assert_eq!(tree.kernel_hit(), None, "a kill here without this group's limit reached is not the run's");
        assert!(tree.oom_killed());
        fake.set(&memory.join("memory.failcnt"), "12");
        assert_eq!(tree.kernel_hit(), Some(LimitKind::Memory));

        fake.set(&memory.join("memory.max_usage_in_bytes"), "99999744");
        fake.set(&groups[2].join("pids.peak"), "50");
        let usage = tree.final_usage();
        let (user, system) = (usage.cpu_user.unwrap(), usage.cpu_system.unwrap());
        assert_eq!(user + system, Duration::from_millis(1500), "the split adds up to cpuacct.usage");
        assert!(user > system);
        assert_eq!(usage.peak_memory, Some(99_999_744));
        assert_eq!(usage.peak_processes, Some(50));

        tree.cleanup().unwrap();
        for group in &groups {
            assert!(!fake.exists(group), "{}", group.display());
        }
    }

    #[test]
    fn cpu_and_cpuset_groups_are_made_only_when_asked() {
        let names = ["memory", "cpuacct", "pids", "cpu", "cpuset"];
        let fake = Fake::v1(&names);
        let root = fake.root();
        let hierarchies: Vec<_> = names.iter().map(|n| hierarchy(&root, &[n])).collect();
        let tree = V1Tree::create(fake.boxed(), &hierarchies, &Limits::default()).unwrap();
        assert_eq!(tree.groups().len(), 3, "the default path makes no cpu or cpuset group");
        assert_eq!(tree.cpus_held_by(), None);
        drop(tree);
        let limits = Limits { cpus: Some(vec![1, 2, 3]), cpu_quota: Some(0.5), ..Limits::default() };
        let tree = V1Tree::create(fake.boxed(), &hierarchies, &limits).unwrap();
        let groups = tree.groups();
        assert_eq!((groups.len(), tree.join_fds().len()), (5, 5));
        let (cpu, cpuset) = (&groups[3], &groups[4]);
        assert_eq!(fake.get(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(fake.get(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(fake.get(&cpuset.join("cpuset.cpus")), "1-3");
        assert_eq!(fake.get(&cpuset.join("cpuset.mems")), "0", "the parent's memory nodes, so that tasks may join");
        assert_eq!(tree.cpus_held_by(), Some("cpuset"));
        drop(tree);
        let without_cpu: Vec<_> = hierarchies.iter().filter(|h| !h.has("cpu")).cloned().collect();
        let error = V1Tree::create(fake.boxed(), &without_cpu, &limits).err().unwrap();
        assert!(format!("{error:#}").contains("--cpu-quota: no cgroup v1 hierarchy has the cpu controller"));
        let only_cpus = Limits { cpus: Some(vec![0]), ..Limits::default() };
        let no_cpuset: Vec<_> = hierarchies.iter().filter(|h| !h.has("cpuset")).cloned().collect();
        let tree = V1Tree::create(fake.boxed(), &no_cpuset, &only_cpus).unwrap();
        assert_eq!((tree.groups().len(), tree.cpus_held_by()), (3, None), "the affinity alone, no refusal");
    }

    #[test]
    fn refused_fork_is_a_kernel_hit() {
        let (fake, hierarchies) = setup(false);
        let limits = Limits { processes: Some(5), ..Limits::default() };
        let mut tree = V1Tree::create(fake.boxed(), &hierarchies, &limits).unwrap();
        let pids = tree.groups()[2].clone();
        fake.set(&pids.join("pids.events"), "max 4\n");
        fake.set(&pids.join("pids.peak"), "3");
        assert_eq!(tree.kernel_hit(), None, "refused below this group's limit: an enclosing group's");
        assert!(tree.fork_refused());
        fake.set(&pids.join("pids.peak"), "5");
        assert_eq!(tree.kernel_hit(), Some(LimitKind::Processes));
    }

    #[test]
    fn kill_freezes_kills_every_member_and_thaws() {
        let (fake, hierarchies) = setup(true);
        let mut tree = V1Tree::create(fake.boxed(), &hierarchies, &Limits::default()).unwrap();
        let groups = tree.groups();
        let freezer = groups[3].clone();
        let cpuacct = groups[1].clone();
        for pid in [4_000_100, 4_000_101, 4_000_102] {
            fake.enter(&cpuacct, pid); // the fake keeps a pid in one group only; the backend reads cpuacct's
        }
        assert_eq!(tree.listed_before_killing(), [4_000_100, 4_000_101, 4_000_102]);
        assert_eq!(tree.signal_all(Sig::TERM, None), [4_000_100, 4_000_101, 4_000_102]);
        assert_eq!(tree.kill_all(), [4_000_100, 4_000_101, 4_000_102]);
        assert!(fake.was_frozen(&freezer));
        assert_eq!(fake.get(&freezer.join("freezer.state")), "THAWED");
        assert_eq!(fake.signals(Sig::KILL), vec![4_000_100, 4_000_101, 4_000_102]);
        assert!(procs(&fake, &cpuacct).is_empty());
        tree.cleanup().unwrap();
    }

    #[test]
    fn missing_or_unwritable_hierarchy_is_refused() {
        let (fake, mut hierarchies) = setup(false);
        hierarchies.retain(|h| !h.has("pids"));
        let error = V1Tree::create(fake.boxed(), &hierarchies, &Limits::default()).err().unwrap();
        assert!(format!("{error:#}").contains("no cgroup v1 hierarchy has the pids controller"), "{error:#}");

        let (fake, hierarchies) = setup(false);
        fake.set_uid(1000);
        fake.deny_writes_below(&fake.root().join("memory"));
        let error = V1Tree::create(fake.boxed(), &hierarchies, &Limits::default()).err().unwrap();
        assert!(format!("{error:#}").contains("not writable by uid 1000"), "{error:#}");
        assert!(fake.subdirs(&fake.root().join("cpuacct")).unwrap().is_empty());
    }

    #[test]
    fn comounted_controllers_share_one_group() {
        let fake = Fake::v1(&["memory", "cpuacct", "pids"]);
        let root = fake.root();
        // cpu,cpuacct style: one hierarchy directory serving two controllers.
        let hierarchies = vec![
            Hierarchy { controllers: vec!["memory".into(), "pids".into()], current: root.join("memory") },
            hierarchy(&root, &["cpuacct"]),
        ];
        let tree = V1Tree::create(fake.boxed(), &hierarchies, &Limits::default()).unwrap();
        assert_eq!(tree.groups().len(), 2);
        assert_eq!(tree.join_fds().len(), 2);
    }

    #[test]
    fn failcnt_stands_in_for_oom_kill_on_old_kernels() {
        let (fake, hierarchies) = setup(false);
        fake.without_oom_kill_counter();
        let limits = Limits { memory: Some(1 << 20), ..Limits::default() };
        let mut tree = V1Tree::create(fake.boxed(), &hierarchies, &limits).unwrap();
        assert_eq!(tree.kernel_hit(), None);
        fake.set(&tree.groups()[0].join("memory.failcnt"), "3");
        assert_eq!(tree.kernel_hit(), Some(LimitKind::Memory));
    }
}
