//! The cgroup v2 backend: one group of its own for the command, where the kernel holds the memory and process
//! limits, counts CPU exactly, and kills the whole tree at once.
//!
//! Where the group goes, in order:
//! 1. pynish sits in the hierarchy's root group (a container's or a hybrid machine's usual place): the run's
//!    group is a child of the root, which may hold processes and still pass controllers on.
//! 2. pynish's own group, when pynish may write it (root, or a subtree delegated to its uid such as a
//!    `systemd-run --user --scope -p Delegate=yes` scope) and pynish is its only process. A group that enables
//!    controllers for its children in `cgroup.subtree_control` may hold no process itself (the no-internal-
//!    process rule), so pynish first moves itself into a leaf of its own (`pynish-<pid>-ns<pidns>-<start>-supervisor`),
//!    then enables `memory` and `pids`, then creates the run's group next to the leaf. At cleanup it undoes
//!    exactly that: removes the run's group, disables what it enabled, moves itself back, removes the leaf — so
//!    the group is left as it was found.
//! 3. Otherwise (the group also holds, say, the parent shell), the nearest ancestor that passes `memory` and
//!    `pids` on (or the root, which may enable them) and that pynish may write: the run's group goes into a
//!    shared `pynish` group there (`<ancestor>/pynish/pynish-<pid>-ns<pidns>-<start>`), removed by the last run using it.
//!
//! The group gets `memory.max`, `memory.swap.max` = 0 and `memory.oom.group` = 1 (an OOM kills the whole tree)
//! for `--memory`, `pids.max` for `--processes`. A kernel-enforced limit shows in `memory.events.local`
//! (`oom_kill`) and `pids.events` (`max`). The group is killed with `cgroup.kill` (5.14+), else frozen, every
//! member SIGKILLed, and thawed.

use super::{
    Discovery, Host, Kernel, REMOVE_PATIENCE, SUPERVISOR_SUFFIX, create_group, keyed, kill_and_remove, kill_group,
    procs, read_keyed, read_number, remove_group, run_name, signal_members, write_file,
};
use crate::limits::{LimitKind, Limits, MemoryKind};
use crate::signals::Sig;
use crate::tree::{KernelUsage, Sample, Tree};
use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shared group under an ancestor that holds the runs' groups in case 3 of the module docs.
pub const SHARED: &str = "pynish";
/// What a run's group needs: memory and process limits and counts (CPU is counted by every v2 group).
pub const CONTROLLERS: [&str; 2] = ["memory", "pids"];
/// How many times a run retries creating its group in the shared group that another run just removed.
const SHARED_ATTEMPTS: usize = 3;

/// The advice for a user who has no group of their own.
pub const DELEGATE_HINT: &str = "run under `systemd-run --user --scope -p Delegate=yes pynish ...` (or add \
                                 --delegate) to get a delegated group";

/// Where pynish moved itself (case 2 of the module docs), to be undone at cleanup.
#[derive(Debug)]
struct Moved {
    group: PathBuf,
    leaf: PathBuf,
    /// Controllers pynish enabled in `group`'s `cgroup.subtree_control`.
    enabled: Vec<&'static str>,
}

/// Where the run's group was made.
#[derive(Debug)]
struct Placement {
    job: PathBuf,
    moved: Option<Moved>,
    shared: Option<PathBuf>,
    how: String,
    /// The lock on each group the run made (see `super::claim_stale`).
    locks: Vec<File>,
}

pub struct V2Tree {
    host: Box<dyn Host>,
    job: PathBuf,
    moved: Option<Moved>,
    shared: Option<PathBuf>,
    how: String,
    /// Held until the run's groups are gone.
    locks: Vec<File>,
    /// The job group's `cgroup.procs`, which the child writes `0` to before exec.
    join: Option<File>,
    /// The job group's directory, for a child born in it.
    birth: Option<File>,
    memory_limited: bool,
    processes_limited: bool,
    /// `memory.events.local` where the kernel has it, else `memory.events` (the same for a leaf).
    memory_events: PathBuf,
    /// `oom` in `memory_events` at the start: the group's own limit was reached and reclaim failed (counted at
    /// the group whose limit it was; `memory.events.local` does not pass it up to the parents).
    ooms_before: u64,
    /// `oom_kill` in `memory.events` (hierarchical) at the start: a member of the group or of a group below it
    /// was OOM-killed, whoever's limit it was.
    oom_kills_before: u64,
    refused_forks_before: u64,
    /// A fork was seen refused in a group below the run's (see `super::refused_below`).
    refused_below: bool,
    /// The previous sample (CPU never goes backwards).
    last: Sample,
    cleaned: bool,
}

fn words(host: &dyn Host, path: &Path) -> Vec<String> {
    host.read(path).map(|t| t.split_ascii_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

fn missing(have: &[String]) -> Vec<&'static str> {
    CONTROLLERS.iter().copied().filter(|c| !have.iter().any(|h| h == c)).collect()
}

/// The real root of a hierarchy lacks the files that make no sense there (`cgroup.type` among them); the root of
/// a cgroup namespace or of a bind-mounted subtree has them, and obeys the no-internal-process rule.
fn is_root(host: &dyn Host, dir: &Path) -> bool {
    !host.exists(&dir.join("cgroup.type"))
}

/// Enables the controllers `dir` does not pass on yet; returns those it enabled.
fn enable(host: &dyn Host, dir: &Path) -> io::Result<Vec<&'static str>> {
    let todo = missing(&words(host, &dir.join("cgroup.subtree_control")));
    if !todo.is_empty() {
        let text = todo.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
        host.write(&dir.join("cgroup.subtree_control"), &text)?;
    }
    Ok(todo)
}

/// Gives `group` the cpu controller where its parent has it to pass on and pynish may enable it there (and, up
/// to `depth` levels, in the parents above); whether `group` has it now. Only for `--cpu-quota`: a run without
/// one leaves the cpu controller as it was.
fn enable_cpu_for(host: &dyn Host, group: &Path, depth: usize) -> bool {
    let has = |dir: &Path| words(host, &dir.join("cgroup.controllers")).iter().any(|c| c == "cpu");
    if has(group) {
        return true;
    }
    let Some(parent) = group.parent() else { return false };
    if !has(parent) && (depth <= 1 || !enable_cpu_for(host, parent, depth - 1)) {
        return false;
    }
    host.write(&parent.join("cgroup.subtree_control"), "+cpu").is_ok() && has(group)
}

fn disable(host: &dyn Host, dir: &Path, controllers: &[&str]) -> io::Result<()> {
    if controllers.is_empty() {
        return Ok(());
    }
    let text = controllers.iter().map(|c| format!("-{c}")).collect::<Vec<_>>().join(" ");
    host.write(&dir.join("cgroup.subtree_control"), &text)
}

fn shown(pids: &[i32]) -> String {
    let mut text = pids.iter().take(5).map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
    if pids.len() > 5 {
        text += ", ...";
    }
    text
}

/// Case 2: the group pynish sits in, with pynish moved into a leaf of its own.
fn in_own_group(host: &dyn Host, current: &Path, name: &str) -> Result<Placement, String> {
    let uid = host.uid();
    for path in [current.to_path_buf(), current.join("cgroup.procs"), current.join("cgroup.subtree_control")] {
        if !host.writable(&path) {
            return Err(format!("{} is not writable by uid {uid} (not delegated to it)", path.display()));
        }
    }
    let absent = missing(&words(host, &current.join("cgroup.controllers")));
    if !absent.is_empty() {
        return Err(format!(
            "{} lacks the {} controller (its parent group does not pass it on)",
            current.display(),
            absent.join(", ")
        ));
    }
    let me = host.own_pid();
    let others: Vec<i32> = procs(host, current).into_iter().filter(|&p| p != me).collect();
    if !others.is_empty() {
        return Err(format!(
            "{} also holds other processes ({}), and a group that passes controllers on may hold none",
            current.display(),
            shown(&others)
        ));
    }
    let leaf = current.join(format!("{name}{SUPERVISOR_SUFFIX}"));
    let job = current.join(name);
    let fail = |what: &str, path: &Path, e: io::Error| format!("cannot {what} {}: {e}", path.display());
    let leaf_lock = create_group(host, &leaf).map_err(|e| fail("create", &leaf, e))?;
    if let Err(e) = host.write(&leaf.join("cgroup.procs"), "0") {
        let _ = host.rmdir(&leaf);
        return Err(fail("move pynish into", &leaf, e));
    }
    let undo_move = || {
        let _ = host.write(&current.join("cgroup.procs"), "0");
        let _ = host.rmdir(&leaf);
    };
    let enabled = match enable(host, current) {
        Ok(enabled) => enabled,
        Err(e) => {
            undo_move();
            return Err(fail("enable memory and pids in", &current.join("cgroup.subtree_control"), e));
        }
    };
    let job_lock = match create_group(host, &job) {
        Ok(lock) => lock,
        Err(e) => {
            let _ = disable(host, current, &enabled);
            undo_move();
            return Err(fail("create", &job, e));
        }
    };
    let how = format!("group {}, pynish itself in {}", job.display(), leaf.display());
    let moved = Some(Moved { group: current.to_path_buf(), leaf, enabled });
    Ok(Placement { job, moved, shared: None, how, locks: vec![leaf_lock, job_lock] })
}

/// Case 3: the shared `pynish` group under `ancestor`, if the ancestor can have it.
fn under_ancestor(host: &dyn Host, ancestor: &Path, name: &str) -> Option<Result<Placement, String>> {
    let passes = missing(&words(host, &ancestor.join("cgroup.subtree_control"))).is_empty();
    let may_enable = is_root(host, ancestor)
        && missing(&words(host, &ancestor.join("cgroup.controllers"))).is_empty()
        && host.writable(&ancestor.join("cgroup.subtree_control"));
    // The command moves from pynish's group to the new one: that needs the common ancestor's cgroup.procs.
    if !(passes || may_enable) || !host.writable(ancestor) || !host.writable(&ancestor.join("cgroup.procs")) {
        return None;
    }
    let fail = |what: &str, path: &Path, e: io::Error| Err(format!("cannot {what} {}: {e}", path.display()));
    if !passes && let Err(e) = enable(host, ancestor) {
        return Some(fail("enable memory and pids in", &ancestor.join("cgroup.subtree_control"), e));
    }
    let shared = ancestor.join(SHARED);
    let job = shared.join(name);
    let mut last = None;
    for _ in 0..SHARED_ATTEMPTS {
        match host.mkdir(&shared) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Some(fail("create", &shared, e)),
        }
        if let Err(e) = enable(host, &shared) {
            last = Some(fail("enable memory and pids in", &shared.join("cgroup.subtree_control"), e));
            continue; // removed by another run in between
        }
        match create_group(host, &job) {
            Ok(lock) => {
                let how = format!("group {} under the nearest usable ancestor", job.display());
                return Some(Ok(Placement { job, moved: None, shared: Some(shared), how, locks: vec![lock] }));
            }
            Err(e) => last = Some(fail("create", &job, e)),
        }
    }
    last
}

/// Finds or makes room for the run's group (see the module docs).
fn place(host: &dyn Host, top: &Path, current: &Path, name: &str) -> Result<Placement> {
    let own = if is_root(host, current) {
        let job = current.join(name);
        let made = enable(host, current)
            .map_err(|e| format!("cannot enable memory and pids in {}/cgroup.subtree_control: {e}", current.display()))
            .and_then(|_| create_group(host, &job).map_err(|e| format!("cannot create {}: {e}", job.display())));
        match made {
            Ok(lock) => {
                let how = format!("group {} under the hierarchy's root", job.display());
                return Ok(Placement { job, moved: None, shared: None, how, locks: vec![lock] });
            }
            Err(why) => why,
        }
    } else {
        match in_own_group(host, current, name) {
            Ok(placement) => return Ok(placement),
            Err(why) => why,
        }
    };
    let mut ancestor = current.parent();
    while let Some(dir) = ancestor.filter(|d| d.starts_with(top)) {
        match under_ancestor(host, dir, name) {
            Some(Ok(placement)) => return Ok(placement),
            Some(Err(why)) => bail!("{own}; {why}"),
            None => ancestor = dir.parent(),
        }
    }
    let mut message =
        format!("{own}; no ancestor up to {} passes memory and pids on to a group pynish may create", top.display());
    if host.uid() != 0 {
        message += &format!("; {DELEGATE_HINT}");
    }
    Err(anyhow!(message))
}

impl V2Tree {
    /// The group for a run on this machine, found from `/proc/self`.
    pub fn open(limits: &Limits) -> Result<V2Tree> {
        let found = Discovery::from_proc()?;
        let Some((mount, current)) = &found.v2 else { bail!("no cgroup2 file system is mounted") };
        let host = Kernel;
        let absent = missing(&words(&host, &mount.mount_point.join("cgroup.controllers")));
        if !absent.is_empty() {
            let mut message =
                format!("cgroup v2 at {} offers no {} controller", mount.mount_point.display(), absent.join(", "));
            let in_v1: Vec<&str> = absent.iter().copied().filter(|c| found.v1_with(c).is_some()).collect();
            if !in_v1.is_empty() {
                message += &format!(" ({} bound to cgroup v1 hierarchies)", in_v1.join(", "));
            }
            bail!(message);
        }
        V2Tree::create(Box::new(host), &mount.mount_point, current, limits)
    }

    /// The group for a run in the hierarchy mounted at `top`, for a pynish that sits in group `current`.
    pub fn create(host: Box<dyn Host>, top: &Path, current: &Path, limits: &Limits) -> Result<V2Tree> {
        let name = run_name(host.as_ref());
        let placement = place(host.as_ref(), top, current, &name)?;
        let mut tree = V2Tree {
            host,
            memory_events: placement.job.join("memory.events.local"),
            job: placement.job,
            moved: placement.moved,
            shared: placement.shared,
            how: placement.how,
            locks: placement.locks,
            join: None,
            birth: None,
            memory_limited: false,
            processes_limited: false,
            ooms_before: 0,
            oom_kills_before: 0,
            refused_forks_before: 0,
            refused_below: false,
            last: Sample::default(),
            cleaned: false,
        };
        if let Err(error) = tree.configure(limits) {
            let _ = tree.cleanup();
            return Err(error);
        }
        Ok(tree)
    }

    fn configure(&mut self, limits: &Limits) -> Result<()> {
        let host = self.host.as_ref();
        let file = |name: &str| self.job.join(name);
        if let (Some(bytes), MemoryKind::Resident) = (limits.memory, limits.memory_kind) {
            // The kernel rounds memory.max down to whole pages.
            write_file(host, &file("memory.max"), &bytes.to_string())?;
            if host.exists(&file("memory.swap.max")) {
                write_file(host, &file("memory.swap.max"), "0")?;
            }
            write_file(host, &file("memory.oom.group"), "1")?;
            self.memory_limited = true;
        }
        if let Some(n) = limits.processes {
            write_file(host, &file("pids.max"), &n.to_string())?;
            self.processes_limited = true;
        }
        if let Some(cores) = limits.cpu_quota {
            // pynish enables memory and pids for every run, cpu only for a quota: where it was delegated (a
            // systemd Delegate=yes group lists it in cgroup.controllers, its subtree_control is the user's), else
            // the quota is refused, never claimed.
            let had = words(host, &file("cgroup.controllers")).iter().any(|c| c == "cpu");
            // Where pynish moved itself out of its group, only that group's subtree_control is its to change.
            if !had
                && enable_cpu_for(host, &self.job, if self.moved.is_some() { 1 } else { 2 })
                && let Some(moved) = self.moved.as_mut()
            {
                // Undone at cleanup with the others, so that pynish may move back into its group.
                moved.enabled.push("cpu");
            }
            if !words(host, &file("cgroup.controllers")).iter().any(|c| c == "cpu") {
                bail!(
                    "--cpu-quota: the cgroup v2 group {} has no cpu controller (its parent does not pass it on)",
                    self.job.display()
                );
            }
            let (quota, period) = super::quota_and_period(cores);
            write_file(host, &file("cpu.max"), &format!("{quota} {period}"))?;
        }
        if !host.exists(&self.memory_events) {
            self.memory_events = file("memory.events");
        }
        self.ooms_before = read_keyed(host, &self.memory_events, "oom").unwrap_or(0);
        self.oom_kills_before = read_keyed(host, &file("memory.events"), "oom_kill").unwrap_or(0);
        self.refused_forks_before = read_keyed(host, &file("pids.events"), "max").unwrap_or(0);
        let procs = file("cgroup.procs");
        self.join = Some(host.open_for_write(&procs).with_context(|| format!("cannot open {}", procs.display()))?);
        // Without it the child joins by writing `join`, as it does where the kernel refuses the birth.
        self.birth = host.open_group(&self.job).ok();
        Ok(())
    }

    /// Where the group is, for `-v` and `pynish check`.
    pub fn placement(&self) -> &str {
        &self.how
    }

    /// The run's group.
    #[cfg(test)]
    pub fn job(&self) -> &Path {
        &self.job
    }

    /// Case 2 undone: pynish back in its group, the group as found. Skipped (the leaf is then swept by a later
    /// run once pynish has ended) if someone else made a group there meanwhile, whose controllers must stay.
    fn move_back(&self, moved: &Moved) -> Result<()> {
        let host = self.host.as_ref();
        let leaf_name = moved.leaf.file_name().map(|n| n.to_string_lossy().into_owned());
        let others = host.subdirs(&moved.group).unwrap_or_default().into_iter().any(|n| Some(&n) != leaf_name.as_ref());
        if others {
            return Ok(());
        }
        disable(host, &moved.group, &moved.enabled)
            .with_context(|| format!("cannot restore {}/cgroup.subtree_control", moved.group.display()))?;
        write_file(host, &moved.group.join("cgroup.procs"), "0")?;
        remove_group(host, &moved.leaf).with_context(|| format!("cannot remove {}", moved.leaf.display()))
    }
}

impl Tree for V2Tree {
    fn name(&self) -> &'static str {
        "cgroup2"
    }

    fn enforcement(&self, _limit: LimitKind) -> &'static str {
        "cgroup2"
    }

    fn join_fds(&self) -> Vec<RawFd> {
        self.join.iter().map(|f| f.as_raw_fd()).collect()
    }

    fn birth_group(&self) -> Option<RawFd> {
        self.birth.as_ref().map(|f| f.as_raw_fd())
    }

    fn sample(&mut self) -> Result<Sample> {
        let host = self.host.as_ref();
        let stat = host.read(&self.job.join("cpu.stat")).context("cannot read cpu.stat")?;
        let usec = |key| keyed(&stat, key).map(Duration::from_micros);
        let total = usec("usage_usec").context("no usage_usec in cpu.stat")?;
        // The split is in the same read; the kernel scales it to add up to usage_usec (to rounding).
        let split = (usec("user_usec").unwrap_or(total), usec("system_usec").unwrap_or_default());
        let (cpu_user, cpu_system) = Sample::split_cpu(total, split.0, split.1, &self.last);
        self.last = Sample {
            cpu_user,
            cpu_system,
            memory: read_number(host, &self.job.join("memory.current"))?,
            processes: read_number(host, &self.job.join("pids.current"))?,
        };
        Ok(self.last)
    }

    fn kernel_hit(&mut self) -> Option<LimitKind> {
        let host = self.host.as_ref();
        let moved = |path: &Path, key: &str, before: u64| read_keyed(host, path, key).is_some_and(|n| n > before);
        // The run's own limit (`oom` of this group alone), and a kill in its tree: an enclosing group's OOM kill
        // moves `oom_kill` here but not this group's own `oom`; an inner group's (a nested pynish's) kill by this
        // run's limit moves both.
        if self.memory_limited
            && moved(&self.memory_events, "oom", self.ooms_before)
            && moved(&self.job.join("memory.events"), "oom_kill", self.oom_kills_before)
        {
            return Some(LimitKind::Memory);
        }
        if self.processes_limited {
            self.refused_below = self.refused_below || super::refused_below(host, &self.job);
            let refused = moved(&self.job.join("pids.events"), "max", self.refused_forks_before) || self.refused_below;
            if refused && super::process_limit_reached(host, &self.job) {
                return Some(LimitKind::Processes);
            }
        }
        None
    }

    fn fork_refused(&mut self) -> bool {
        read_keyed(self.host.as_ref(), &self.job.join("pids.events"), "max")
            .is_some_and(|n| n > self.refused_forks_before)
    }

    fn oom_killed(&mut self) -> bool {
        read_keyed(self.host.as_ref(), &self.job.join("memory.events"), "oom_kill")
            .is_some_and(|n| n > self.oom_kills_before)
    }

    fn listed_before_killing(&mut self) -> Vec<i32> {
        super::procs_below(self.host.as_ref(), &self.job)
    }

    fn signal_all(&mut self, signal: Sig, signalled_group: Option<i32>) -> Vec<i32> {
        signal_members(self.host.as_ref(), &self.job, signal, signalled_group)
    }

    fn kill_all(&mut self) -> Vec<i32> {
        kill_group(self.host.as_ref(), &self.job, None)
    }

    fn final_usage(&mut self) -> KernelUsage {
        let host = self.host.as_ref();
        let stat = host.read(&self.job.join("cpu.stat")).unwrap_or_default();
        let usec = |key| keyed(&stat, key).map(Duration::from_micros);
        let peak = |name| read_number(host, &self.job.join(name)).ok();
        KernelUsage {
            cpu_user: usec("user_usec"),
            cpu_system: usec("system_usec"),
            peak_memory: peak("memory.peak"),
            peak_processes: peak("pids.peak"),
        }
    }

    fn cleanup(&mut self) -> Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        self.join = None;
        let host = self.host.as_ref();
        // The tree is gone when pynish has no child left; a member that left pynish's tree (only a process that
        // is ptraced from outside can) must not keep the group alive.
        kill_and_remove(host, &self.job, None, REMOVE_PATIENCE)
            .with_context(|| format!("cannot remove {}", self.job.display()))?;
        if let Some(moved) = &self.moved {
            self.move_back(moved)?;
        }
        if let Some(shared) = &self.shared {
            // Still used by another run when this fails.
            let _ = host.rmdir(shared);
        }
        self.locks.clear();
        Ok(())
    }
}

impl Drop for V2Tree {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::super::PREFIX;
    use super::super::fake::Fake;
    use super::*;

    fn limits(memory: Option<u64>, processes: Option<u64>) -> Limits {
        Limits { memory, processes, ..Limits::default() }
    }

    #[test]
    fn root_group_gets_the_job_group_with_limits() {
        let fake = Fake::v2("cpu memory pids io", "");
        let root = fake.root();
        fake.enter(&root, fake.own_pid());
        let mut tree = V2Tree::create(fake.boxed(), &root, &root, &limits(Some(100_000_000), Some(50))).unwrap();
        let job = tree.job().to_path_buf();
        assert_eq!(job.parent(), Some(root.as_path()));
        assert!(job.file_name().unwrap().to_string_lossy().starts_with(PREFIX));
        assert_eq!(fake.get(&root.join("cgroup.subtree_control")), "memory pids");
        assert_eq!(fake.get(&job.join("memory.max")), "100000000");
        assert_eq!(fake.get(&job.join("memory.swap.max")), "0");
        assert_eq!(fake.get(&job.join("memory.oom.group")), "1");
        assert_eq!(fake.get(&job.join("pids.max")), "50");
        assert_eq!(tree.join_fds().len(), 1);

        fake.set(&job.join("cpu.stat"), "usage_usec 300500\nuser_usec 200000\nsystem_usec 100500\n");
        fake.set(&job.join("memory.current"), "4096");
        fake.set(&job.join("pids.current"), "3");
        let sample = tree.sample().unwrap();
        let (user, system) = (Duration::from_micros(200_000), Duration::from_micros(100_500));
        assert_eq!(sample, Sample { cpu_user: user, cpu_system: system, memory: 4096, processes: 3 });
        assert_eq!(tree.kernel_hit(), None);

        fake.set(&job.join("memory.peak"), "99999744");
        fake.set(&job.join("pids.peak"), "7");
        let usage = tree.final_usage();
        assert_eq!(usage.cpu_user, Some(Duration::from_millis(200)));
        assert_eq!(usage.cpu_system, Some(Duration::from_micros(100_500)));
        assert_eq!(usage.peak_memory, Some(99_999_744));
        assert_eq!(usage.peak_processes, Some(7));

        tree.cleanup().unwrap();
        assert!(!fake.exists(&job));
        drop(tree);
    }

    #[test]
    fn a_cpu_quota_is_cpu_max_where_the_cpu_controller_is_passed_on() {
        let quota = Limits { cpu_quota: Some(1.5), ..Limits::default() };
        let fake = Fake::v2("cpu memory pids", "cpu memory pids");
        let root = fake.root();
        let tree = V2Tree::create(fake.boxed(), &root, &root, &quota).unwrap();
        assert_eq!(fake.get(&tree.job().join("cpu.max")), "150000 100000");
        drop(tree);
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let error = V2Tree::create(fake.boxed(), &root, &root, &quota).err().unwrap();
        assert!(format!("{error:#}").contains("--cpu-quota: the cgroup v2 group"), "{error:#}");
        assert!(format!("{error:#}").contains("has no cpu controller"), "refused, never claimed: {error:#}");
    }

    #[test]
    fn a_cpu_quota_enables_the_cpu_controller_only_where_it_was_delegated_and_undoes_it() {
        let quota = Limits { cpu_quota: Some(0.5), ..Limits::default() };
        // systemd's Delegate=yes: the scope lists cpu in cgroup.controllers, its subtree_control is the user's.
        let fake = Fake::v2("cpu memory pids", "cpu memory pids");
        let root = fake.root();
        let scope = root.join("run-1.scope");
        fake.mkdir(&scope).unwrap();
        fake.enter(&scope, fake.own_pid());
        let mut tree = V2Tree::create(fake.boxed(), &root, &scope, &quota).unwrap();
        assert_eq!(fake.get(&tree.job().join("cpu.max")), "50000 100000");
        assert_eq!(fake.get(&scope.join("cgroup.subtree_control")), "cpu memory pids");
        tree.cleanup().unwrap();
        assert_eq!(fake.get(&scope.join("cgroup.subtree_control")), "", "the scope as found");
        assert_eq!(fake.group_of(fake.own_pid()), Some(scope.clone()));
        drop(tree);

        // A run without a quota leaves cpu alone.
        let fake = Fake::v2("cpu memory pids", "memory pids");
        let root = fake.root();
        drop(V2Tree::create(fake.boxed(), &root, &root, &Limits::default()).unwrap());
        assert_eq!(fake.get(&root.join("cgroup.subtree_control")), "memory pids");
        // With one, the root passes cpu on.
        let tree = V2Tree::create(fake.boxed(), &root, &root, &quota).unwrap();
        assert_eq!(fake.get(&tree.job().join("cpu.max")), "50000 100000");
        drop(tree);

        // Not delegated to the scope: refused, never claimed.
        let fake = Fake::v2("cpu memory pids", "memory pids");
        let root = fake.root();
        let scope = root.join("run-2.scope");
        fake.mkdir(&scope).unwrap();
        fake.enter(&scope, fake.own_pid());
        let error = V2Tree::create(fake.boxed(), &root, &scope, &quota).err().unwrap();
        assert!(format!("{error:#}").contains("has no cpu controller"), "{error:#}");
        assert_eq!(fake.get(&scope.join("cgroup.subtree_control")), "", "the scope as found");
    }

    #[test]
    fn oom_kill_and_refused_fork_are_kernel_hits() {
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let mut tree = V2Tree::create(fake.boxed(), &root, &root, &limits(Some(1 << 20), Some(5))).unwrap();
        let job = tree.job().to_path_buf();
        fake.set(&job.join("pids.events"), "max 2\n");
        fake.set(&job.join("pids.peak"), "5");
        assert_eq!(tree.kernel_hit(), Some(LimitKind::Processes));
        let events = "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 1\n";
        fake.set(&job.join("memory.events.local"), events);
        fake.set(&job.join("memory.events"), events);
        assert_eq!(tree.kernel_hit(), Some(LimitKind::Memory));
        assert!(tree.oom_killed());
        // Asked again (at the end of the run), the answer stays.
        assert_eq!(tree.kernel_hit(), Some(LimitKind::Memory));
    }

    #[test]
    fn an_enclosing_groups_oom_kill_is_not_the_runs() {
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let mut tree = V2Tree::create(fake.boxed(), &root, &root, &limits(Some(1 << 30), None)).unwrap();
        let job = tree.job().to_path_buf();
        // A parent's limit: the member killed here, this group's own limit never reached.
        fake.set(&job.join("memory.events.local"), "low 0\nhigh 0\nmax 0\noom 0\noom_kill 1\n");
        fake.set(&job.join("memory.events"), "low 0\nhigh 0\nmax 0\noom 0\noom_kill 1\n");
        assert_eq!(tree.kernel_hit(), None);
        assert!(tree.oom_killed());
    }

    #[test]
    fn a_kill_below_by_the_runs_limit_is_the_runs() {
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let mut tree = V2Tree::create(fake.boxed(), &root, &root, &limits(Some(100 << 20), None)).unwrap();
        let job = tree.job().to_path_buf();
        // A nested run's member killed by this run's limit: this group's own `oom`, the kill counted below it.
        fake.set(&job.join("memory.events.local"), "max 3\noom 1\noom_kill 0\n");
        fake.set(&job.join("memory.events"), "max 3\noom 1\noom_kill 1\n");
        assert_eq!(tree.kernel_hit(), Some(LimitKind::Memory));
    }

    #[test]
    fn events_without_a_limit_are_not_a_verdict() {
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let mut tree = V2Tree::create(fake.boxed(), &root, &root, &Limits::default()).unwrap();
        let job = tree.job().to_path_buf();
        assert_eq!(fake.get(&job.join("memory.max")), "max");
        fake.set(&job.join("memory.events.local"), "oom_kill 1\n");
        fake.set(&job.join("pids.events"), "max 1\n");
        assert_eq!(tree.kernel_hit(), None);
    }

    #[test]
    fn sole_process_moves_into_a_leaf_and_restores_its_group() {
        let fake = Fake::v2("memory pids cpu", "memory pids");
        let root = fake.root();
        let group = root.join("session");
        fake.mkdir(&group).unwrap();
        fake.enter(&group, fake.own_pid());
        let mut tree = V2Tree::create(fake.boxed(), &root, &group, &limits(Some(1 << 30), None)).unwrap();
        let job = tree.job().to_path_buf();
        assert_eq!(job.parent(), Some(group.as_path()));
        let leaf = group.join(format!("{}{SUPERVISOR_SUFFIX}", job.file_name().unwrap().to_string_lossy()));
        assert_eq!(fake.group_of(fake.own_pid()), Some(leaf.clone()));
        assert_eq!(fake.get(&group.join("cgroup.subtree_control")), "memory pids");
        assert!(procs(&fake, &group).is_empty());
        assert_eq!(fake.get(&job.join("cgroup.controllers")), "memory pids");

        // The command joins and forks; the kill takes them all.
        fake.enter(&job, 4_000_001);
        fake.enter(&job, 4_000_002);
        assert_eq!(tree.listed_before_killing(), [4_000_001, 4_000_002]);
        assert_eq!(tree.signal_all(Sig::TERM, None), [4_000_001, 4_000_002]);
        assert_eq!(tree.kill_all(), [4_000_001, 4_000_002]);
        assert_eq!(fake.kills(), 1);
        assert!(procs(&fake, &job).is_empty());

        tree.cleanup().unwrap();
        assert!(!fake.exists(&job));
        assert!(!fake.exists(&leaf));
        assert_eq!(fake.get(&group.join("cgroup.subtree_control")), "");
        assert_eq!(fake.group_of(fake.own_pid()), Some(group.clone()));
        assert_eq!(fake.subdirs(&group).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn busy_group_falls_back_to_the_shared_group_of_an_ancestor() {
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let slice = root.join("user.slice");
        let session = slice.join("session-1.scope");
        fake.mkdir(&slice).unwrap();
        fake.write(&slice.join("cgroup.subtree_control"), "+memory +pids").unwrap();
        fake.mkdir(&session).unwrap();
        fake.enter(&session, fake.own_pid());
        fake.enter(&session, 4_000_010); // the parent shell
        let mut tree = V2Tree::create(fake.boxed(), &root, &session, &limits(Some(1 << 30), Some(10))).unwrap();
        let job = tree.job().to_path_buf();
        assert_eq!(job.parent(), Some(slice.join(SHARED).as_path()));
        assert_eq!(fake.group_of(fake.own_pid()), Some(session.clone()), "pynish stays where it was");
        assert_eq!(fake.get(&job.join("pids.max")), "10");
        tree.cleanup().unwrap();
        assert!(!fake.exists(&slice.join(SHARED)));
        assert_eq!(fake.get(&slice.join("cgroup.subtree_control")), "memory pids");
    }

    #[test]
    fn unprivileged_without_delegation_is_refused_with_the_hint() {
        let fake = Fake::v2("memory pids", "memory pids");
        fake.set_uid(1000);
        let root = fake.root();
        let group = root.join("user.slice");
        fake.mkdir(&group).unwrap();
        fake.enter(&group, fake.own_pid());
        fake.deny_writes_below(&root);
        let error = V2Tree::create(fake.boxed(), &root, &group, &Limits::default()).err().unwrap();
        let text = format!("{error:#}");
        assert!(text.contains("not writable by uid 1000"), "{text}");
        assert!(text.contains("systemd-run --user --scope -p Delegate=yes"), "{text}");
        assert_eq!(fake.subdirs(&group).unwrap(), Vec::<String>::new(), "nothing left behind");
    }

    #[test]
    fn group_without_the_controllers_is_refused() {
        let fake = Fake::v2("memory pids", "memory");
        let root = fake.root();
        let group = root.join("a");
        fake.mkdir(&group).unwrap();
        fake.enter(&group, fake.own_pid());
        fake.deny_writes_below(&root.join("cgroup.subtree_control"));
        let error = V2Tree::create(fake.boxed(), &root, &group, &Limits::default()).err().unwrap();
        assert!(format!("{error:#}").contains("lacks the pids controller"), "{error:#}");
    }

    #[test]
    fn freezes_and_kills_without_cgroup_kill() {
        let fake = Fake::v2("memory pids", "memory pids");
        fake.without_cgroup_kill();
        let root = fake.root();
        let mut tree = V2Tree::create(fake.boxed(), &root, &root, &Limits::default()).unwrap();
        let job = tree.job().to_path_buf();
        fake.enter(&job, 4_000_020);
        fake.enter(&job, 4_000_021);
        assert_eq!(tree.kill_all(), [4_000_020, 4_000_021]);
        assert_eq!(fake.signals(Sig::KILL), vec![4_000_020, 4_000_021]);
        assert_eq!(fake.get(&job.join("cgroup.freeze")), "0", "thawed again");
        assert!(fake.was_frozen(&job));
        tree.cleanup().unwrap();
        assert!(!fake.exists(&job));
    }

    #[test]
    fn cleanup_kills_stragglers_and_runs_once() {
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let mut tree = V2Tree::create(fake.boxed(), &root, &root, &Limits::default()).unwrap();
        let job = tree.job().to_path_buf();
        fake.enter(&job, 4_000_030);
        tree.cleanup().unwrap();
        assert!(!fake.exists(&job));
        assert_eq!(fake.kills(), 1);
        tree.cleanup().unwrap();
        drop(tree);
        assert_eq!(fake.kills(), 1);
    }

    #[test]
    fn stale_groups_of_a_dead_pynish_are_swept() {
        let fake = Fake::v2("memory pids", "memory pids");
        let root = fake.root();
        let stale = root.join(format!("{PREFIX}4000040-123"));
        fake.mkdir(&stale).unwrap();
        fake.enter(&stale, 4_000_041); // a daemon that outlived its pynish
        let live_pid = 4_000_050;
        fake.add_process(live_pid, 77);
        let live = root.join(format!("{PREFIX}{live_pid}-77"));
        fake.mkdir(&live).unwrap();
        fake.enter(&live, 4_000_051);
        let removed = super::super::sweep(&fake, &root, None);
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!fake.exists(&stale));
        assert!(fake.exists(&live));
        assert_eq!(procs(&fake, &live), vec![4_000_051]);
    }
}
