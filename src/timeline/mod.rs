//! `--timeline FILE`: what the tree did over time, as JSON lines written while the command runs, from the samples
//! the monitor takes anyway (this module reads nothing of the tree itself).
//!
//! # The file
//!
//! One JSON object per line:
//! - first a header: `{"timeline":1,"pynish":"0.1.0","backend":"cgroup2","limits":{...},"enforcement":{...},
//!   "command":[...],"label":null}`, where `limits` and `enforcement` are as in the report;
//! - a sample: `{"t":0.52,"cpu_user_s":0.31,"cpu_system_s":0.12,"memory_bytes":52428800,"processes":2}`: `t` is
//!   seconds since the command started, CPU is the whole tree's so far (members that ended included), memory and
//!   processes are the most seen since the previous sample line (see thinning), all as the backend counts them
//!   (the cgroup's counters where there is one);
//! - an event: `{"t":0.61,"event":"signal","signal":"SIGTERM","processes":2,"cause":"memory"}`; events are
//!   `signal` (the first signal, how many members got it, and its `cause`: a limit's verdict name, `signal` with
//!   `received`, or `command_ended`), `sigkill` (with `processes`, and `cause` when it is the first signal), `oom_kill` and `fork_refused` (the kernel
//!   enforced a cgroup limit, at the moment pynish noticed), `exit` (the command's first process, with `code` or
//!   `signal`) and `end` (the tree is gone: `verdict`, `exit_code`, the report's usage totals, `dropped_lines`).
//!
//! `t` never decreases from one line to the next. Seconds are rounded to the millisecond.
//!
//! # Thinning: a bounded file for any run
//!
//! Samples are written at most one per period. The first `FIRST_EPOCH` (10 s) has periods of `FIRST_PERIOD`
//! (20 ms); after that, each time the run's age doubles the period doubles too (10–20 s: 40 ms, 20–40 s: 80 ms,
//! ...). So the first 10 s hold at most 500 sample lines and every later doubling of the run at most 250: a run of
//! length T writes at most 500 + 250·⌈log2(T / 10 s)⌉ sample lines (about 2,750 for one hour, 3,500 for ten
//! hours), plus two around each event (which flushes the sample in progress) and the events themselves. Within a
//! period the monitor may sample many times (every millisecond near a limit); the line keeps the largest memory
//! and process count seen, so a spike between two lines is not lost, and the latest CPU.
//!
//! # Cost
//!
//! Off, the monitor holds `None` and pays a branch per sample. On, the monitor samples at least once per period
//! while periods are shorter than its own far-from-limits spacing (the first 40 s), so a short run draws a useful
//! picture (with cgroup v1, a sample then also reads the user/system split: `Tree::split_cpu`); and lines go over
//! a bounded channel to a writer thread (`writer`), so no write, however slow, delays enforcement.

mod writer;

use crate::limits::LimitKind;
use crate::record::{Enforcement, Facts, LimitsAsked, Status, Usage};
use crate::signals::Sig;
use crate::tree::Sample;
use crate::verdict::Verdict;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

pub use writer::Opened;

/// The file layout's version, the header's `timeline` field.
pub const FORMAT: u32 = 1;
/// The first span of the run, in which every period is `FIRST_PERIOD`.
const FIRST_EPOCH: Duration = Duration::from_secs(10);
/// The shortest span one sample line stands for.
const FIRST_PERIOD: Duration = Duration::from_millis(20);

/// The first line: what the samples are measured against.
#[derive(Debug, Serialize)]
pub struct Header {
    pub timeline: u32,
    pub pynish: &'static str,
    pub backend: &'static str,
    pub limits: LimitsAsked,
    pub enforcement: Enforcement,
    pub command: Vec<String>,
    pub label: Option<String>,
    pub started_at: String,
    pub hostname: Option<String>,
}

/// Why the first signal went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Limit(LimitKind),
    Received(Sig),
    CommandEnded,
}

/// Something that happened to the tree.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Signal {
        signal: Sig,
        processes: usize,
        cause: Cause,
    },
    /// `cause` when SIGKILL is the first signal (`--signal KILL`, `--grace 0`).
    Sigkill {
        processes: usize,
        cause: Option<Cause>,
    },
    OomKill,
    ForkRefused,
    /// A soft limit reached: its warning went to `processes` members.
    Soft {
        limit: LimitKind,
        signal: Sig,
        processes: usize,
    },
    /// The kernel enforced a limit outside the run (an enclosing group's, the machine's) on the tree.
    Outside(LimitKind),
    Exit(Status),
    End {
        verdict: Verdict,
        exit_code: u8,
        usage: Usage,
        dropped: u64,
    },
}

impl Cause {
    /// Why pynish is ending the tree, from the facts so far.
    pub fn of(facts: &Facts) -> Cause {
        match (facts.limit.or(facts.kernel_limit), facts.received) {
            (Some(kind), _) => Cause::Limit(kind),
            (None, Some(signal)) => Cause::Received(signal),
            (None, None) => Cause::CommandEnded,
        }
    }
}

impl Event {
    /// The event a limit the kernel enforced by itself shows as.
    pub fn kernel(kind: LimitKind) -> Event {
        match kind {
            LimitKind::Processes => Event::ForkRefused,
            _ => Event::OomKill,
        }
    }
}

/// One sample line: CPU at `t`, memory and processes the most seen since the previous line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub t: Duration,
    pub cpu_user: Duration,
    pub cpu_system: Duration,
    pub memory: u64,
    pub processes: u64,
}

/// What goes to the writer.
#[derive(Debug, Clone, Copy)]
pub enum Record {
    Line(Line),
    Event(Duration, Event),
}

/// The period that `t` falls in: its start and its length (see "Thinning" above).
fn period(t: Duration) -> (Duration, Duration) {
    let nanos = |n: u128| {
        let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
        Duration::new(secs, (n % 1_000_000_000) as u32)
    };
    let t_ns = t.as_nanos();
    if t < FIRST_EPOCH {
        let length = FIRST_PERIOD.as_nanos();
        return (nanos(t_ns / length * length), FIRST_PERIOD);
    }
    // Epoch k >= 1 is [FIRST_EPOCH * 2^(k-1), FIRST_EPOCH * 2^k), with periods of FIRST_PERIOD * 2^k.
    let k = u128::BITS - (t_ns / FIRST_EPOCH.as_nanos()).leading_zeros();
    let epoch = FIRST_EPOCH.as_nanos() << (k - 1);
    let length = FIRST_PERIOD.as_nanos() << k;
    (nanos(epoch + (t_ns - epoch) / length * length), nanos(length))
}

/// The timeline being written: the thinning of samples into lines, in front of the writer.
pub struct Timeline {
    writer: writer::Writer,
    /// The line under way, and the start of its period.
    pending: Option<(Duration, Line)>,
    /// The latest `t` sent, so that `t` never decreases in the file.
    last_t: Duration,
}

/// Opens (creates) the timeline file before anything runs: a destination that cannot be written is bad input,
/// like `--report`'s. It is truncated only when the run goes ahead (`Timeline::start`).
pub fn open(path: &Path) -> Result<Opened> {
    writer::open(path)
}

impl Timeline {
    /// Writes the header and starts the writer.
    pub fn start(opened: Opened, header: &Header) -> Result<Timeline> {
        let json = serde_json::to_string(header).expect("the header holds only plain values");
        Ok(Timeline { writer: writer::Writer::start(opened, &json)?, pending: None, last_t: Duration::ZERO })
    }

    /// Takes one of the monitor's samples, taken `t` after the start.
    pub fn sample(&mut self, t: Duration, sample: &Sample) {
        let t = t.max(self.last_t);
        let (start, _) = period(t);
        let line = Line {
            t,
            cpu_user: sample.cpu_user,
            cpu_system: sample.cpu_system,
            memory: sample.memory,
            processes: sample.processes,
        };
        match &mut self.pending {
            Some((at, pending)) if *at == start => {
                *pending = Line {
                    memory: pending.memory.max(line.memory),
                    processes: pending.processes.max(line.processes),
                    ..line
                };
            }
            _ => {
                self.flush();
                self.pending = Some((start, line));
            }
        }
    }

    /// Writes `event`, after the sample line under way.
    pub fn event(&mut self, t: Duration, event: Event) {
        self.flush();
        self.last_t = self.last_t.max(t);
        self.writer.send(Record::Event(self.last_t, event), true);
    }

    /// When the monitor should next sample for the timeline: the start of the next period.
    pub fn due(&self, t: Duration) -> Duration {
        let (start, length) = period(t);
        start + length
    }

    /// Sends the line under way.
    fn flush(&mut self) {
        if let Some((_, line)) = self.pending.take() {
            self.last_t = self.last_t.max(line.t);
            self.writer.send(Record::Line(line), false);
        }
    }

    /// Sample lines the writer could not take (it was too far behind); the end event carries the count.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    /// Writes what is left and waits (a bounded time) for the writer to finish.
    pub fn finish(mut self) -> Result<()> {
        self.flush();
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn periods_double_with_the_run_age() {
        assert_eq!(period(ms(0)), (ms(0), ms(20)));
        assert_eq!(period(ms(39)), (ms(20), ms(20)));
        assert_eq!(period(ms(9_999)), (ms(9_980), ms(20)));
        assert_eq!(period(ms(10_000)), (ms(10_000), ms(40)));
        assert_eq!(period(ms(19_999)), (ms(19_960), ms(40)));
        assert_eq!(period(ms(20_000)), (ms(20_000), ms(80)));
        assert_eq!(period(ms(3_600_000)).1, ms(20 << 9), "one hour in: 10.24 s periods");
        let century = Duration::from_secs(100 * 365 * 86_400);
        let far = period(century);
        assert!(far.0 <= century && century < far.0 + far.1, "no overflow far out");
    }

    /// Counts the periods (sample lines at most) in the first `secs` seconds.
    fn periods_in(secs: u64) -> u64 {
        let mut t = Duration::ZERO;
        let mut n = 0;
        while t < Duration::from_secs(secs) {
            let (start, length) = period(t);
            t = start + length;
            n += 1;
        }
        n
    }

    #[test]
    fn the_number_of_lines_grows_with_the_log_of_the_run() {
        assert_eq!(periods_in(10), 500);
        assert_eq!(periods_in(20), 750);
        assert_eq!(periods_in(60), 500 + 250 + 250 + 125);
        let hour = periods_in(3600);
        assert!(hour <= 500 + 250 * 9, "{hour}");
        let ten_hours = periods_in(36_000);
        assert!(ten_hours <= 500 + 250 * 12, "{ten_hours}");
    }
}
