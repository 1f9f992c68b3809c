//! The one event loop: from spawn until the whole tree is gone.
//!
//! pynish sleeps in `ppoll` on one self-pipe that every signal it cares about writes to (SIGCHLD, the
//! terminating signals it passes on, SIGUSR1/2), with a timeout that is the nearest of: the wall-clock
//! deadline, the next sample, the end of the grace period. Nothing ticks while nothing is due.
//!
//! Samples are adaptive: the next one is due when the tree could, growing as fast as it can, have used up its
//! headroom to the nearest limit (CPU: the remaining CPU time spread over every core; memory and processes,
//! where pynish and not the kernel holds them: the headroom at the fastest growth seen, or a floor). Far from
//! every limit pynish samples every `MAX_SAMPLE`; close to one, every `MIN_SAMPLE`.
//!
//! Escalation states: `Running` → (limit, terminating signal received, or the command's first process ended with
//! others still alive) → `Grace` (first signal sent to every member, then SIGCONT so stopped members can act on
//! it) → `Killing` (SIGKILL to every member, repeated until pynish has no child left) → done. A second
//! terminating signal during the grace period skips to `Killing`.

use crate::lifeline::Lifeline;
use crate::limits::{GRACE_PROCESS_SLACK, LimitKind, MemoryKind};

use crate::record::{Escalation, Facts, Outcome, OutsideLimit, SoftHit, Status, Usage, Whose};
use crate::settings::Settings;
use crate::signals::Sig;
use crate::spawn::{self, Plan, SpawnError};
use crate::terminal::Terminal;
use crate::timeline::{Cause, Event, Timeline};
use crate::tree::cgroup::enclosing::{Enclosing, Outside};
use crate::tree::{Sample, Tree, proc};
use crate::wakeup::Wakeup;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::resource::Resource;
use nix::sys::signal::{Signal, killpg};
use nix::sys::time::TimeSpec;
use nix::sys::wait::WaitPidFlag;
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Closest two samples may be, near a limit.
const MIN_SAMPLE: Duration = Duration::from_millis(1);
/// Farthest apart two samples are, far from every limit (also bounds how stale the reported peak can be).
const MAX_SAMPLE: Duration = Duration::from_millis(100);
/// How often SIGKILL is repeated while members are still being found.
const KILL_RETRY: Duration = Duration::from_millis(5);
/// Memory growth assumed possible before any is seen, in bytes per second.
const MEMORY_RATE_FLOOR: f64 = 512e6;
/// Process-count growth assumed possible before any is seen, per second.
const FORK_RATE_FLOOR: f64 = 1000.0;
/// How often pynish looks at a tree in its grace period for memory or processes it must not be given.
const GRACE_SAMPLE: Duration = Duration::from_millis(2);
/// In the grace period a tree may grow past its memory limit (or what it held when signalled, if more) by this
/// fraction of the limit, for a clean-up's buffers, before it is killed at once.
const GRACE_MEMORY_SLACK: f64 = 0.02;
/// A failing command whose address space came this close to an RLIMIT_AS limit failed for lack of memory.
const ADDRESS_SPACE_NEAR: f64 = 0.9;

/// Signals that ask pynish to stop: passed on to the tree, then escalated.
const TERMINATING: [Signal; 4] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT];
/// Signals passed on to the command's process group as they are.
const PASSED_ON: [Signal; 2] = [Signal::SIGUSR1, Signal::SIGUSR2];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    Grace { until: Instant },
    Killing,
}

/// Verbose event lines (`-v`).
pub struct Log {
    pub verbose: bool,
}

impl Log {
    pub fn event(&self, message: std::fmt::Arguments) {
        if self.verbose {
            crate::say(format_args!("pynish: {message}"));
        }
    }
}

struct Monitor<'a> {
    settings: &'a Settings,
    tree: &'a mut dyn Tree,
    log: &'a Log,
    start: Instant,
    child: Pid,
    terminal: Option<Terminal>,
    phase: Phase,
    facts: Facts,
    escalation: Escalation,
    usage: Usage,
    last: Sample,
    last_at: Instant,
    next_sample: Instant,
    address_space_peak: u64,
    cores: f64,
    /// The tree's memory when the first signal went out: the grace period allows no growth much past it.
    memory_at_signal: u64,
    /// Members that received SIGKILL, sorted: each is counted once in the report, however often it is repeated.
    sigkilled: Vec<i32>,
    /// The soft limits reached so far, each warned of once.
    soft: Vec<SoftHit>,
    /// A member pynish reaped (the command, or an orphan it inherited) was killed by SIGXFSZ: past `--file-size`.
    xfsz_seen: bool,
    /// Set once the tree is gone; until then dropping the monitor (pynish unwinding from a bug) kills the tree.
    finished: bool,
    /// `--timeline`: fed with the samples and events below, never read from.
    timeline: Option<&'a mut Timeline>,
    /// `--lifeline-fd`: watched until the caller is gone, then dropped (its hang-up would wake `ppoll` forever).
    lifeline: Option<Lifeline>,
    /// The lifeline was cut since the last turn of the loop: handled as a SIGTERM to pynish.
    lifeline_cut: bool,
    /// The counters of the groups enclosing pynish, and the machine's, from before the start: whose limit it was
    /// when the kernel killed or refused in the tree without the run's own limit reached.
    enclosing: Enclosing,
    /// The limit the run's own group enforced (`Tree::kernel_hit`), as opposed to an rlimit.
    group_hit: Option<LimitKind>,
}

impl Drop for Monitor<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Nothing of the tree may outlive pynish, not even when pynish itself fails.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let _ = killpg(self.child, Signal::SIGKILL);
            self.tree.kill_all();
            kill_strays(&*self.tree);
            if !self.reap() {
                return;
            }
            std::thread::sleep(KILL_RETRY);
        }
    }
}

/// Runs the command under `settings` and watches it with `tree` until nothing of it is left.
pub fn supervise<'a>(
    settings: &'a Settings,
    tree: &'a mut dyn Tree,
    log: &'a Log,
    timeline: Option<&'a mut Timeline>,
    output: Option<std::os::fd::OwnedFd>,
) -> Result<Outcome, SpawnError> {
    let watched: Vec<Signal> = [Signal::SIGCHLD].iter().chain(&TERMINATING).chain(&PASSED_ON).copied().collect();
    let mut wakeup = Wakeup::install(&watched)
        .map_err(|e| SpawnError::Setup(anyhow::Error::new(e).context("cannot watch signals")))?;

    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    if unsafe { nix::libc::prctl(nix::libc::PR_SET_CHILD_SUBREAPER, 1) } < 0 {
        return Err(SpawnError::Setup(anyhow::anyhow!("cannot become a child subreaper: {}", Errno::last())));
    }
    // Before the command starts: from here on the read end is close-on-exec, so the command never holds it.
    let lifeline = settings.lifeline.map(Lifeline::take);

    let terminal = Terminal::foreground();
    if let Some(terminal) = terminal {
        terminal.block_ttou();
    }
    let plan = Plan {
        join_fds: tree.join_fds(),
        birth_group: tree.birth_group(),
        rlimits: rlimits(settings),
        terminal: terminal.map(Terminal::fd),
        nice: raise_priority(),
        cpus: settings.limits.cpus.as_deref().map(spawn::cpu_set),
        output: output.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
    };
    let start = Instant::now();
    let (child, born_in_group) = match settings.adopt {
        Some(adopt) => (crate::adopt::adopt(adopt, &plan)?, false),
        None => {
            let started = spawn::spawn(&settings.command, plan)?;
            (Pid::from_raw(started.pid), started.born_in_group)
        }
    };
    // Only the tree holds the output pipe now: its end is the end of the tree's output.
    drop(output);
    // Read while the command starts rather than before (mountinfo, /proc/vmstat: a few hundred µs, on another
    // core than the command's exec): an outside OOM kill within that moment would go unnamed (the verdict,
    // `signaled`, stays right; the run's own limit is judged by its group's counters, read before the start).
    let enclosing = Enclosing::snapshot();
    log.event(format_args!(
        "started {} as pid {child} ({} backend{})",
        settings.command[0].to_string_lossy(),
        tree.name(),
        if born_in_group { ", born in its group" } else { "" }
    ));

    let mut monitor = Monitor {
        settings,
        tree,
        log,
        start,
        child,
        terminal,
        phase: Phase::Running,
        facts: Facts { preserve_status: settings.preserve_status, ..Facts::default() },
        escalation: Escalation::default(),
        usage: Usage::default(),
        last: Sample::default(),
        last_at: start,
        next_sample: start,
        address_space_peak: 0,
        cores: online_cores(),
        memory_at_signal: 0,
        sigkilled: Vec::new(),
        soft: Vec::new(),
        xfsz_seen: false,
        finished: false,
        timeline,
        lifeline,
        lifeline_cut: false,
        enclosing,
        group_hit: None,
    };
    let first = start + monitor.interval(Sample::default(), MEMORY_RATE_FLOOR, FORK_RATE_FLOOR);
    monitor.next_sample = monitor.sample_by(start, first);
    monitor.run(&mut wakeup);
    Ok(monitor.finish())
}

/// SIGKILL to every live descendant of pynish that `tree` may not have reached; returns them. A member may move
/// itself out of the run's groups (root may write any of its processes into another cgroup), and a cgroup
/// backend's kill then misses it; but pynish is the child subreaper, so the member is still below pynish, where a
/// walk of `/proc` finds it. The proc backend's own kill is that walk already.
fn kill_strays(tree: &dyn Tree) -> Vec<i32> {
    if tree.name() == "proc" {
        return Vec::new();
    }
    proc::kill_descendants()
}

/// How much pynish raises its own scheduling priority above the command's, when it may.
const PRIORITY_BOOST: i32 = 10;

/// Raises pynish's own priority where the system allows it (CAP_SYS_NICE or RLIMIT_NICE), so that a tree
/// saturating every core (a fork bomb, a parallel build) cannot delay the watch loop's wake-ups by the hundreds
/// of milliseconds a fair share among a thousand tasks would give; returns the niceness the command must get
/// back. Unprivileged, nothing changes.
fn raise_priority() -> Option<i32> {
    use nix::libc;
    // SAFETY: getpriority/setpriority take plain integers. errno is cleared first: -1 is a valid niceness.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        if nice == -1 && *libc::__errno_location() != 0 {
            return None;
        }
        let raised = (nice - PRIORITY_BOOST).max(-20);
        (raised < nice && libc::setpriority(libc::PRIO_PROCESS, 0, raised) == 0).then_some(nice)
    }
}

/// `t + d`, or a moment decades away when that does not fit: a limit too large to reach is no limit.
fn after(t: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d).or_else(|| t.checked_add(FAR)).unwrap_or(t)
}

/// How many CPU seconds the tree can burn per second at most (read once; cheap, unlike
/// `available_parallelism`, which also reads cgroup quota files).
fn online_cores() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN).ok().flatten().map_or(1.0, |n| n.max(1) as f64)
}

/// The kernel's per-process backstops, set in the child before exec.
fn rlimits(settings: &Settings) -> Vec<(Resource, u64, u64)> {
    let limits = &settings.limits;
    let mut out = Vec::new();
    if let Some(cpu) = limits.cpu_time {
        // RLIMIT_CPU counts whole seconds per process: SIGXCPU at the next whole second above the limit, SIGKILL
        // once the grace period has also passed. pynish, counting the whole tree with sub-second precision,
        // acts first; the kernel's limit is the backstop should pynish be unable to (it is never tighter).
        // Saturating: a limit beyond RLIM_INFINITY (u64::MAX) is no limit.
        let soft = cpu.as_secs().saturating_add(1);
        let grace = settings.grace.as_secs().saturating_add(u64::from(settings.grace.subsec_nanos() > 0));
        out.push((Resource::RLIMIT_CPU, soft, soft.saturating_add(grace.max(1))));
    }
    if let (Some(bytes), MemoryKind::Virtual) = (limits.memory, limits.memory_kind) {
        out.push((Resource::RLIMIT_AS, bytes, bytes));
    }
    let asked = limits.rlimits.asked().into_iter().map(|(resource, _, value)| (resource, value, value));
    out.into_iter()
        .map(|(resource, soft, hard)| {
            let (soft, hard) = crate::limits::within_inherited(resource, soft, hard);
            (resource, soft, hard)
        })
        // Checked against the inherited hard limit in `settings`: set as asked, never capped.
        .chain(asked)
        .collect()
}

impl Monitor<'_> {
    fn run(&mut self, wakeup: &mut Wakeup) {
        loop {
            if !self.reap() {
                break;
            }
            let mut received = wakeup.take();
            if std::mem::take(&mut self.lifeline_cut) {
                self.log.event(format_args!("the lifeline's writers are gone: ending the tree as on SIGTERM"));
                received.push(Signal::SIGTERM);
            }
            self.handle_signals(received);
            let now = Instant::now();
            match self.phase {
                Phase::Running if self.facts.status.is_some() && self.settings.leave_leftovers => {
                    self.log.event(format_args!("command ended; leaving what it left behind (--leave-leftovers)"));
                    break;
                }
                Phase::Running if self.facts.status.is_some() => {
                    self.log.event(format_args!("command ended; ending what it left behind"));
                    self.escalate(self.settings.signal);
                }
                Phase::Running => {
                    if self.soft_wall_due().is_some_and(|due| now >= due) {
                        self.soft_hit(LimitKind::WallTime);
                    }
                    if self.settings.limits.wall_time.is_some_and(|wall| now >= after(self.start, wall)) {
                        self.hit(LimitKind::WallTime);
                    } else if now >= self.next_sample {
                        self.sample(now);
                    }
                }
                Phase::Grace { until } if now >= until => self.kill(),
                Phase::Grace { .. } if self.watch_in_grace() && now >= self.next_sample => self.check_grace(now),
                Phase::Grace { .. } => {}
                Phase::Killing => {
                    self.tree.kill_all();
                    self.kill_strays_again();
                }
            }
            self.wait(wakeup);
        }
        if let Some(terminal) = self.terminal {
            terminal.reclaim();
        }
    }

    /// Reaps every child that has ended; false once pynish has no child left (the tree is gone).
    fn reap(&mut self) -> bool {
        let mut flags = WaitPidFlag::WNOHANG;
        if self.terminal.is_some() {
            flags |= WaitPidFlag::WUNTRACED;
        }
        loop {
            match wait_any(flags) {
                Ok(Reaped::Nothing) => return true,
                Ok(Reaped::Ended(pid, status)) if pid == self.child => {
                    self.facts.status = Some(status);
                    self.record(Event::Exit(status));
                }
                Ok(Reaped::Ended(_, Status::Signaled(Sig::XFSZ))) => self.xfsz_seen = true,
                Ok(Reaped::Stopped(pid)) if pid == self.child && self.phase == Phase::Running => {
                    if let Some(terminal) = self.terminal {
                        terminal.relay_stop(self.child);
                    }
                }
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(_) => return false, // ECHILD: nothing of the tree is left
            }
        }
    }

    fn handle_signals(&mut self, received: Vec<Signal>) {
        for signal in received {
            if PASSED_ON.contains(&signal) {
                let _ = killpg(self.child, signal);
            } else if TERMINATING.contains(&signal) {
                self.log.event(format_args!("received {signal}"));
                match (self.facts.received, self.phase) {
                    (None, Phase::Running) => {
                        self.facts.received = Some(signal.into());
                        self.escalate(signal.into());
                    }
                    (None, _) => {
                        self.facts.received = Some(signal.into());
                        self.kill();
                    }
                    (Some(_), _) => self.kill(),
                }
            }
        }
    }

    /// Sleeps until the next signal or the next thing due.
    fn wait(&mut self, wakeup: &Wakeup) {
        let now = Instant::now();
        let due = match self.phase {
            Phase::Running if self.facts.status.is_some() => now,
            Phase::Running => {
                let wall = self.settings.limits.wall_time.map(|wall| after(self.start, wall));
                let due = wall.map_or(self.next_sample, |wall| wall.min(self.next_sample));
                self.soft_wall_due().map_or(due, |soft| soft.min(due))
            }
            Phase::Grace { until } if self.watch_in_grace() => until.min(self.next_sample),
            Phase::Grace { until } => until,
            Phase::Killing => now + KILL_RETRY,
        };
        let timeout = TimeSpec::from_duration(due.saturating_duration_since(now));
        let mut fds = vec![PollFd::new(wakeup.fd(), PollFlags::POLLIN)];
        fds.extend(self.lifeline.as_ref().map(Lifeline::poll_fd));
        let _ = ppoll(&mut fds, Some(timeout), None);
        let lifeline = fds.get(1).map(PollFd::revents);
        drop(fds);
        if let Some(revents) = lifeline
            && self.lifeline.as_ref().is_some_and(|line| line.cut(revents))
        {
            self.lifeline = None;
            self.lifeline_cut = true;
        }
    }

    fn sample(&mut self, now: Instant) {
        // Debug builds only (release builds have no such switch): a panic with the tree running, once the file
        // the variable names exists, so that the tests see this monitor's drop kill the tree through the C main.
        #[cfg(debug_assertions)]
        if std::env::var_os("PYNISH_DEBUG_PANIC_AT").is_some_and(|path| std::path::Path::new(&path).exists()) {
            panic!("PYNISH_DEBUG_PANIC_AT: a panic forced with the tree running");
        }
        let Ok(sample) = self.tree.sample() else {
            self.next_sample = now + MAX_SAMPLE;
            return;
        };
        if let Some(timeline) = self.timeline.as_deref_mut() {
            timeline.sample(now.saturating_duration_since(self.start), &sample);
        }
        self.usage.peak_memory = self.usage.peak_memory.max(sample.memory);
        self.usage.max_processes = self.usage.max_processes.max(sample.processes);
        let limits = &self.settings.limits;
        if limits.memory_kind == MemoryKind::Virtual && limits.memory.is_some() {
            self.address_space_peak = self.address_space_peak.max(proc::address_space_peak(std::process::id() as i32));
        }
        if let Some(kind) = self.tree.kernel_hit() {
            self.facts.kernel_limit = Some(kind);
            self.group_hit = Some(kind);
            self.record(Event::kernel(kind));
            self.log.event(format_args!("the kernel enforced the {} limit", kind.describe()));
            self.escalate(self.settings.signal);
            return;
        }
        if limits.soft.cpu_time.is_some_and(|cpu| sample.cpu() >= cpu) && !self.soft_reached(LimitKind::CpuTime) {
            self.soft_hit(LimitKind::CpuTime);
        }
        if limits.soft.memory.is_some_and(|m| sample.memory > m) && !self.soft_reached(LimitKind::Memory) {
            self.soft_hit(LimitKind::Memory);
        }
        let crossed = if limits.cpu_time.is_some_and(|cpu| sample.cpu() >= cpu) {
            Some(LimitKind::CpuTime)
        } else if limits.memory_kind == MemoryKind::Resident && limits.memory.is_some_and(|m| sample.memory > m) {
            Some(LimitKind::Memory)
        } else if limits.processes.is_some_and(|p| sample.processes > p) {
            Some(LimitKind::Processes)
        } else {
            None
        };
        if let Some(kind) = crossed {
            self.hit(kind);
            return;
        }
        let dt = now.saturating_duration_since(self.last_at).as_secs_f64().max(1e-6);
        let memory_rate = (sample.memory.saturating_sub(self.last.memory) as f64 / dt).max(MEMORY_RATE_FLOOR);
        let fork_rate = (sample.processes.saturating_sub(self.last.processes) as f64 / dt).max(FORK_RATE_FLOOR);
        self.next_sample = self.sample_by(now, now + self.interval(sample, memory_rate, fork_rate));
        self.last = sample;
        self.last_at = now;
    }

    /// When to sample next: at `due`, or sooner when the timeline's next line is due first.
    fn sample_by(&self, now: Instant, due: Instant) -> Instant {
        match &self.timeline {
            Some(timeline) => due.min(self.start + timeline.due(now.saturating_duration_since(self.start))),
            None => due,
        }
    }

    /// Writes `event` to the timeline, if there is one.
    fn record(&mut self, event: Event) {
        if let Some(timeline) = self.timeline.as_deref_mut() {
            timeline.event(self.start.elapsed(), event);
        }
    }

    /// Whether pynish's own samples hold `limit` (the proc backend) rather than the kernel (a cgroup).
    fn pynish_holds(&self, limit: LimitKind) -> bool {
        self.tree.enforcement(limit) == "proc"
    }

    /// Whether pynish, not the kernel, holds a memory or process limit that a tree could keep overrunning while
    /// it ignores the first signal.
    fn watch_in_grace(&self) -> bool {
        let limits = &self.settings.limits;
        let memory = limits.memory.is_some()
            && limits.memory_kind == MemoryKind::Resident
            && self.pynish_holds(LimitKind::Memory);
        let processes = limits.processes.is_some() && self.pynish_holds(LimitKind::Processes);
        memory || processes
    }

    /// The grace period is for cleaning up, not for growing: a tree still growing well past its memory or process
    /// limit gets SIGKILL at once, so that ignoring SIGTERM does not buy a runaway allocator or forker its grace.
    fn check_grace(&mut self, now: Instant) {
        self.next_sample = now + GRACE_SAMPLE;
        let Ok(sample) = self.tree.sample() else { return };
        if let Some(timeline) = self.timeline.as_deref_mut() {
            timeline.sample(now.saturating_duration_since(self.start), &sample);
        }
        self.usage.peak_memory = self.usage.peak_memory.max(sample.memory);
        self.usage.max_processes = self.usage.max_processes.max(sample.processes);
        let limits = &self.settings.limits;
        let memory = limits.memory_kind == MemoryKind::Resident
            && limits.memory.is_some_and(|m| {
                let base = m.max(self.memory_at_signal);
                sample.memory as f64 > base as f64 + m as f64 * GRACE_MEMORY_SLACK
            });
        let processes = limits.processes.is_some_and(|p| sample.processes > p.saturating_mul(GRACE_PROCESS_SLACK));
        if memory || processes {
            self.log.event(format_args!("the tree kept growing in its grace period"));
            self.kill();
        }
    }

    /// Time until the tree could, growing as fast as it can, have used up its headroom to the nearest limit.
    fn interval(&self, sample: Sample, memory_rate: f64, fork_rate: f64) -> Duration {
        let limits = &self.settings.limits;
        let mut secs = MAX_SAMPLE.as_secs_f64();
        if let Some(cpu) = limits.cpu_time {
            secs = secs.min(cpu.saturating_sub(sample.cpu()).as_secs_f64() / self.cores);
        }
        if let (Some(memory), MemoryKind::Resident) = (limits.memory, limits.memory_kind)
            && self.pynish_holds(LimitKind::Memory)
        {
            secs = secs.min(memory.saturating_sub(sample.memory) as f64 / memory_rate);
        }
        if let Some(processes) = limits.processes
            && self.pynish_holds(LimitKind::Processes)
        {
            secs = secs.min(processes.saturating_sub(sample.processes) as f64 / fork_rate);
        }
        // A soft limit is sampled as closely as its hard one would be, until it is reached.
        if let Some(cpu) = limits.soft.cpu_time.filter(|_| !self.soft_reached(LimitKind::CpuTime)) {
            secs = secs.min(cpu.saturating_sub(sample.cpu()).as_secs_f64() / self.cores);
        }
        if let Some(memory) = limits.soft.memory.filter(|_| !self.soft_reached(LimitKind::Memory)) {
            secs = secs.min(memory.saturating_sub(sample.memory) as f64 / memory_rate);
        }
        Duration::from_secs_f64(secs.max(0.0)).clamp(MIN_SAMPLE, MAX_SAMPLE)
    }

    /// When the soft wall-time limit falls due, until it is reached.
    fn soft_wall_due(&self) -> Option<Instant> {
        let soft = self.settings.limits.soft.wall_time?;
        (!self.soft_reached(LimitKind::WallTime)).then(|| after(self.start, soft))
    }

    fn soft_reached(&self, kind: LimitKind) -> bool {
        self.soft.iter().any(|hit| hit.limit == kind)
    }

    /// Warns every member of the tree, once for this soft limit; the run goes on under its hard limits.
    fn soft_hit(&mut self, kind: LimitKind) {
        let signal = self.settings.limits.soft.signal;
        let (reached, at) = self.send_to_tree(signal, |tree, group| tree.signal_all(signal, group));
        let n = reached.len();
        self.soft.push(SoftHit { limit: kind, at, signalled: n });
        self.record(Event::Soft { limit: kind, signal, processes: n });
        let shown = self.settings.limits.show_soft(kind);
        self.log.event(format_args!("soft {} limit {shown} reached; sent {signal} to {n} processes", kind.describe()));
    }

    fn hit(&mut self, kind: LimitKind) {
        self.facts.limit = Some(kind);
        self.log.event(format_args!("{} limit {} reached", kind.describe(), self.settings.limits.show(kind)));
        self.escalate(self.settings.signal);
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Sends `signal` once to every member of the tree and starts the grace period.
    fn escalate(&mut self, signal: Sig) {
        if signal == Sig::KILL || self.settings.grace.is_zero() {
            self.kill();
            if self.escalation.first_signal.is_none() {
                // SIGKILL went first (`--signal KILL`, `--grace 0`): it is the first signal, to the same members.
                self.escalation.first_signal = Some(Sig::KILL);
                self.escalation.first_signal_at = self.escalation.sigkill_at;
                self.escalation.signalled = self.escalation.killed;
            }
            return;
        }
        self.memory_at_signal = self.usage.peak_memory;
        // The command's group first, atomically (a forker there cannot outrun it), then whoever left the group;
        // SIGCONT after each, so that stopped members run and can act on the signal.
        let (reached, at) = self.send_to_tree(signal, |tree, group| tree.signal_all(signal, group));
        let n = reached.len();
        if self.escalation.first_signal.is_none() {
            self.escalation = Escalation {
                first_signal: Some(signal),
                first_signal_at: Some(at),
                signalled: n,
                ..Escalation::default()
            };
            self.record(Event::Signal { signal, processes: n, cause: Cause::of(&self.facts) });
        }
        self.log.event(format_args!("sent {signal} to {n} processes"));
        let now = Instant::now();
        self.phase = Phase::Grace { until: after(now, self.settings.grace) };
        self.next_sample = now + GRACE_SAMPLE;
    }

    /// Sends `signal` to the command's process group with one `killpg` (then SIGCONT, unless it is SIGKILL), then
    /// to the rest of the tree with `rest`; returns the members that got it, sorted, and when the `killpg` went
    /// out. A member the `killpg` kills at once may have left the tree's listing by the time `rest` lists it (see
    /// `Tree::listed_before_killing`), and is counted all the same.
    ///
    /// The time is read just before the `killpg`, after the listing: pynish may lose the CPU for a long moment
    /// around a listing (a fork bomb's thousand runnable members on two cores took it from pynish for 260 ms),
    /// and the report must not place the signal before members that started while it waited; nor after the
    /// `killpg`, once a big group's dying members have the CPU.
    fn send_to_tree(
        &mut self,
        signal: Sig,
        rest: impl FnOnce(&mut dyn Tree, Option<i32>) -> Vec<i32>,
    ) -> (Vec<i32>, Duration) {
        let group = Some(self.child.as_raw());
        let mut reached: Vec<i32> =
            self.tree.listed_before_killing().into_iter().filter(|&pid| crate::tree::in_group(pid, group)).collect();
        let at = self.now();
        if !signal.send_to_group(self.child.as_raw()) {
            reached.clear();
        }
        if signal != Sig::KILL {
            Sig::CONT.send_to_group(self.child.as_raw());
        }
        reached.extend(rest(&mut *self.tree, group));
        reached.sort_unstable();
        reached.dedup();
        (reached, at)
    }

    /// SIGKILL to the whole tree; repeated by the loop until nothing is left.
    fn kill(&mut self) {
        if self.phase == Phase::Killing {
            return;
        }
        let (killed, at) = self.send_to_tree(Sig::KILL, |tree, _| {
            let mut killed = tree.kill_all();
            killed.extend(kill_strays(tree));
            killed
        });
        self.escalation.sigkill_at = Some(at);
        self.sigkilled = killed;
        let n = self.sigkilled.len();
        self.escalation.killed = n;
        self.log.event(format_args!("sent SIGKILL to {n} processes"));
        let cause = self.escalation.first_signal.is_none().then(|| Cause::of(&self.facts));
        self.record(Event::Sigkill { processes: n, cause });
        self.phase = Phase::Killing;
    }

    /// `kill_strays` while the tree is being killed, counting each stray found only now as killed too.
    fn kill_strays_again(&mut self) {
        for pid in kill_strays(&*self.tree) {
            if let Err(at) = self.sigkilled.binary_search(&pid) {
                self.sigkilled.insert(at, pid);
                self.escalation.killed += 1;
            }
        }
    }

    /// Final accounting once the tree is gone.
    fn finish(mut self) -> Outcome {
        let wall = self.now();
        let (user, system) = proc::reaped_cpu();
        let kernel = self.tree.final_usage();
        self.usage.cpu_user = kernel.cpu_user.unwrap_or(user);
        self.usage.cpu_system = kernel.cpu_system.unwrap_or(system);
        self.usage.peak_memory = kernel.peak_memory.unwrap_or(self.usage.peak_memory.max(proc::reaped_max_rss()));
        self.usage.max_processes = kernel.peak_processes.unwrap_or(self.usage.max_processes).max(1);
        (self.usage.io_read, self.usage.io_write) = proc::reaped_io().unzip();
        if self.facts.kernel_limit.is_none() {
            let kernel = self.tree.kernel_hit();
            if let Some(kind) = kernel {
                self.record(Event::kernel(kind));
            }
            self.group_hit = kernel;
            self.facts.kernel_limit = kernel.or_else(|| self.rlimit_hit());
        }
        let (oom, fork_refused, outside) = self.whose();
        if self.facts.limit.is_none() && self.facts.kernel_limit.is_none() {
            self.facts.limit = self.over_in_final_figures();
        }
        // The command's first process died of the warning itself (it did not handle it): that soft limit ended it.
        if let (Some(Status::Signaled(signal)), Some(last)) = (self.facts.status, self.soft.last())
            && signal == self.settings.limits.soft.signal
            && self.facts.received.is_none()
        {
            self.facts.soft_limit = Some(last.limit);
        }
        self.log.event(format_args!("tree reaped after {wall:?}"));
        self.finished = true;
        Outcome {
            facts: std::mem::take(&mut self.facts),
            pid: self.child.as_raw(),
            wall,
            usage: self.usage,
            escalation: std::mem::take(&mut self.escalation),
            soft: std::mem::take(&mut self.soft),
            oom,
            fork_refused,
            outside,
        }
    }

    /// Whose limit it was when the kernel killed a member or refused a fork. The run's own when its group says
    /// so (`Tree::kernel_hit`); outside when the group counted a kill or a refusal without its own limit reached,
    /// or when the command died of a SIGKILL pynish did not send while an enclosing group's or the machine's OOM
    /// count moved (the proc backend has no group of its own to count in). Read from the kernel's counters only.
    fn whose(&mut self) -> (Option<Whose>, Option<Whose>, Option<OutsideLimit>) {
        let mut outside = None;
        let oom = if self.group_hit == Some(LimitKind::Memory) {
            Some(Whose::Run)
        } else {
            let unexplained_kill = matches!(self.facts.status, Some(Status::Signaled(Sig::KILL)))
                && self.facts.limit.is_none()
                && self.facts.received.is_none()
                && self.facts.kernel_limit.is_none();
            let killed_here = self.tree.oom_killed();
            match self.enclosing.oom() {
                Some(found) if killed_here || unexplained_kill => {
                    outside = Some(outside_limit(LimitKind::Memory, found));
                    Some(Whose::Outside)
                }
                None if killed_here => {
                    outside = Some(OutsideLimit { kind: LimitKind::Memory, group: None, limit: None });
                    Some(Whose::Outside)
                }
                _ => None,
            }
        };
        let fork_refused = if self.group_hit == Some(LimitKind::Processes) {
            Some(Whose::Run)
        } else if self.tree.fork_refused() {
            if outside.is_none() {
                let found = self.enclosing.process_limit();
                outside = Some(match found {
                    Some(found) => outside_limit(LimitKind::Processes, found),
                    None => OutsideLimit { kind: LimitKind::Processes, group: None, limit: None },
                });
            }
            Some(Whose::Outside)
        } else {
            None
        };
        if let Some(limit) = &outside {
            self.record(Event::Outside(limit.kind));
            self.log.event(format_args!("the kernel enforced a {} limit outside this run", limit.kind.describe()));
        }
        (oom, fork_refused, outside)
    }

    /// A limit that the final figures (the kernel's high-water marks and reaped CPU, read once the tree is gone)
    /// show crossed although no sample saw it: a member that peaked and ended between two samples. The verdict
    /// then names that limit, so that a report never shows a figure over a limit under `completed`.
    fn over_in_final_figures(&self) -> Option<LimitKind> {
        let limits = &self.settings.limits;
        let usage = &self.usage;
        let over = if limits.cpu_time.is_some_and(|cpu| usage.cpu_user + usage.cpu_system > cpu) {
            LimitKind::CpuTime
        } else if limits.memory_kind == MemoryKind::Resident && limits.memory.is_some_and(|m| usage.peak_memory > m) {
            LimitKind::Memory
        } else if limits.processes.is_some_and(|p| usage.max_processes > p) {
            LimitKind::Processes
        } else {
            return None;
        };
        self.log.event(format_args!(
            "the final figures show the {} limit {} crossed",
            over.describe(),
            limits.show(over)
        ));
        Some(over)
    }

    /// A limit the kernel's rlimits enforced: SIGXCPU (or the hard RLIMIT_CPU's SIGKILL) past the CPU limit,
    /// or a failure close to the address-space limit.
    fn rlimit_hit(&self) -> Option<LimitKind> {
        let limits = &self.settings.limits;
        let failed = !matches!(self.facts.status, Some(Status::Exited(0)));
        let cpu = self.usage.cpu_user + self.usage.cpu_system;
        if limits.rlimits.file_size.is_some()
            && (self.xfsz_seen || self.facts.status == Some(Status::Signaled(Sig::XFSZ)))
        {
            return Some(LimitKind::FileSize);
        }
        if let Some(limit) = limits.cpu_time {
            match self.facts.status {
                Some(Status::Signaled(Sig::XCPU)) => return Some(LimitKind::CpuTime),
                Some(Status::Signaled(Sig::KILL)) if cpu >= limit => return Some(LimitKind::CpuTime),
                _ => {}
            }
        }
        if let (Some(memory), MemoryKind::Virtual) = (limits.memory, limits.memory_kind) {
            // A process's resident peak is a lower bound of its address space, and is known even for members
            // that lived between two samples.
            let peak = self.address_space_peak.max(proc::reaped_max_rss());
            if failed && peak as f64 >= memory as f64 * ADDRESS_SPACE_NEAR {
                return Some(LimitKind::Memory);
            }
        }
        None
    }
}

/// The record's plain form of an outside limit found in the kernel's counters.
fn outside_limit(kind: LimitKind, found: Outside) -> OutsideLimit {
    match found {
        Outside::Group { path, limit } => OutsideLimit { kind, group: Some(path), limit },
        Outside::Machine => OutsideLimit { kind, group: None, limit: None },
    }
}

/// What one `waitpid` found.
enum Reaped {
    /// No child has changed state (WNOHANG).
    Nothing,
    /// A child ended, as `Status` says.
    Ended(Pid, Status),
    /// A child stopped (WUNTRACED).
    Stopped(Pid),
    /// Anything else (a child continued).
    Other,
}

/// One `waitpid(-1, flags)`, as nix's but for a child that a real-time signal ended: nix's `WaitStatus` names
/// only the standard signals, and would reap such a child and then fail with EINVAL, its status lost (and the
/// loop would take the failure for "no child left"). The first signal may be a real-time one (`--signal 40`).
fn wait_any(flags: WaitPidFlag) -> nix::Result<Reaped> {
    let mut status = 0;
    // SAFETY: waitpid writes one int through a valid pointer.
    let pid = Errno::result(unsafe { libc::waitpid(-1, &mut status, flags.bits()) })?;
    Ok(match pid {
        0 => Reaped::Nothing,
        pid if libc::WIFEXITED(status) => Reaped::Ended(Pid::from_raw(pid), Status::Exited(libc::WEXITSTATUS(status))),
        pid if libc::WIFSIGNALED(status) => match Sig::from_number(libc::WTERMSIG(status)) {
            Some(signal) => Reaped::Ended(Pid::from_raw(pid), Status::Signaled(signal)),
            None => Reaped::Other,
        },
        pid if libc::WIFSTOPPED(status) => Reaped::Stopped(Pid::from_raw(pid)),
        _ => Reaped::Other,
    })
}
