//! A fake cgroup file system in a temporary directory, for the backends' unit tests: `mkdir` fills a group with
//! the control files the kernel would make, and writes to `cgroup.subtree_control`, `cgroup.procs`,
//! `cgroup.kill`, `cgroup.freeze` and `freezer.state` follow the kernel's rules (controllers only from the
//! parent, no internal processes under v2, a group with members or children cannot be removed). Processes are
//! numbers in a table: no real process is ever signalled.

use super::Host;
use crate::signals::Sig;
use nix::libc;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// The order the kernel lists controllers in.
const ORDER: [&str; 8] = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"];

#[derive(Default)]
struct State {
    uid: u32,
    me: i32,
    /// pid → start time of every live process.
    processes: HashMap<i32, u64>,
    signals: Vec<(i32, Sig)>,
    kills: usize,
    frozen: Vec<PathBuf>,
    denied: Vec<PathBuf>,
    no_cgroup_kill: bool,
    no_oom_kill_counter: bool,
    foreign_proc: bool,
    /// A group a sweep of another pid namespace removes just before the next lock is taken on it.
    swept_before_lock: Option<PathBuf>,
}

struct Inner {
    dir: tempfile::TempDir,
    v1: bool,
    state: RefCell<State>,
}

/// A handle to the fake; clones share it.
#[derive(Clone)]
pub struct Fake(Rc<Inner>);

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn put(path: &Path, text: &str) {
    std::fs::write(path, text).expect("fake cgroup file");
}

fn canonical(set: &[String]) -> String {
    ORDER.iter().filter(|c| set.iter().any(|s| s == *c)).copied().collect::<Vec<_>>().join(" ")
}

impl Fake {
    fn new(v1: bool) -> Fake {
        let state = State { me: 4_100_000, ..State::default() };
        let fake = Fake(Rc::new(Inner { dir: tempfile::tempdir().expect("tempdir"), v1, state: RefCell::new(state) }));
        fake.add_process(fake.own_pid(), 1);
        fake
    }

    /// A cgroup2 hierarchy whose root offers `controllers` and already passes `subtree` on.
    pub fn v2(controllers: &str, subtree: &str) -> Fake {
        let fake = Fake::new(false);
        let root = fake.root();
        std::fs::create_dir(&root).expect("fake root");
        put(&root.join("cgroup.procs"), "");
        put(&root.join("cgroup.controllers"), controllers);
        put(&root.join("cgroup.subtree_control"), subtree);
        put(&root.join("cpu.stat"), "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
        fake
    }

    /// cgroup v1 hierarchies, one directory per controller under `root()`.
    pub fn v1(controllers: &[&str]) -> Fake {
        let fake = Fake::new(true);
        std::fs::create_dir(fake.root()).expect("fake root");
        for controller in controllers {
            let dir = fake.root().join(controller);
            std::fs::create_dir(&dir).expect("fake hierarchy");
            put(&dir.join("cgroup.procs"), "");
            if *controller == "cpuset" {
                put(&dir.join("cpuset.cpus"), "0-3");
                put(&dir.join("cpuset.mems"), "0");
            }
        }
        fake
    }

    pub fn root(&self) -> PathBuf {
        self.0.dir.path().join("cg")
    }

    pub fn boxed(&self) -> Box<dyn Host> {
        Box::new(self.clone())
    }

    pub fn set_uid(&self, uid: u32) {
        self.0.state.borrow_mut().uid = uid;
    }

    /// Makes `path` and everything below it unwritable (EACCES), as for a user nothing was delegated to.
    pub fn deny_writes_below(&self, path: &Path) {
        self.0.state.borrow_mut().denied.push(path.to_path_buf());
    }

    /// A kernel older than 5.14.
    pub fn without_cgroup_kill(&self) {
        self.0.state.borrow_mut().no_cgroup_kill = true;
    }

    /// A kernel older than 4.13: no `oom_kill` in v1's `memory.oom_control`.
    pub fn without_oom_kill_counter(&self) {
        self.0.state.borrow_mut().no_oom_kill_counter = true;
    }

    /// `/proc` of another pid namespace (see `procfs`): no owner can be looked up by its pid.
    pub fn with_foreign_proc(&self) {
        self.0.state.borrow_mut().foreign_proc = true;
    }

    /// Removes `dir` (empty) as a sweep in another namespace would, between its mkdir and its lock.
    pub fn sweep_before_next_lock(&self, dir: &Path) {
        self.0.state.borrow_mut().swept_before_lock = Some(dir.to_path_buf());
    }

    pub fn add_process(&self, pid: i32, start: u64) {
        self.0.state.borrow_mut().processes.insert(pid, start);
    }

    pub fn get(&self, path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
    }

    /// Sets what the kernel would report in a file.
    pub fn set(&self, path: &Path, text: &str) {
        assert!(path.exists(), "{} is not a control file", path.display());
        put(path, text);
    }

    /// Puts `pid` (a new process if unknown) into `group`, leaving its old group.
    pub fn enter(&self, group: &Path, pid: i32) {
        self.0.state.borrow_mut().processes.entry(pid).or_insert(1);
        self.leave(pid);
        let procs = group.join("cgroup.procs");
        let mut text = std::fs::read_to_string(&procs).expect("a group");
        text += &format!("{pid}\n");
        put(&procs, &text);
    }

    fn leave(&self, pid: i32) {
        if let Some(group) = self.group_of(pid) {
            let procs = group.join("cgroup.procs");
            let text = std::fs::read_to_string(&procs).expect("a group");
            let kept: String = text.lines().filter(|l| l.trim() != pid.to_string()).map(|l| format!("{l}\n")).collect();
            put(&procs, &kept);
        }
    }

    /// The group `pid` is in.
    pub fn group_of(&self, pid: i32) -> Option<PathBuf> {
        fn walk(dir: &Path, pid: i32) -> Option<PathBuf> {
            let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if text.split_ascii_whitespace().any(|p| p == pid.to_string()) {
                return Some(dir.to_path_buf());
            }
            std::fs::read_dir(dir).ok()?.flatten().filter(|e| e.path().is_dir()).find_map(|e| walk(&e.path(), pid))
        }
        walk(&self.root(), pid)
    }

    /// Writes to `cgroup.kill` so far.
    pub fn kills(&self) -> usize {
        self.0.state.borrow().kills
    }

    /// The pids `signal` was sent to, in order.
    pub fn signals(&self, signal: Sig) -> Vec<i32> {
        self.0.state.borrow().signals.iter().filter(|(_, s)| *s == signal).map(|(p, _)| *p).collect()
    }

    pub fn was_frozen(&self, group: &Path) -> bool {
        self.0.state.borrow().frozen.iter().any(|g| g == group)
    }

    fn denied(&self, path: &Path) -> bool {
        self.0.state.borrow().denied.iter().any(|d| path.starts_with(d))
    }

    fn is_v2_root(&self, dir: &Path) -> bool {
        dir == self.root()
    }

    fn members(&self, dir: &Path) -> Vec<i32> {
        super::procs(self, dir)
    }

    fn end_process(&self, pid: i32) {
        self.leave(pid);
        self.0.state.borrow_mut().processes.remove(&pid);
    }

    fn subtree_control(&self, dir: &Path, text: &str) -> io::Result<()> {
        let file = dir.join("cgroup.subtree_control");
        let mut enabled: Vec<String> = self.get(&file).split_ascii_whitespace().map(str::to_string).collect();
        let available = self.get(&dir.join("cgroup.controllers"));
        for token in text.split_ascii_whitespace() {
            let (on, name) = token.split_at(1);
            if !available.split_ascii_whitespace().any(|c| c == name) {
                return Err(err(libc::ENOENT));
            }
            match on {
                "+" if !enabled.iter().any(|c| c == name) => enabled.push(name.to_string()),
                "-" => {
                    for sub in self.subdirs(dir)? {
                        if self
                            .get(&dir.join(sub).join("cgroup.subtree_control"))
                            .split_ascii_whitespace()
                            .any(|c| c == name)
                        {
                            return Err(err(libc::EBUSY));
                        }
                    }
                    enabled.retain(|c| c != name);
                }
                "+" => {}
                _ => return Err(err(libc::EINVAL)),
            }
        }
        if !enabled.is_empty() && !self.is_v2_root(dir) && !self.members(dir).is_empty() {
            return Err(err(libc::EBUSY)); // no internal processes
        }
        let text = canonical(&enabled);
        put(&file, &text);
        for sub in self.subdirs(dir)? {
            let child = dir.join(sub);
            put(&child.join("cgroup.controllers"), &text);
            // As the kernel does: a controller enabled above makes its files in the groups below.
            if enabled.iter().any(|c| c == "cpu") && !self.exists(&child.join("cpu.max")) {
                put(&child.join("cpu.max"), "max 100000");
            }
        }
        Ok(())
    }

    fn procs_write(&self, dir: &Path, text: &str) -> io::Result<()> {
        let pid = match text.trim() {
            "0" => self.own_pid(),
            other => other.parse().map_err(|_| err(libc::EINVAL))?,
        };
        if !self.0.state.borrow().processes.contains_key(&pid) {
            return Err(err(libc::ESRCH));
        }
        if !self.0.v1 && !self.is_v2_root(dir) && !self.get(&dir.join("cgroup.subtree_control")).is_empty() {
            return Err(err(libc::EBUSY));
        }
        self.enter(dir, pid);
        Ok(())
    }

    fn populate(&self, dir: &Path) {
        put(&dir.join("cgroup.procs"), "");
        if self.0.v1 {
            put(&dir.join("tasks"), "");
            let hierarchy = dir.strip_prefix(self.root()).ok().and_then(|p| p.components().next());
            let hierarchy = hierarchy.map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
            let oom_control = if self.0.state.borrow().no_oom_kill_counter {
                "oom_kill_disable 0\nunder_oom 0\n"
            } else {
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
            };
            let files: &[(&str, &str)] = match hierarchy.as_str() {
                "memory" => &[
                    ("memory.limit_in_bytes", "9223372036854771712"),
                    ("memory.memsw.limit_in_bytes", "9223372036854771712"),
                    ("memory.usage_in_bytes", "0"),
                    ("memory.max_usage_in_bytes", "0"),
                    ("memory.oom_control", oom_control),
                    ("memory.failcnt", "0"),
                ],
                "cpuacct" => &[
                    ("cpuacct.usage", "0"),
                    ("cpuacct.usage_all", "cpu user system\n0 0 0\n"),
                    ("cpuacct.usage_user", "0"),
                    ("cpuacct.usage_sys", "0"),
                    ("cpuacct.stat", "user 0\nsystem 0\n"),
                ],
                "pids" => &[("pids.max", "max"), ("pids.current", "0"), ("pids.events", "max 0\n"), ("pids.peak", "0")],
                "freezer" => &[("freezer.state", "THAWED")],
                "cpu" => &[("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "-1")],
                // As the kernel makes a cpuset group: empty, so that no task may join before both are written.
                "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
                _ => &[],
            };
            for (name, text) in files {
                put(&dir.join(name), text);
            }
            return;
        }
        let parent = dir.parent().expect("a parent group");
        let controllers = self.get(&parent.join("cgroup.subtree_control"));
        put(&dir.join("cgroup.type"), "domain");
        put(&dir.join("cgroup.controllers"), &controllers);
        put(&dir.join("cgroup.subtree_control"), "");
        put(&dir.join("cgroup.events"), "populated 0\nfrozen 0\n");
        put(&dir.join("cgroup.freeze"), "0");
        if !self.0.state.borrow().no_cgroup_kill {
            put(&dir.join("cgroup.kill"), "");
        }
        put(&dir.join("cpu.stat"), "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
        let has = |c: &str| controllers.split_ascii_whitespace().any(|x| x == c);
        if has("memory") {
            let events = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n";
            for (name, text) in [
                ("memory.max", "max"),
                ("memory.current", "0"),
                ("memory.peak", "0"),
                ("memory.swap.max", "max"),
                ("memory.oom.group", "0"),
                ("memory.events", events),
                ("memory.events.local", events),
            ] {
                put(&dir.join(name), text);
            }
        }
        if has("cpu") {
            put(&dir.join("cpu.max"), "max 100000");
        }
        if has("pids") {
            for (name, text) in
                [("pids.max", "max"), ("pids.current", "0"), ("pids.events", "max 0\n"), ("pids.peak", "0")]
            {
                put(&dir.join(name), text);
            }
        }
    }
}

impl Host for Fake {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, text: &str) -> io::Result<()> {
        if self.denied(path) {
            return Err(err(libc::EACCES));
        }
        if !path.is_file() {
            return Err(err(libc::ENOENT));
        }
        let dir = path.parent().expect("a group");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match name.as_str() {
            "cgroup.subtree_control" => self.subtree_control(dir, text),
            "cgroup.procs" => self.procs_write(dir, text),
            "cgroup.kill" => {
                self.0.state.borrow_mut().kills += 1;
                for pid in super::procs_below(self, dir) {
                    self.end_process(pid);
                }
                Ok(())
            }
            "cgroup.freeze" => {
                let frozen = text.trim() == "1";
                if frozen {
                    self.0.state.borrow_mut().frozen.push(dir.to_path_buf());
                }
                put(path, text.trim());
                put(&dir.join("cgroup.events"), &format!("populated 0\nfrozen {}\n", u8::from(frozen)));
                Ok(())
            }
            "freezer.state" => {
                if text.trim() == "FROZEN" {
                    self.0.state.borrow_mut().frozen.push(dir.to_path_buf());
                }
                put(path, text.trim());
                Ok(())
            }
            _ => {
                put(path, text.trim());
                Ok(())
            }
        }
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        let parent = path.parent().ok_or_else(|| err(libc::EINVAL))?;
        if self.denied(parent) {
            return Err(err(libc::EACCES));
        }
        std::fs::create_dir(path)?;
        self.populate(path);
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        if path.parent().is_some_and(|p| self.denied(p)) {
            return Err(err(libc::EACCES));
        }
        if !path.is_dir() {
            return Err(err(libc::ENOENT));
        }
        if !self.members(path).is_empty() || !self.subdirs(path)?.is_empty() {
            return Err(err(libc::EBUSY));
        }
        std::fs::remove_dir_all(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(path)?
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn writable(&self, path: &Path) -> bool {
        path.exists() && !self.denied(path)
    }

    fn open_for_write(&self, path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new().write(true).open(path)
    }

    fn signal(&self, pid: i32, signal: Sig) -> bool {
        let alive = self.0.state.borrow().processes.contains_key(&pid);
        self.0.state.borrow_mut().signals.push((pid, signal));
        if alive && signal == Sig::KILL {
            self.end_process(pid);
        }
        alive
    }

    fn own_pid(&self) -> i32 {
        self.0.state.borrow().me
    }

    fn uid(&self) -> u32 {
        self.0.state.borrow().uid
    }

    fn start_time(&self, pid: i32) -> io::Result<u64> {
        self.0.state.borrow().processes.get(&pid).copied().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn pid_namespace(&self) -> u64 {
        4_026_531_836
    }

    fn proc_is_own(&self) -> bool {
        !self.0.state.borrow().foreign_proc
    }

    fn try_lock(&self, dir: &Path) -> io::Result<Option<File>> {
        let swept = self.0.state.borrow_mut().swept_before_lock.take_if(|d| d == dir);
        if let Some(dir) = swept {
            self.rmdir(&dir)?;
        }
        super::flock_dir(dir)
    }

    fn pause(&self, _duration: Duration) {}
}
