//! The groups that enclose pynish itself (a batch job's step, a service's `MemoryMax`, an outer pynish run), and
//! the machine: whose OOM killer or process limit it was when the run's own limit was not reached.
//!
//! A snapshot of their counters is taken before the command starts; once the tree is gone, the counters that
//! moved name the enclosing limit. Only the kernel's counters are read: v1's `memory.failcnt` (and
//! `memory.memsw.failcnt`) count only in the group whose own limit was reached, and a high-water mark newly at
//! the group's own limit shows it reached too (see `v1::at_limit`); v2's `memory.events.local`
//! `oom` likewise (where it is missing, `memory.events`, which also counts the groups below); the machine's
//! `oom_kill` in `/proc/vmstat` counts every OOM kill, a machine-wide one included. For processes: a group whose
//! `pids.peak` reached its `pids.max` (v1 counts a refused fork in the forking task's group, not where the limit
//! was, so the place is found from the high-water mark, which the kernel raises only for forks it let through).

use super::{Discovery, Host, Kernel, Membership, VMSTAT, parse_proc_cgroup, read_keyed, read_number};
use std::path::{Path, PathBuf};

/// Which limit an enclosing group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One enclosing group's memory counter at the start.
#[derive(Debug, Clone)]
struct Group {
    dir: PathBuf,
    /// Its path inside the hierarchy, as /proc/PID/cgroup writes it.
    shown: String,
    version: Version,
    before: u64,
    /// v1: the group stood at its limit already (its high-water mark is no news then).
    at_limit_before: bool,
}

/// One enclosing group with a process limit.
#[derive(Debug, Clone)]
struct PidsGroup {
    dir: PathBuf,
    shown: String,
}

/// Where a limit that was not the run's was hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside {
    /// An enclosing group, by its path in the hierarchy, with its limit (bytes or processes) where readable.
    Group { path: String, limit: Option<u64> },
    /// The machine as a whole: no enclosing group's limit was reached.
    Machine,
}

/// The counters of what encloses pynish, taken at the start.
#[derive(Debug, Clone, Default)]
pub struct Enclosing {
    memory: Vec<Group>,
    pids: Vec<PidsGroup>,
    machine_ooms_before: Option<u64>,
    /// `/proc/vmstat` (another file in unit tests).
    vmstat: PathBuf,
}

/// `dir` (the group at `path` in its hierarchy, as /proc/self/cgroup names it) and each of its parents up to the
/// hierarchy's root that holds `file` (a root may lack it: v1's `pids.max`, v2's `memory.events`), nearest first,
/// each with its path in the hierarchy.
fn ancestors(host: &dyn Host, dir: &Path, path: &str, file: &str) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let (mut dir, mut path) = (dir.to_path_buf(), path.trim_end_matches('/').to_string());
    loop {
        if host.exists(&dir.join(file)) {
            found.push((dir.clone(), if path.is_empty() { "/".to_string() } else { path.clone() }));
        }
        let Some(cut) = path.rfind('/') else { break };
        path.truncate(cut);
        if !dir.pop() {
            break;
        }
    }
    found
}

fn memory_counter(host: &dyn Host, dir: &Path, version: Version) -> u64 {
    match version {
        Version::V1 => super::v1::pressure(host, dir).0,
        Version::V2 => {
            let local = dir.join("memory.events.local");
            let events = if host.exists(&local) { local } else { dir.join("memory.events") };
            read_keyed(host, &events, "oom").unwrap_or(0)
        }
    }
}

/// A limit of at least this many bytes is no limit (v1 writes "unlimited" as a huge page-aligned number).
const UNLIMITED: u64 = 1 << 62;

fn memory_limit(host: &dyn Host, dir: &Path, version: Version) -> Option<u64> {
    let file = match version {
        Version::V1 => "memory.limit_in_bytes",
        Version::V2 => "memory.max",
    };
    read_number(host, &dir.join(file)).ok().filter(|&n| n < UNLIMITED)
}

impl Enclosing {
    /// The counters of the groups pynish is in now (from `/proc/self/cgroup`) and of their parents, and the
    /// machine's; what cannot be read is left out.
    pub fn snapshot() -> Enclosing {
        // `/proc/self/cgroup` read once for both (it was read twice, on every run).
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok();
        let found = cgroup.as_deref().and_then(|cgroup| Discovery::with_cgroup(cgroup).ok()).unwrap_or_default();
        let members = parse_proc_cgroup(cgroup.as_deref().unwrap_or_default());
        Enclosing::of(&Kernel, &found, &members, Path::new(VMSTAT))
    }

    fn of(host: &dyn Host, found: &Discovery, members: &[Membership], vmstat: &Path) -> Enclosing {
        let path_of = |controller: Option<&str>| {
            members
                .iter()
                .find(|m| match controller {
                    Some(c) => m.controllers.iter().any(|x| x == c),
                    None => m.controllers.is_empty(),
                })
                .map_or("/", |m| m.path.as_str())
        };
        let mut memory = Vec::new();
        let mut pids = Vec::new();
        if let Some(h) = found.v1_with("memory") {
            for (dir, shown) in ancestors(host, &h.current, path_of(Some("memory")), "memory.failcnt") {
                let (before, at_limit_before) = super::v1::pressure(host, &dir);
                memory.push(Group { dir, shown, version: Version::V1, before, at_limit_before });
            }
        }
        if let Some(h) = found.v1_with("pids") {
            let groups = ancestors(host, &h.current, path_of(Some("pids")), "pids.max");
            pids.extend(groups.into_iter().map(|(dir, shown)| PidsGroup { dir, shown }));
        }
        if let Some((_, dir)) = &found.v2 {
            for (dir, shown) in ancestors(host, dir, path_of(None), "memory.events") {
                let before = memory_counter(host, &dir, Version::V2);
                memory.push(Group { dir, shown, version: Version::V2, before, at_limit_before: false });
            }
            let groups = ancestors(host, dir, path_of(None), "pids.max");
            pids.extend(groups.into_iter().map(|(dir, shown)| PidsGroup { dir, shown }));
        }
        let machine_ooms_before = read_keyed(host, vmstat, "oom_kill");
        Enclosing { memory, pids, machine_ooms_before, vmstat: vmstat.to_path_buf() }
    }

    /// Whose OOM killer it was, if any ran outside the run since the snapshot: the nearest enclosing group whose
    /// own limit was reached, else the machine when its count of OOM kills moved.
    pub fn oom(&self) -> Option<Outside> {
        self.oom_on(&Kernel)
    }

    fn oom_on(&self, host: &dyn Host) -> Option<Outside> {
        // Every OOM kill, a group's included, counts on the machine: none there, none anywhere (a group's
        // failure count alone also moves when reclaim made room).
        let now = read_keyed(host, &self.vmstat, "oom_kill");
        let machine_moved = now.zip(self.machine_ooms_before).map(|(now, before)| now > before);
        if machine_moved == Some(false) {
            return None;
        }
        let reached = |g: &&Group| match g.version {
            Version::V1 => {
                let (failures, at_limit) = super::v1::pressure(host, &g.dir);
                failures > g.before || (at_limit && !g.at_limit_before)
            }
            Version::V2 => memory_counter(host, &g.dir, g.version) > g.before,
        };
        if let Some(group) = self.memory.iter().find(reached) {
            let limit = memory_limit(host, &group.dir, group.version);
            return Some(Outside::Group { path: group.shown.clone(), limit });
        }
        (machine_moved == Some(true)).then_some(Outside::Machine)
    }

    /// The nearest enclosing group whose process limit was reached (its `pids.peak` at its `pids.max`).
    pub fn process_limit(&self) -> Option<Outside> {
        self.process_limit_on(&Kernel)
    }

    fn process_limit_on(&self, host: &dyn Host) -> Option<Outside> {
        self.pids.iter().find_map(|g| {
            let max = read_number(host, &g.dir.join("pids.max")).ok().filter(|&n| n != u64::MAX)?;
            let peak = read_number(host, &g.dir.join("pids.peak")).ok()?;
            (peak >= max).then(|| Outside::Group { path: g.shown.clone(), limit: Some(max) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::Fake;
    use super::super::v1::Hierarchy;
    use super::*;

    #[test]
    fn the_nearest_enclosing_group_whose_limit_was_reached_is_named() {
        let fake = Fake::v1(&["memory", "pids"]);
        let root = fake.root().join("memory");
        std::fs::write(root.join("memory.failcnt"), "0").unwrap(); // the root holds the counters too // the hierarchy's root holds the counters too
        let job = root.join("slurm").join("step");
        for dir in [root.join("slurm"), job.clone()] {
            fake.mkdir(&dir).unwrap();
        }
        fake.set(&job.join("memory.limit_in_bytes"), "157286400");
        let found =
            Discovery { v2: None, v1: vec![Hierarchy { controllers: vec!["memory".into()], current: job.clone() }] };
        let members = parse_proc_cgroup("4:memory:/slurm/step\n");
        let vmstat = fake.root().join("vmstat");
        std::fs::write(&vmstat, "oom_kill 7\n").unwrap();
        let enclosing = Enclosing::of(&fake, &found, &members, &vmstat);
        assert_eq!(enclosing.oom_on(&fake), None);
        fake.set(&job.join("memory.failcnt"), "40");
        assert_eq!(enclosing.oom_on(&fake), None, "a limit reached, reclaim made room: no OOM kill anywhere");
        std::fs::write(&vmstat, "oom_kill 8\n").unwrap();
        assert_eq!(
            enclosing.oom_on(&fake),
            Some(Outside::Group { path: "/slurm/step".into(), limit: Some(157_286_400) })
        );
    }
}
