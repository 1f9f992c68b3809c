//! The cgroup backends' common ground: finding the hierarchies and pynish's own groups, naming and removing the
//! groups a run creates, and sweeping the groups an earlier pynish left behind when it was SIGKILLed.
//!
//! Nothing here assumes a path: the mounts come from `/proc/self/mountinfo` and pynish's group in each hierarchy
//! from `/proc/self/cgroup`. Every file access and every signal goes through `Host`, so that the group protocol
//! of `v2` (and `v1`) also runs, in unit tests, against a fake cgroup tree in a temporary directory.
//!
//! A run's groups are named `pynish-<pid>-ns<pidns>-<start>`: pynish's pid, the inode number of its pid
//! namespace and its start time in clock ticks after boot (field 22 of `/proc/self/stat`), so that two runs
//! that are both pid 2 in two namespaces sharing a hierarchy get two names. (The `ns` also keeps pynish 0.1,
//! which named groups `pynish-<pid>-<start>` and would judge this one's owner by a pid of the wrong namespace,
//! from sweeping them: it leaves names it cannot read alone.) Every run sweeps the stale groups next to
//! where it creates its own: it kills their members (the tree of a pynish that died by SIGKILL) and removes them.
//! A run holds a `flock` on each group it made for as long as it lives (the lock goes when the process does,
//! however it dies), so a group whose lock is held is never stale, whatever namespace its owner runs in; see
//! `claim_stale` for the rest of the rule.

pub mod enclosing;
pub mod v1;
pub mod v2;

use crate::signals::Sig;
use anyhow::{Context, Result};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The machine's event counters (`oom_kill`: OOM kills of every cause since boot).
pub const VMSTAT: &str = "/proc/vmstat";
/// Start of the name of every group a run creates.
pub const PREFIX: &str = "pynish-";
/// Suffix of the leaf a run moves pynish itself into under cgroup v2 (see `v2`).
pub const SUPERVISOR_SUFFIX: &str = "-supervisor";
/// How long a group whose last members are still exiting is retried before pynish gives up on removing it.
pub const REMOVE_PATIENCE: Duration = Duration::from_secs(2);
/// How long pynish waits for a group to freeze before it kills its members anyway.
const FREEZE_PATIENCE: Duration = Duration::from_millis(200);
/// How long a stale group's members are killed and its removal retried before pynish gives up on it.
const SWEEP_PATIENCE: Duration = Duration::from_secs(2);
/// How long a run keeps making its group again while a sweep in another pid namespace removes it (see
/// `create_group`).
const CREATE_PATIENCE: Duration = Duration::from_secs(2);

/// What the backends need from the machine: cgroup files, processes, and time to wait.
pub trait Host {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes `text` to an existing file (control files are never created by writing).
    fn write(&self, path: &Path, text: &str) -> io::Result<()>;
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// Names of the subdirectories (child groups) of `path`.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    /// Whether this process may write `path` (access(2) W_OK).
    fn writable(&self, path: &Path) -> bool;
    /// `cgroup.procs` opened for writing, for the child to join before exec.
    fn open_for_write(&self, path: &Path) -> io::Result<File>;
    /// A group's directory opened (close-on-exec) for a child to be born in it (`clone3`).
    fn open_group(&self, dir: &Path) -> io::Result<File> {
        File::open(dir)
    }
    /// Sends `signal` to `pid`; true if it was delivered.
    fn signal(&self, pid: i32, signal: Sig) -> bool;
    fn own_pid(&self) -> i32;
    fn uid(&self) -> u32;
    /// Start time of a process, in clock ticks after boot; an error of kind `NotFound` when there is none.
    fn start_time(&self, pid: i32) -> io::Result<u64>;
    /// The inode number of pynish's pid namespace (0 where unknown).
    fn pid_namespace(&self) -> u64;
    /// Whether `/proc/<pid>` means the process with that pid in pynish's namespace (see `procfs`), so that
    /// `start_time` of another process can be trusted.
    fn proc_is_own(&self) -> bool;
    /// Takes the exclusive lock on group `dir` without waiting: Ok(None) when another process holds it.
    fn try_lock(&self, dir: &Path) -> io::Result<Option<File>> {
        flock_dir(dir)
    }
    fn pause(&self, duration: Duration);
}

/// An exclusive, non-blocking `flock` on a directory, held as long as the returned file is open (the file is
/// close-on-exec: the command does not inherit it); Ok(None) when another open file holds it.
pub fn flock_dir(dir: &Path) -> io::Result<Option<File>> {
    use std::os::fd::AsRawFd;
    let file = File::open(dir)?;
    // SAFETY: flock takes a descriptor we own and an integer operation; it touches no memory of ours.
    if unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(nix::libc::EWOULDBLOCK) { Ok(None) } else { Err(error) }
}

/// The real machine.
pub struct Kernel;

impl Host for Kernel {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, text: &str) -> io::Result<()> {
        use std::io::Write;
        // One write(2) per call: the kernel parses each write of a control file as a whole.
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.write_all(text.as_bytes())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn writable(&self, path: &Path) -> bool {
        nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
    }

    fn open_for_write(&self, path: &Path) -> io::Result<File> {
        // std opens with O_CLOEXEC: the descriptor is written in pre_exec and must not reach the command.
        std::fs::OpenOptions::new().write(true).open(path)
    }

    fn signal(&self, pid: i32, signal: Sig) -> bool {
        pid > 0 && signal.send(pid)
    }

    fn own_pid(&self) -> i32 {
        std::process::id() as i32
    }

    fn uid(&self) -> u32 {
        nix::unistd::getuid().as_raw()
    }

    fn start_time(&self, pid: i32) -> io::Result<u64> {
        // pynish's own through /proc/self: right even under a /proc of another pid namespace.
        let path = if pid == self.own_pid() { "/proc/self/stat".to_string() } else { format!("/proc/{pid}/stat") };
        let stat = std::fs::read_to_string(path).map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ESRCH) => io::Error::from(io::ErrorKind::NotFound), // ended while being read
            _ => e,
        })?;
        parse_start_time(&stat).ok_or_else(|| io::Error::other("unreadable /proc/PID/stat"))
    }

    fn pid_namespace(&self) -> u64 {
        crate::procfs::pid_namespace().unwrap_or(0)
    }

    fn proc_is_own(&self) -> bool {
        crate::procfs::is_own()
    }

    fn pause(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Field 22 (starttime) of `/proc/PID/stat`, counted after the command name's last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state).
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// The name of this run's groups.
pub fn run_name(host: &dyn Host) -> String {
    let pid = host.own_pid();
    format!("{PREFIX}{pid}-ns{}-{}", host.pid_namespace(), host.start_time(pid).unwrap_or(0))
}

/// Who made a group, as its name (by `run_name`, with or without a suffix) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: i32,
    start: u64,
    /// None in the names of pynish 0.1, which did not say.
    pid_namespace: Option<u64>,
}

fn owner(name: &str) -> Option<Owner> {
    let mut parts = name.strip_prefix(PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let mut next = parts.next()?;
    let pid_namespace = match next.strip_prefix("ns") {
        Some(ns) => {
            next = parts.next()?;
            Some(ns.parse().ok()?)
        }
        None => None,
    };
    let start = next.parse().ok()?;
    Some(Owner { pid, start, pid_namespace })
}

/// Whether group `dir`, named `name`, is a stale run group; if so, its lock (when it could be taken), to hold
/// while the group is destroyed.
///
/// A group whose lock is held belongs to a live run, in whatever pid namespace. A free lock alone does not prove
/// the owner gone: a group just made is not locked yet. So where the owner can be looked up (its name gives
/// this pid namespace, and `/proc` is this namespace's), it must also be gone: no process has its pid, or one
/// that started at another time (a process pynish may not look at, under `hidepid`, counts as the owner). Then a
/// held lock is another run's sweep at work, which is waited for, so that a run starts only once the stale
/// groups beside it are gone. The owner of another namespace's group cannot be looked up from here: its free
/// lock decides, and should its owner be making it right now, the owner makes it again (`create_group`). A group
/// named without a namespace (by pynish 0.1, which took no lock) is stale only when its owner can be looked up
/// and is gone.
fn claim_stale(host: &dyn Host, dir: &Path, name: &str) -> Option<Option<File>> {
    let owner = owner(name)?;
    let here = owner.pid_namespace.is_none_or(|ns| ns == host.pid_namespace());
    let gone = (here && host.proc_is_own()).then(|| match host.start_time(owner.pid) {
        Ok(started) => started != owner.start,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    });
    if gone == Some(false) {
        return None;
    }
    let patience = if gone == Some(true) { SWEEP_PATIENCE } else { Duration::ZERO };
    let lock = match lock_within(host, dir, patience) {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => return None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None, // swept meanwhile
        Err(_) => None, // the lock says nothing (the directory cannot be opened)
    };
    match gone {
        Some(_) => Some(lock),
        None => (lock.is_some() && owner.pid_namespace.is_some()).then_some(lock),
    }
}

/// `try_lock`, tried again while the lock is held, for up to `patience`.
fn lock_within(host: &dyn Host, dir: &Path, patience: Duration) -> io::Result<Option<File>> {
    let deadline = Instant::now() + patience;
    let mut wait = Duration::from_micros(200);
    loop {
        match host.try_lock(dir)? {
            Some(lock) => return Ok(Some(lock)),
            None if Instant::now() >= deadline => return Ok(None),
            None => {}
        }
        host.pause(wait);
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}

/// Makes a run's group `dir` and takes its lock, held until the group is removed (see `claim_stale`). A sweep
/// in another pid namespace may remove the group between the mkdir and the lock (it cannot look the owner up,
/// and the lock is still free then): the group is then made again.
pub fn create_group(host: &dyn Host, dir: &Path) -> io::Result<File> {
    let deadline = Instant::now() + CREATE_PATIENCE;
    let mut wait = Duration::from_micros(200);
    let mut made = false;
    loop {
        match host.mkdir(dir) {
            Ok(()) => made = true,
            // Made by this loop, and not removed yet by the sweep that holds its lock.
            Err(e) if made && e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match host.try_lock(dir) {
            // Still the group this loop made, not a removed one: a removed group's files are gone.
            Ok(Some(lock)) if host.exists(&dir.join("cgroup.procs")) => return Ok(lock),
            Ok(_) => {} // removed, or being removed by the sweep that holds the lock
            Err(e) if e.kind() == io::ErrorKind::NotFound => {} // removed before it could be opened
            Err(e) => {
                let _ = host.rmdir(dir);
                return Err(e);
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other("removed again and again by other runs' sweeps"));
        }
        host.pause(wait);
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The path inside the hierarchy that is mounted (`/` unless a subtree is bind-mounted).
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup mounts in a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        if fields.len() < dash + 4 || dash < 6 {
            continue;
        }
        let fstype = fields[dash + 1];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        mounts.push(Mount {
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: fstype.to_string(),
            super_options: fields[dash + 3].split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

/// One line of `/proc/self/cgroup`: the controllers of a hierarchy (empty for cgroup v2) and the group's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                controllers: controllers.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// Where a group of a hierarchy lives in the file system: the mount point plus the group's path below the
/// mounted root; None when the group is outside what is mounted.
pub fn group_dir(mount: &Mount, path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    Some(mount.mount_point.join(rest.trim_start_matches('/')))
}

/// The cgroup hierarchies of this process, as found in `/proc/self`.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The cgroup2 mount and pynish's group in it.
    pub v2: Option<(Mount, PathBuf)>,
    /// Each cgroup v1 hierarchy: its controllers and pynish's group in it.
    pub v1: Vec<v1::Hierarchy>,
}

impl Discovery {
    pub fn from_proc() -> Result<Discovery> {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
        Discovery::with_cgroup(&cgroup)
    }

    /// As `from_proc`, with `/proc/self/cgroup` already read into `cgroup`.
    pub fn with_cgroup(cgroup: &str) -> Result<Discovery> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
        Ok(Discovery::parse(&mountinfo, cgroup))
    }

    pub fn parse(mountinfo: &str, cgroup: &str) -> Discovery {
        let mounts = parse_mountinfo(mountinfo);
        let members = parse_proc_cgroup(cgroup);
        let mut found = Discovery::default();
        for mount in &mounts {
            if mount.fstype == "cgroup2" {
                if found.v2.is_some() {
                    continue;
                }
                let dir = members.iter().find(|m| m.controllers.is_empty()).and_then(|m| group_dir(mount, &m.path));
                if let Some(dir) = dir {
                    found.v2 = Some((mount.clone(), dir));
                }
                continue;
            }
            // A v1 hierarchy: its controllers are among the super options; /proc/self/cgroup names it by the
            // same list.
            let Some(member) = members
                .iter()
                .find(|m| !m.controllers.is_empty() && m.controllers.iter().all(|c| mount.super_options.contains(c)))
            else {
                continue;
            };
            if found.v1.iter().any(|h| h.controllers == member.controllers) {
                continue; // the same hierarchy mounted twice
            }
            if let Some(dir) = group_dir(mount, &member.path) {
                found.v1.push(v1::Hierarchy { controllers: member.controllers.clone(), current: dir });
            }
        }
        found
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1_with(&self, controller: &str) -> Option<&v1::Hierarchy> {
        self.v1.iter().find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// The CFS period pynish uses for `--cpu-quota`, in microseconds: the kernel's default, short enough that a
/// throttled tree runs in slices of at most 100 ms, long enough to cost nothing.
const CPU_PERIOD_US: u64 = 100_000;

/// `--cpu-quota CORES` as (quota, period) in microseconds, as cpu.max and cpu.cfs_quota_us take them.
pub fn quota_and_period(cores: f64) -> (u64, u64) {
    let period = CPU_PERIOD_US as f64;
    // The CLI took only `limits::CPU_QUOTA_CORES`; the clamp keeps a library caller within the kernel's bounds.
    let (least, most) = crate::limits::CPU_QUOTA_CORES;
    let quota = (cores.clamp(least, most) * period).round();
    (quota as u64, CPU_PERIOD_US)
}

/// The numbers in a `cgroup.procs` file.
pub fn procs(host: &dyn Host, dir: &Path) -> Vec<i32> {
    host.read(&dir.join("cgroup.procs"))
        .map(|text| text.split_ascii_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Members of `dir` and of every group below it.
pub fn procs_below(host: &dyn Host, dir: &Path) -> Vec<i32> {
    let mut found = procs(host, dir);
    for sub in host.subdirs(dir).unwrap_or_default() {
        found.extend(procs_below(host, &dir.join(sub)));
    }
    found
}

/// The value of `key` in a flat keyed file (`oom_kill 3`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_ascii_whitespace();
        (parts.next() == Some(key)).then(|| parts.next()?.parse().ok())?
    })
}

/// A single-number control file; `max` reads as `u64::MAX`.
pub fn read_number(host: &dyn Host, path: &Path) -> Result<u64> {
    let text = host.read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse().with_context(|| format!("unexpected content {text:?} in {}", path.display()))
}

/// Whether group `dir`'s process limit was ever reached: `pids.peak` at `pids.max` (true when either is
/// unreadable). The kernel raises the high-water mark only for a fork it lets through, so a fork refused by this
/// group's own limit needs the group at its limit: a refused fork counted here with the peak below the limit was
/// refused by an enclosing group's (v1 counts it in the forking task's group, wherever the limit was).
pub fn process_limit_reached(host: &dyn Host, dir: &Path) -> bool {
    match (read_number(host, &dir.join("pids.peak")), read_number(host, &dir.join("pids.max"))) {
        (Ok(peak), Ok(max)) => peak >= max,
        _ => true,
    }
}

/// Whether a group below `dir` (made after the run started, so counting from zero: a nested run's) counted a
/// refused fork. Before Linux 6.12 on v2, and on v1 always, the kernel counts a refused fork in the forking
/// task's own group, wherever the limit was: a nested run's fork refused by this run's limit counts in the nested
/// run's group, and is seen only while that group exists (each sample).
pub fn refused_below(host: &dyn Host, dir: &Path) -> bool {
    host.subdirs(dir).unwrap_or_default().into_iter().any(|sub| {
        let sub = dir.join(sub);
        read_keyed(host, &sub.join("pids.events"), "max").is_some_and(|n| n > 0) || refused_below(host, &sub)
    })
}

/// `keyed` on a file; None when the file or the key is missing.
pub fn read_keyed(host: &dyn Host, path: &Path, key: &str) -> Option<u64> {
    keyed(&host.read(path).ok()?, key)
}

pub fn write_file(host: &dyn Host, path: &Path, text: &str) -> Result<()> {
    host.write(path, text).with_context(|| format!("cannot write {text:?} to {}", path.display()))
}

/// Sends `signal` to every member of `dir` and below; returns those that received it.
pub fn signal_members(host: &dyn Host, dir: &Path, signal: Sig, signalled_group: Option<i32>) -> Vec<i32> {
    procs_below(host, dir)
        .into_iter()
        .filter(|&pid| super::in_group(pid, signalled_group) || super::deliver(pid, signal, |p, s| host.signal(p, s)))
        .collect()
}

/// How a group is frozen, when it can be.
enum Freezer<'a> {
    /// cgroup v2: `cgroup.freeze`, confirmed by `frozen 1` in `cgroup.events`.
    V2(&'a Path),
    /// cgroup v1: `freezer.state`, confirmed by reading `FROZEN` back.
    V1(&'a Path),
    None,
}

impl Freezer<'_> {
    fn of<'a>(host: &dyn Host, dir: &'a Path) -> Freezer<'a> {
        if host.exists(&dir.join("cgroup.freeze")) {
            Freezer::V2(dir)
        } else if host.exists(&dir.join("freezer.state")) {
            Freezer::V1(dir)
        } else {
            Freezer::None
        }
    }

    fn freeze(&self, host: &dyn Host) {
        let deadline = Instant::now() + FREEZE_PATIENCE;
        let frozen = || match self {
            Freezer::V2(dir) => read_keyed(host, &dir.join("cgroup.events"), "frozen") == Some(1),
            Freezer::V1(dir) => host.read(&dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN"),
            Freezer::None => true,
        };
        let written = match self {
            Freezer::V2(dir) => host.write(&dir.join("cgroup.freeze"), "1"),
            Freezer::V1(dir) => host.write(&dir.join("freezer.state"), "FROZEN"),
            Freezer::None => return,
        };
        if written.is_err() {
            return;
        }
        // Freezing is asynchronous; a member in uninterruptible sleep can delay it, and is then killed unfrozen.
        let mut wait = Duration::from_micros(100);
        while !frozen() && Instant::now() < deadline {
            if let Freezer::V1(dir) = self {
                // v1 moves from FREEZING to FROZEN only when the state is asked for again.
                let _ = host.write(&dir.join("freezer.state"), "FROZEN");
            }
            host.pause(wait);
            wait = (wait * 2).min(Duration::from_millis(10));
        }
    }

    fn thaw(&self, host: &dyn Host) {
        let _ = match self {
            Freezer::V2(dir) => host.write(&dir.join("cgroup.freeze"), "0"),
            Freezer::V1(dir) => host.write(&dir.join("freezer.state"), "THAWED"),
            Freezer::None => Ok(()),
        };
    }
}

/// Kills every member of `dir` and below with nothing escaping: `cgroup.kill` where the kernel has it (5.14+),
/// else freeze, SIGKILL every member, thaw (a frozen member cannot fork, so none is missed). `freezer_dir` is
/// the group to freeze (under v1 it is in the freezer hierarchy); without a freezer the members are signalled
/// as they are, and a fork in flight can add one: callers repeat until the group is empty. Returns the members
/// killed.
pub fn kill_group(host: &dyn Host, dir: &Path, freezer_dir: Option<&Path>) -> Vec<i32> {
    let members = procs_below(host, dir);
    if members.is_empty() {
        return members;
    }
    if host.exists(&dir.join("cgroup.kill")) && host.write(&dir.join("cgroup.kill"), "1").is_ok() {
        return members;
    }
    let freezer = Freezer::of(host, freezer_dir.unwrap_or(dir));
    freezer.freeze(host);
    // Listed again once frozen: members forked while the group froze are in.
    let members = procs_below(host, dir);
    for &pid in &members {
        host.signal(pid, Sig::KILL);
    }
    freezer.thaw(host);
    members
}

/// Removes an empty group, retrying while its last members are still exiting; a group already gone is fine.
pub fn remove_group(host: &dyn Host, dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + REMOVE_PATIENCE;
    let mut wait = Duration::from_micros(200);
    loop {
        match host.rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        host.pause(wait);
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}

/// Kills the members of `dir` and removes it, killing again while members remain (killed members take a moment
/// to exit; a fork in flight adds one).
pub fn kill_and_remove(host: &dyn Host, dir: &Path, freezer_dir: Option<&Path>, patience: Duration) -> io::Result<()> {
    let deadline = Instant::now() + patience;
    let mut wait = Duration::from_micros(200);
    loop {
        kill_group(host, dir, freezer_dir);
        match host.rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() != Some(nix::libc::EBUSY) || Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        host.pause(wait);
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}

/// Kills everything in a group tree and removes it, deepest groups first.
pub fn destroy_tree(host: &dyn Host, dir: &Path, freezer_dir: Option<&Path>) -> io::Result<()> {
    kill_group(host, dir, freezer_dir);
    for sub in host.subdirs(dir).unwrap_or_default() {
        destroy_tree(host, &dir.join(&sub), freezer_dir.map(|f| f.join(&sub)).as_deref())?;
    }
    kill_and_remove(host, dir, freezer_dir, SWEEP_PATIENCE)
}

/// Removes the stale run groups directly under `parent` (see the module docs); returns the groups removed.
pub fn sweep(host: &dyn Host, parent: &Path, freezer_parent: Option<&Path>) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(names) = host.subdirs(parent) else { return removed };
    for name in names.iter().filter(|n| n.starts_with(PREFIX)) {
        let dir = parent.join(name);
        // Held until the group is gone, so that no other sweep works on it meanwhile.
        let Some(_lock) = claim_stale(host, &dir, name) else { continue };
        if destroy_tree(host, &dir, freezer_parent.map(|f| f.join(name)).as_deref()).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Sweeps every place a run may have created groups, in every hierarchy this process is in: the current group
/// of each hierarchy, and under cgroup v2 the shared `pynish` group of each ancestor (see `v2`).
pub fn sweep_everywhere() {
    let Ok(found) = Discovery::from_proc() else { return };
    let host = Kernel;
    if let Some((mount, current)) = &found.v2 {
        sweep(&host, current, None);
        let mut dir = Some(current.as_path());
        while let Some(d) = dir {
            let shared = d.join(v2::SHARED);
            if host.exists(&shared) {
                sweep(&host, &shared, None);
                // Empty now unless another run uses it.
                let _ = host.rmdir(&shared);
            }
            if d == mount.mount_point {
                break;
            }
            dir = d.parent();
        }
    }
    let freezer = found.v1_with("freezer").map(|h| h.current.clone());
    for hierarchy in &found.v1 {
        let freezer_parent = (!hierarchy.controllers.iter().any(|c| c == "freezer")).then_some(freezer.as_deref());
        sweep(&host, &hierarchy.current, freezer_parent.flatten());
    }
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_quota_is_microseconds_per_period() {
        assert_eq!(quota_and_period(0.5), (50_000, 100_000));
        assert_eq!(quota_and_period(1.5), (150_000, 100_000));
        assert_eq!(quota_and_period(0.001), (1_000, 100_000), "the kernel's minimum");
        assert_eq!(quota_and_period(1e30).0, 102_400_000, "no throttle, and a number the kernel takes");
    }

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:39 /sub /mnt/with\\040space rw - cgroup2 cgroup2 rw
";

    const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/a
4:memory:/process_api/2322e2
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn mountinfo_keeps_cgroup_mounts_only() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(mounts[0].super_options.contains(&"cpuacct".to_string()));
        assert_eq!(mounts[5].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(mounts[5].root, "/sub");
    }

    #[test]
    fn discovery_finds_groups_per_hierarchy() {
        let found = Discovery::parse(MOUNTINFO, PROC_CGROUP);
        let (mount, dir) = found.v2.clone().unwrap();
        assert_eq!(mount.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(found.v1_with("memory").unwrap().current, PathBuf::from("/sys/fs/cgroup/memory/process_api/2322e2"));
        assert_eq!(found.v1_with("cpuacct").unwrap().current, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(found.v1_with("pids").unwrap().current, PathBuf::from("/sys/fs/cgroup/pids/a"));
        assert!(found.v1_with("freezer").is_none());
    }

    #[test]
    fn group_dir_respects_the_mounted_root() {
        let mount =
            Mount { root: "/sub".into(), mount_point: "/m".into(), fstype: "cgroup2".into(), super_options: vec![] };
        assert_eq!(group_dir(&mount, "/sub/x/y"), Some(PathBuf::from("/m/x/y")));
        assert_eq!(group_dir(&mount, "/sub"), Some(PathBuf::from("/m")));
        assert_eq!(group_dir(&mount, "/subway"), None);
        assert_eq!(group_dir(&mount, "/other"), None);
    }

    #[test]
    fn start_time_is_field_22() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0 98765 1000 55";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert!(Kernel.start_time(std::process::id() as i32).is_ok());
        let gone = Kernel.start_time(i32::MAX).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn run_names_identify_their_owner() {
        let parent = tempfile::tempdir().unwrap();
        let stale = |name: &str| {
            let dir = parent.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            claim_stale(&Kernel, &dir, name).is_some()
        };
        let name = run_name(&Kernel);
        assert!(!stale(&name), "{name}");
        assert!(!stale(&format!("{name}{SUPERVISOR_SUFFIX}")));
        let Owner { pid, start, pid_namespace } = owner(&name).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert_eq!(pid_namespace, crate::procfs::pid_namespace());
        let ns = pid_namespace.unwrap();
        assert!(stale(&format!("{PREFIX}{pid}-ns{ns}-{}", start + 1)));
        assert!(stale(&format!("{PREFIX}{pid}-ns{ns}-{}{SUPERVISOR_SUFFIX}", start + 1)));
        assert!(stale(&format!("{PREFIX}{pid}-{}", start + 1)), "an older pynish's name, owner gone");
        assert!(!stale(&format!("{PREFIX}{pid}-{start}")), "an older pynish's name, owner alive");
        assert!(!stale("pynish")); // not a run's group
        assert!(!stale("other-1-2"));
        assert!(!stale(&format!("{PREFIX}{pid}-nsX-1")));
    }

    /// A live run in another pid namespace that shares the hierarchy: its pid means another process here.
    #[test]
    fn another_namespaces_group_is_stale_only_when_its_lock_is_free() {
        let fake = fake::Fake::v1(&["memory"]);
        let parent = fake.root().join("memory");
        fake.add_process(2, 500); // this namespace's pid 2, not the other run's pynish
        let other_ns = fake.pid_namespace() + 1;
        let live = parent.join(format!("{PREFIX}2-ns{other_ns}-900"));
        let dead = parent.join(format!("{PREFIX}2-ns{other_ns}-901"));
        let old = parent.join(format!("{PREFIX}3-902"));
        for dir in [&live, &dead, &old] {
            fake.mkdir(dir).unwrap();
        }
        fake.enter(&live, 4_000_201);
        fake.enter(&dead, 4_000_202); // a daemon that outlived its SIGKILLed pynish
        fake.enter(&old, 4_000_203);
        let held = flock_dir(&live).unwrap().expect("the live run's lock");
        // The older pynish's name is taken to mean this namespace, as that pynish did: pid 3 is gone here.
        assert_eq!(sweep(&fake, &parent, None), vec![dead.clone(), old.clone()]);
        assert!(fake.exists(&live) && procs(&fake, &live) == vec![4_000_201]);
        assert_eq!(fake.signals(Sig::KILL), vec![4_000_202, 4_000_203]);
        drop(held);

        // Under a /proc of another namespace not even this namespace's owners can be looked up: the lock decides,
        // and a name without a namespace (and so without a lock) is left alone.
        fake.with_foreign_proc();
        let mine = parent.join(format!("{PREFIX}2-ns{}-500", fake.pid_namespace()));
        fake.mkdir(&mine).unwrap();
        fake.mkdir(&old).unwrap();
        let held = flock_dir(&mine).unwrap().expect("the live run's lock");
        assert_eq!(sweep(&fake, &parent, None), vec![live.clone()]);
        assert!(fake.exists(&mine) && fake.exists(&old));
        drop(held);
    }

    #[test]
    fn a_group_removed_before_its_lock_is_taken_is_made_again() {
        let fake = fake::Fake::v1(&["memory"]);
        let dir = fake.root().join("memory").join(run_name(&fake));
        fake.sweep_before_next_lock(&dir);
        let lock = create_group(&fake, &dir).unwrap();
        assert!(fake.exists(&dir.join("cgroup.procs")));
        assert!(flock_dir(&dir).unwrap().is_none(), "the run holds its group's lock");
        drop(lock);
        assert!(flock_dir(&dir).unwrap().is_some());
    }

    #[test]
    fn keyed_files() {
        let text = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n";
        assert_eq!(keyed(text, "oom_kill"), Some(2));
        assert_eq!(keyed(text, "oom"), Some(1));
        assert_eq!(keyed(text, "missing"), None);
    }
}
