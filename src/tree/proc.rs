//! The fallback backend: measure the tree from `/proc`, enforce by signals, with rlimits as the kernel's backstop.
//!
//! The tree is found by walking down from pynish itself through `/proc/PID/task/TID/children`, so a sample costs
//! a few reads per member of the tree, not a scan of every process on the machine. Where the kernel lacks that
//! file (CONFIG_PROC_CHILDREN off) the walk falls back to one scan of `/proc`.
//!
//! CPU time is exact up to the sampling moment: what live members used (their own time plus that of children
//! they have reaped) plus what pynish itself has reaped (`RUSAGE_CHILDREN`). Because pynish is a subreaper,
//! every member that ends is reaped either by its parent in the tree or by pynish, so no CPU second is lost.
//!
//! Under a `/proc` of another pid namespace (see `procfs`) nothing is sampled: CPU comes from reaped usage only,
//! and `refusal` turns away, before anything runs, every limit that would need live samples. The members are
//! still found for signals, by a walk from pynish's own entry there (every number in it is in `/proc`'s
//! namespace) and each member's `NSpid`/`NSpgid`, which give its numbers in pynish's namespace.

use super::{Sample, Tree};
use crate::limits::{LimitKind, Limits, MemoryKind};
use crate::procfs::{self, View};
use crate::signals::Sig;
use anyhow::Result;
use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

/// How old the last PSS sweep may grow before a sample reads it again (see `ProcTree::memory`).
const PSS_REFRESH: Duration = Duration::from_secs(1);
/// Sweeps for a new peak or a refresh wait this many times their last cost since the last one: at most 1/20 of
/// pynish's time (and of a core) goes to them.
const PSS_SHARE_REFRESH: u32 = 20;
/// Sweeps that confirm a limit crossed wait as long as the last one took (at most half of pynish's time): a
/// verdict is due soon, but a tree whose resident sum keeps running past the limit while its pages are shared must
/// not keep pynish sweeping all the time.
const PSS_SHARE_CONFIRM: u32 = 1;

/// One member of the tree as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: i32,
    pgrp: i32,
    /// Own user and system time, in clock ticks.
    own_ticks: (u64, u64),
    /// User and system time of the children it has waited for, in clock ticks.
    reaped_ticks: (u64, u64),
    rss_pages: u64,
    /// Threads of its thread group still counted by the kernel (an exited leader is counted until it is reaped).
    threads: u64,
    zombie: bool,
}

impl Stat {
    /// Whether the process has ended, all of it: a zombie whose thread group has no other thread. Its pid stays
    /// taken until it is reaped, so it still counts as a process (as a cgroup's `pids.current` counts it).
    fn ended(&self) -> bool {
        self.zombie && self.threads <= 1
    }

    /// Whether the leader (main thread) has exited (`pthread_exit`) while other threads of the process still run:
    /// `stat` then says `Z`, and shows no memory, but the process, its memory and its children are alive.
    fn leader_gone(&self) -> bool {
        self.zombie && self.threads > 1
    }
}

/// Parses `/proc/PID/stat`; the command name may hold spaces and parentheses, so fields are counted after the
/// last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        own_ticks: (field(14)?, field(15)?),
        reaped_ticks: (field(16)?, field(17)?),
        rss_pages: field(24)?,
        threads: field(20)?,
        zombie: fields.first() == Some(&"Z"),
    })
}

/// Reads a small `/proc` file into `buf` (open, read, close: no size probe, no allocation once `buf` has grown).
fn read_into<'a>(path: &str, buf: &'a mut Vec<u8>) -> Option<&'a str> {
    use std::io::Read;
    buf.clear();
    fs::File::open(path).ok()?.read_to_end(buf).ok()?;
    std::str::from_utf8(buf).ok()
}

fn read_stat(pid: i32, buf: &mut Vec<u8>) -> Option<Stat> {
    parse_stat(read_into(&format!("/proc/{pid}/stat"), buf)?)
}

/// The peak address space of one process, in bytes.
fn read_vm_peak(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The largest address space any live member of the tree below `root` ever had: with `--memory-kind virtual`
/// a command that fails near its RLIMIT_AS has most likely failed to allocate.
pub fn address_space_peak(root: i32) -> u64 {
    if !procfs::is_own() {
        return 0; // `root`'s number means another process there
    }
    descendants(root).into_iter().filter_map(read_vm_peak).max().unwrap_or(0)
}

/// The CPU time (user + system, every thread) `pid` has used, to the nanosecond, from its process CPU clock:
/// `/proc/PID/stat` counts in 10 ms ticks, which a tree of short-lived members rounds to nothing.
fn process_cpu(pid: i32) -> Option<Duration> {
    // The kernel's ABI for another process's CPU clock: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), what
    // clock_getcpuclockid(3) computes (without the extra syscall glibc spends checking the pid).
    let clock = ((!pid) << 3) | 2;
    let mut now = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `now`; an ended process yields an error, not a write.
    (unsafe { nix::libc::clock_gettime(clock, &mut now) } == 0)
        .then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

fn push_pids(text: &str, into: &mut Vec<i32>) {
    into.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<i32>().ok()));
}

/// Children of `pid`, from every thread's `children` file (a child is listed under the thread that forked it);
/// `None` when the kernel does not offer the file.
fn children_of(pid: i32, into: &mut Vec<i32>, buf: &mut Vec<u8>) -> Option<()> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let path = format!("{}/children", task.path().display());
        match read_into(&path, buf) {
            Some(text) => push_pids(text, into),
            None if !std::path::Path::new(&path).exists() && task.path().exists() => return None,
            None => {} // the task ended while we looked
        }
    }
    Some(())
}

/// Calls `visit` with every live descendant of `root` and its `stat`, walking down through the `children`
/// files: a few reads per member of the tree, whatever else runs on the machine. `visit` sees a member before
/// its children are read (so a member signalled there to stop or die cannot add children unseen). The walk ends
/// after `cap` members: a fork bomb grows faster than any walk, which must not chase it. False when the kernel
/// offers no `children` files (CONFIG_PROC_CHILDREN off).
fn walk(root: i32, cap: usize, mut visit: impl FnMut(i32, &Stat)) -> bool {
    let mut buf = Vec::with_capacity(4096);
    let mut queue = Vec::new();
    if children_of(root, &mut queue, &mut buf).is_none() {
        return false;
    }
    let mut i = 0;
    while i < queue.len() && i < cap {
        let pid = queue[i];
        i += 1;
        // A member that ended between the reads simply is not there any more.
        let Some(stat) = read_stat(pid, &mut buf) else { continue };
        visit(pid, &stat);
        if stat.ended() {
            continue;
        }
        if stat.threads <= 1 {
            // Single-threaded (the common case): one file, no directory listing.
            if let Some(text) = read_into(&format!("/proc/{pid}/task/{pid}/children"), &mut buf) {
                push_pids(text, &mut queue);
            }
        } else {
            let _ = children_of(pid, &mut queue, &mut buf);
        }
    }
    true
}

/// The resident set of a process whose leader has exited (see `Stat::leader_gone`), in pages: the leader's own
/// `stat` shows none, any live thread's shows the whole process's.
fn live_thread_rss(pid: i32, buf: &mut Vec<u8>) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&tid| tid != pid)
        .find_map(|tid| parse_stat(read_into(&format!("/proc/{pid}/task/{tid}/stat"), buf)?))
        .filter(|stat| !stat.zombie)
        .map(|stat| stat.rss_pages)
}

/// The proportional set size of `pid` in bytes (`Pss` of `/proc/PID/smaps_rollup`, Linux 4.14+): each page it
/// maps divided by the number of processes that map it, so that a tree's sum counts a copy-on-write page shared by
/// forked members once, as a memory cgroup charges it. Costs a walk of the process's page tables.
fn read_pss(pid: i32, buf: &mut Vec<u8>) -> std::io::Result<u64> {
    use std::io::Read;
    buf.clear();
    fs::File::open(format!("/proc/{pid}/smaps_rollup"))?.read_to_end(buf)?;
    let text = std::str::from_utf8(buf).unwrap_or("");
    // A process whose memory is already released (exiting) shows no `Pss:` line: it holds nothing.
    let kib = text.lines().find_map(|l| l.strip_prefix("Pss:")?.split_ascii_whitespace().next()?.parse::<u64>().ok());
    Ok(kib.unwrap_or(0) * 1024)
}

/// The members' proportional set sizes, in `members`' order. Read children first: a page's share is its size
/// over the processes that map it when it is read, so a parent read before it forks and its child read after would
/// count the page one and a half times; read after its children, a member's share can only have shrunk by then. A
/// member whose PSS pynish may not read (another user's) counts with its resident set, never less than it holds;
/// one that has ended, or is ending (its memory released), with nothing.
fn pss_of(members: &[(i32, u64)], buf: &mut Vec<u8>) -> Vec<u64> {
    let mut pss: Vec<u64> = members
        .iter()
        .rev()
        .map(|&(pid, rss)| match read_pss(pid, buf) {
            Ok(pss) => pss,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => rss,
            Err(_) => 0,
        })
        .collect();
    pss.reverse();
    pss
}

/// Whether the kernel offers `/proc/PID/smaps_rollup` (4.14+); without it the resident sum is all there is.
fn smaps_rollup_offered() -> bool {
    static OFFERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFFERED.get_or_init(|| std::path::Path::new("/proc/self/smaps_rollup").exists())
}

/// Every descendant of `root` found by scanning all of `/proc` (the slow path).
fn descendants_by_scan(root: i32) -> Vec<i32> {
    let mut buf = Vec::with_capacity(4096);
    let mut parent_of = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                && let Some(stat) = read_stat(pid, &mut buf)
            {
                parent_of.insert(pid, stat.ppid);
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parent_of.iter().filter(|&(_, &pp)| pp == parent).map(|(&p, _)| p));
        i += 1;
    }
    found.remove(0);
    found
}

/// Every live descendant of `root`.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut found = Vec::new();
    if walk(root, usize::MAX, |pid, _| found.push(pid)) { found } else { descendants_by_scan(root) }
}

/// Sends SIGKILL to every live descendant of pynish (an ended one, a zombie, is left to be reaped); returns those
/// it reached, in pynish's own numbers. Under a `/proc` of another pid namespace its numbers are not pynish's, and
/// nothing is sent.
pub fn kill_descendants() -> Vec<i32> {
    let mut killed = Vec::new();
    if !procfs::is_own() {
        return killed;
    }
    let send = |pid: i32| Sig::KILL.send(pid);
    let mut visit = |pid: i32, stat: &Stat| {
        if !stat.ended() && send(pid) {
            killed.push(pid);
        }
    };
    let root = std::process::id() as i32;
    if !walk(root, usize::MAX, &mut visit) {
        let mut buf = Vec::new();
        for pid in descendants_by_scan(root) {
            if let Some(stat) = read_stat(pid, &mut buf) {
                visit(pid, &stat);
            }
        }
    }
    killed
}

/// CPU time of everything pynish has reaped so far.
pub fn reaped_cpu() -> (Duration, Duration) {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
            (tv(usage.user_time()), tv(usage.system_time()))
        }
        Err(_) => (Duration::ZERO, Duration::ZERO),
    }
}

/// What the reaped descendants read from and sent to storage, in bytes, or None where the kernel keeps no task
/// I/O accounting (no `/proc/self/io`). The kernel adds a reaped child's I/O counters, and those of everything it
/// had reaped, to its parent's `RUSAGE_CHILDREN` blocks (512 bytes each); pynish, the subreaper, reaps every
/// member its parent did not, so once the tree is gone this is all of the tree's I/O and none of pynish's own
/// (its output file, its report). Unlike `/proc/PID/io` summed over members, nothing is counted twice: a
/// member's counters move to its reaper once, when it is reaped.
pub fn reaped_io() -> Option<(u64, u64)> {
    use nix::sys::resource::{UsageWho, getrusage};
    if !std::path::Path::new("/proc/self/io").exists() {
        return None;
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).ok()?;
    let bytes = |blocks: i64| (blocks.max(0) as u64).saturating_mul(512);
    Some((bytes(usage.block_reads()), bytes(usage.block_writes())))
}

/// The largest resident set any single reaped descendant had, in bytes.
pub fn reaped_max_rss() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0, |u| u.max_rss().max(0) as u64 * 1024)
}

/// Why the proc backend cannot hold `limits` here, when it cannot (see `procfs`): it samples the tree through
/// `/proc`, which must be of pynish's own pid namespace. The wall-time limit (a timer) and `--memory-kind virtual`
/// (RLIMIT_AS) need no sample, nor does `--soft-wall-time`. `--cpu-time` does (and `--soft-cpu-time`,
/// `--soft-memory`, which would never be heard): reaped usage counts only members that have ended, and the
/// RLIMIT_CPU backstop whole seconds per process, so a tree of a few spinners would outlive its limit.
pub fn refusal(limits: &Limits) -> Option<String> {
    let reason = procfs::foreign_reason()?;
    if *procfs::view() == View::Blind {
        return Some(format!("the proc backend cannot find the command's processes: {reason}"));
    }
    let resident = limits.memory.is_some() && limits.memory_kind == MemoryKind::Resident;
    let needs: Vec<&str> = [
        (limits.cpu_time.is_some(), "--cpu-time"),
        (resident, "--memory"),
        (limits.processes.is_some(), "--processes"),
        (limits.soft.cpu_time.is_some(), "--soft-cpu-time"),
        (limits.soft.memory.is_some(), "--soft-memory"),
    ]
    .into_iter()
    .filter_map(|(asked, flag)| asked.then_some(flag))
    .collect();
    (!needs.is_empty()).then(|| {
        format!(
            "{} needs the proc backend to sample /proc, and {reason}: mount a /proc of this namespace (unshare \
             --mount-proc) or use a cgroup backend",
            needs.join(", ")
        )
    })
}

pub struct ProcTree {
    /// pynish's own number in `/proc`, where the walk starts.
    root: i32,
    view: View,
    /// Members a sample looks at, at most (see `walk`).
    cap: usize,
    tick: Duration,
    page: u64,
    /// The previous sample: CPU never goes backwards, even if a member is reaped between two reads.
    last: Sample,
    /// A resident memory limit, which only the tree's proportional set size may decide (see `memory`).
    memory_limit: Option<u64>,
    /// The highest proportional set size a sweep has read so far.
    pss_peak: u64,
    /// The last sweep's PSS, and the resident sum it was read with.
    last_pss: u64,
    resident_at_pss: u64,
    /// When the last sweep ended, and how long it took.
    last_sweep: Option<(Instant, Duration)>,
    /// The live members of the last sample with their resident sets in bytes (kept to spare an allocation).
    members: Vec<(i32, u64)>,
    /// `--processes`: a sample past it is not held up by a PSS sweep (see `sample`).
    process_limit: Option<u64>,
}

impl ProcTree {
    /// `limits.processes`: a sample needs to see no more than enough members to tell that the tree is past it.
    /// A resident `limits.memory`: what a sample's memory is checked against (see `memory`).
    pub fn new(limits: &Limits) -> ProcTree {
        let process_limit = limits.processes;
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
        let view = procfs::view().clone();
        ProcTree {
            root: match view {
                View::Ancestor { me, .. } => me,
                _ => std::process::id() as i32,
            },
            view,
            cap: process_limit
                .map(|p| p.saturating_mul(crate::limits::GRACE_PROCESS_SLACK).saturating_add(1))
                .and_then(|cap| usize::try_from(cap).ok())
                .unwrap_or(usize::MAX),
            tick: Duration::from_nanos(1_000_000_000 / ticks.max(1) as u64),
            page: page as u64,
            last: Sample::default(),
            memory_limit: limits.memory.filter(|_| limits.memory_kind == MemoryKind::Resident),
            pss_peak: 0,
            last_pss: 0,
            resident_at_pss: 0,
            last_sweep: None,
            members: Vec::new(),
            process_limit,
        }
    }

    /// The tree's memory for a sample whose resident sets sum to `resident`. That sum counts a page shared by
    /// forked members (copy-on-write, shared mappings) once per member, so it is only the cheap first reading. The
    /// figure is the proportional set size (PSS) of the tree, each page counted once: read (a "sweep") when the
    /// estimate below would cross the limit (a verdict is only ever given on a fresh sweep), would set a new
    /// peak, or is `PSS_REFRESH` old; between sweeps, the last sweep plus what the resident sum has grown since.
    ///
    /// A sweep walks every member's page tables: on a tree of 200 members sharing 100 MB it takes 120 to 340 ms here (bench section 7).
    /// So sweeps are rationed by their own cost (see `PSS_SHARE_*`): a sweep that is not allowed yet leaves the
    /// estimate, held at the highest sweep so far (unconfirmed, it sets no peak and gives no verdict).
    ///
    /// `may_sweep` false: no sweep now, whatever is due (the estimate, held as above).
    fn memory(&mut self, resident: u64, members: &[(i32, u64)], buf: &mut Vec<u8>, may_sweep: bool) -> u64 {
        if !smaps_rollup_offered() {
            return resident;
        }
        let estimate = resident.min(self.last_pss.saturating_add(resident.saturating_sub(self.resident_at_pss)));
        let over = self.memory_limit.is_some_and(|limit| estimate > limit);
        let now = Instant::now();
        let since = self.last_sweep.map(|(at, cost)| (now.saturating_duration_since(at), cost));
        let allowed = |share: u32| since.is_none_or(|(elapsed, cost)| elapsed >= cost * share);
        let stale = since.is_none_or(|(elapsed, _)| elapsed >= PSS_REFRESH);
        let sweep = if !may_sweep {
            false
        } else if over {
            allowed(PSS_SHARE_CONFIRM)
        } else {
            (estimate > self.pss_peak || stale) && allowed(PSS_SHARE_REFRESH)
        };
        if !sweep {
            // Unconfirmed, the estimate may be high (a fork adds its whole resident set, shared pages and all):
            // held at the peak read so far, it sets no new peak and gives no verdict.
            return estimate.min(self.pss_peak);
        }
        // A member that ends while the others are read leaves its pages to them: a sharer read after it ended got a
        // larger share than when the ended one was read, and the sum counts those pages more than once. So a sum
        // that would set a new peak or cross the limit is read again, and each member counts with the lower of its
        // two readings (the one that ended has nothing by the second, its sharers had their smaller shares in the
        // first).
        let first = pss_of(members, buf);
        let mut pss = first.iter().sum::<u64>().min(resident);
        if pss > self.pss_peak || self.memory_limit.is_some_and(|limit| pss > limit) {
            let second = pss_of(members, buf);
            pss = pss.min(first.iter().zip(&second).map(|(a, b)| a.min(b)).sum());
        }
        let end = Instant::now();
        self.last_sweep = Some((end, end.saturating_duration_since(now)));
        self.last_pss = pss;
        self.resident_at_pss = resident;
        self.pss_peak = self.pss_peak.max(pss);
        pss
    }
}

impl Tree for ProcTree {
    fn name(&self) -> &'static str {
        "proc"
    }

    fn enforcement(&self, _limit: LimitKind) -> &'static str {
        "proc"
    }

    fn sample(&mut self) -> Result<Sample> {
        let (user, system) = reaped_cpu();
        if self.view != View::Own {
            // No limit here needs a sample (see `refusal`); what ended is all pynish may count.
            return Ok(Sample { cpu_user: user, cpu_system: system, ..Sample::default() });
        }
        let mut ticks = (0u64, 0u64);
        let mut exact = Duration::ZERO;
        // The CPU clock has no user/system split: each member's exact time is split as its ticks are.
        let mut exact_system = 0f64;
        let mut rss_pages = 0u64;
        let mut processes = 0u64;
        let mut members = std::mem::take(&mut self.members);
        members.clear();
        let mut buf = Vec::new();
        let page = self.page;
        let mut add = |pid: i32, stat: &Stat| {
            ticks.0 += stat.reaped_ticks.0;
            ticks.1 += stat.reaped_ticks.1;
            match process_cpu(pid) {
                Some(cpu) => {
                    exact += cpu;
                    let (u, s) = stat.own_ticks;
                    if u + s > 0 {
                        exact_system += cpu.as_secs_f64() * s as f64 / (u + s) as f64;
                    }
                }
                None => {
                    ticks.0 += stat.own_ticks.0;
                    ticks.1 += stat.own_ticks.1;
                }
            }
            // An ended member still holds its pid until it is reaped: a tree of unreaped zombies exhausts pids as
            // surely as a tree of live processes.
            processes += 1;
            let resident = match stat.leader_gone() {
                true => live_thread_rss(pid, &mut buf),
                false => (!stat.zombie).then_some(stat.rss_pages),
            };
            if let Some(pages) = resident {
                rss_pages += pages;
                members.push((pid, pages * page));
            }
        };
        if !walk(self.root, self.cap, &mut add) {
            let mut buf = Vec::new();
            for pid in descendants_by_scan(self.root) {
                if let Some(stat) = read_stat(pid, &mut buf) {
                    add(pid, &stat);
                }
            }
        }
        // A tree already past its process limit gets that verdict from this very sample: a sweep would only delay
        // it, and a fork bomb's members, each forking (and so holding its own memory map's lock), make every
        // `smaps_rollup` read wait (the first signal came up to 0.3 s late instead of 0.03 s).
        let past_processes = self.process_limit.is_some_and(|limit| processes > limit);
        let memory = self.memory(rss_pages * self.page, &members, &mut buf, !past_processes);
        self.members = members;
        let total = user + system + exact + self.tick * (ticks.0 + ticks.1) as u32;
        let exact_system = Duration::from_secs_f64(exact_system).min(exact);
        let user = user + (exact - exact_system) + self.tick * ticks.0 as u32;
        let system = system + exact_system + self.tick * ticks.1 as u32;
        let (cpu_user, cpu_system) = Sample::split_cpu(total, user, system, &self.last);
        self.last = Sample { cpu_user, cpu_system, memory, processes };
        Ok(self.last)
    }

    fn listed_before_killing(&mut self) -> Vec<i32> {
        // No further than a sample looks: under a fork bomb the first signal must not wait for a long walk.
        // Counted in pynish's own numbers, as `signal_all` returns them.
        let mut found = Vec::new();
        let view = self.view.clone();
        walk(self.root, self.cap, |pid, stat| {
            if stat.ended() {
                return;
            }
            let own = match view {
                View::Own => Some(pid),
                View::Ancestor { depth, .. } => procfs::translate(pid, depth).map(|(pid, _)| pid),
                View::Blind => None,
            };
            found.extend(own);
        });
        found
    }

    fn signal_all(&mut self, signal: Sig, signalled_group: Option<i32>) -> Vec<i32> {
        let mut signalled = Vec::new();
        let view = self.view.clone();
        let mut send = |pid: i32, pgrp: i32| {
            // `/proc`'s numbers, turned into pynish's own; a member gone meanwhile has no numbers left.
            let (pid, pgrp) = match view {
                View::Own => (pid, pgrp),
                View::Ancestor { depth, .. } => match procfs::translate(pid, depth) {
                    Some(own) => own,
                    None => return,
                },
                View::Blind => return,
            };
            let send = |p: i32, s: Sig| s.send(p);
            if Some(pgrp) == signalled_group || super::deliver(pid, signal, send) {
                signalled.push(pid);
            }
        };
        // An ended member (a zombie not yet reaped) in the signalled group counts as reached: the `killpg` may
        // well be what ended it. Elsewhere it can get no signal, and is not counted (a SIGKILL to a tree that
        // died of its SIGTERM would count every zombie as killed).
        let mut visit = |pid: i32, stat: &Stat| {
            if !stat.ended() || Some(stat.pgrp) == signalled_group {
                send(pid, stat.pgrp);
            }
        };
        if !walk(self.root, usize::MAX, &mut visit) {
            let mut buf = Vec::new();
            for pid in descendants_by_scan(self.root) {
                if let Some(stat) = read_stat(pid, &mut buf) {
                    visit(pid, &stat);
                }
            }
        }
        signalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let line =
            "42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0 100 1000 55 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.ppid, 7);
        assert_eq!(stat.own_ticks, (11, 22));
        assert_eq!(stat.reaped_ticks, (33, 44));
        assert_eq!(stat.rss_pages, 55);
        assert!(!stat.zombie);
    }

    #[test]
    fn a_zombie_leader_with_threads_is_alive() {
        let stat = |state: &str, threads: u32| {
            let line = format!("42 (x) {state} 7 42 42 0 -1 0 0 0 0 0 1 2 3 4 20 0 {threads} 0 100 1000 55 0");
            parse_stat(&line).unwrap()
        };
        assert!(stat("Z", 1).ended(), "an unreaped zombie has ended");
        assert!(!stat("Z", 3).ended() && stat("Z", 3).leader_gone(), "pthread_exit in main, two threads live on");
        assert!(!stat("S", 3).ended() && !stat("S", 3).leader_gone());
    }

    #[test]
    fn reads_own_pss() {
        if !smaps_rollup_offered() {
            eprintln!("SKIP: no /proc/PID/smaps_rollup (Linux before 4.14)");
            return;
        }
        let mut buf = Vec::new();
        let pss = read_pss(std::process::id() as i32, &mut buf).expect("own smaps_rollup");
        assert!(pss > 0);
        assert!(read_pss(99_999_999, &mut buf).is_err(), "no such process");
    }

    #[test]
    fn reads_a_process_cpu_clock() {
        let own = process_cpu(std::process::id() as i32).expect("own CPU clock");
        assert!(own > Duration::ZERO);
        assert!(process_cpu(99_999_999).is_none(), "no such process");
    }

    #[test]
    fn finds_own_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = descendants(std::process::id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
    }
}
