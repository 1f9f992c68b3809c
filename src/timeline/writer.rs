//! Gets timeline lines into the file without the watch loop ever waiting on a write.
//!
//! The loop hands each record to a bounded channel (`try_send`, which never blocks); a writer thread formats it
//! and writes through a buffer, flushed at every event and at least every `FLUSH_EVERY`, so `tail -f` follows the
//! run. A write to a regular file usually lands in the page cache in microseconds, but a full page cache, a slow
//! or stalled disk (or NFS) can hold `write` for seconds: doing it in the loop would delay a SIGKILL by as much.
//!
//! The trade-off: when the writer falls `CAPACITY` records behind, sample lines are dropped (and counted, in the
//! `end` event and on stderr), events are kept in a backlog that the loop retries; a write error (a full disk)
//! stops the writing and is said once the run is over, never changing its verdict or exit status. At the end
//! pynish waits at most `FINISH_PATIENCE` for the writer.

use super::{Cause, Event, Line, Record};
use crate::limits::LimitKind;
use crate::record::Status;
use crate::verdict::Verdict;
use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Records the writer may fall behind by before sample lines are dropped (about 20 s of the densest lines).
const CAPACITY: usize = 1024;
/// The longest a written line stays in the buffer.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long pynish waits for the last lines once the tree is gone.
const FINISH_PATIENCE: Duration = Duration::from_secs(5);
/// Stack of the writer thread: it formats small JSON objects and nothing else.
const STACK: usize = 256 * 1024;

/// The timeline file, open, before the run.
pub struct Opened {
    /// Taken by `Writer::start` once the run goes ahead.
    dest: Option<crate::destination::Timeline>,
    path: PathBuf,
}

/// A run refused before the writer started (a backend refusing the limits, no thread for the writer, a header
/// that cannot be written) leaves no file that pynish made, so that a refused run leaves nothing behind.
impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(dest) = &mut self.dest {
            dest.remove_made();
        }
    }
}

/// Opens `path` by the rules of `destination` (close-on-exec: the command does not inherit it).
pub fn open(path: &Path) -> Result<Opened> {
    Ok(Opened { dest: Some(crate::destination::open_timeline(path)?), path: path.to_path_buf() })
}

pub struct Writer {
    path: PathBuf,
    to_thread: Option<SyncSender<Record>>,
    /// Events the channel had no room for, oldest first.
    backlog: Vec<Record>,
    dropped: u64,
    /// The thread's result: Ok, or the first write error.
    done: Receiver<std::io::Result<()>>,
}

impl Writer {
    /// Starts the thread, then truncates the file and writes `header` (a destination that fails even this is
    /// bad input). The thread comes first: a run refused for want of it (a user at its process limit, where
    /// the thread takes one slot) leaves an old timeline as it was, and no new one.
    pub fn start(mut opened: Opened, header: &str) -> Result<Writer> {
        let path = opened.path.clone();
        let context = || format!("cannot write the timeline to {}", crate::destination::shown(&path));
        let dest = opened.dest.as_ref().expect("taken only here");
        // The thread's own descriptor for the same open file: the header goes first, through this one.
        let out = BufWriter::with_capacity(64 * 1024, dest.file.try_clone().with_context(context)?);
        let (to_thread, records) = sync_channel(CAPACITY);
        let (report, done) = sync_channel(1);
        std::thread::Builder::new()
            .name("timeline".into())
            .stack_size(STACK)
            .spawn(move || {
                let _ = report.send(write_all(records, out));
            })
            .context("cannot start the timeline writer")?;
        // Dropping `opened` on an error ends the thread (its channel closes) and removes a file pynish made.
        dest.begin(header).with_context(context)?;
        opened.dest = None;
        Ok(Writer { path, to_thread: Some(to_thread), backlog: Vec::new(), dropped: 0, done })
    }

    /// Hands `record` to the thread without waiting; `keep`: an event, which must not be lost.
    pub fn send(&mut self, record: Record, keep: bool) {
        let Some(to_thread) = &self.to_thread else { return };
        while !self.backlog.is_empty() {
            match to_thread.try_send(self.backlog[0]) {
                Ok(()) => {
                    self.backlog.remove(0);
                }
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Disconnected(_)) => return, // the thread stopped on an error: said at the end
            }
        }
        if !self.backlog.is_empty() {
            return self.hold(record, keep);
        }
        if let Err(TrySendError::Full(record)) = to_thread.try_send(record) {
            self.hold(record, keep);
        }
    }

    fn hold(&mut self, record: Record, keep: bool) {
        if keep {
            self.backlog.push(record);
        } else {
            self.dropped += 1;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sends the backlog, closes the channel and waits, at most `FINISH_PATIENCE`, for the thread.
    pub fn finish(mut self) -> Result<()> {
        let deadline = Instant::now() + FINISH_PATIENCE;
        let stalled = || {
            anyhow!("the timeline {} was not written within {FINISH_PATIENCE:?}", crate::destination::shown(&self.path))
        };
        if let Some(to_thread) = self.to_thread.take() {
            for record in std::mem::take(&mut self.backlog) {
                let mut record = record;
                loop {
                    match to_thread.try_send(record) {
                        Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                        Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                            record = back;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(TrySendError::Full(_)) => return Err(stalled()),
                    }
                }
            }
        }
        let result = match self.done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result
                .with_context(|| format!("cannot write the timeline to {}", crate::destination::shown(&self.path))),
            Err(_) => Err(stalled()),
        };
        if self.dropped > 0 {
            crate::say(format_args!(
                "pynish: {} sample lines of the timeline dropped: the disk was too slow",
                self.dropped
            ));
        }
        result
    }
}

/// The writer thread: formats and writes records until the channel closes; stops at the first error.
fn write_all(records: Receiver<Record>, mut out: BufWriter<File>) -> std::io::Result<()> {
    block_signals();
    let mut flushed = Instant::now();
    loop {
        match records.recv_timeout(FLUSH_EVERY) {
            Ok(record) => {
                writeln!(out, "{}", format(&record))?;
                if matches!(record, Record::Event(..)) || flushed.elapsed() >= FLUSH_EVERY {
                    out.flush()?;
                    flushed = Instant::now();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                out.flush()?;
                flushed = Instant::now();
            }
            Err(RecvTimeoutError::Disconnected) => return out.flush(),
        }
    }
}

/// Leaves every signal to the watch loop's thread (a handler run here would only interrupt a write).
fn block_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
}

/// Seconds, rounded to the millisecond.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

#[derive(Serialize)]
struct SampleLine {
    t: f64,
    cpu_user_s: f64,
    cpu_system_s: f64,
    memory_bytes: u64,
    processes: u64,
}

/// An event line's fields after `t`.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum EventFields {
    Signal {
        signal: Cow<'static, str>,
        processes: usize,
        cause: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        received: Option<Cow<'static, str>>,
    },
    Sigkill {
        processes: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        cause: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        received: Option<Cow<'static, str>>,
    },
    OomKill,
    ForkRefused,
    SoftLimit {
        limit: crate::limits::LimitKind,
        signal: Cow<'static, str>,
        processes: usize,
    },
    /// The kernel OOM-killed a member by a limit outside the run.
    OomOutside,
    /// The kernel refused a fork by a process limit outside the run.
    ForkRefusedOutside,
    Exit {
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<Cow<'static, str>>,
    },
    End {
        verdict: Verdict,
        exit_code: u8,
        cpu_user_s: f64,
        cpu_system_s: f64,
        peak_memory_bytes: u64,
        max_processes: u64,
        dropped_lines: u64,
    },
}

/// The `cause` field, and `received` with it.
fn describe(cause: Cause) -> (Value, Option<Cow<'static, str>>) {
    match cause {
        Cause::Limit(kind) => (json!(Verdict::from(kind)), None),
        Cause::Received(received) => (json!("signal"), Some(received.name())),
        Cause::CommandEnded => (json!("command_ended"), None),
    }
}

/// One line of JSON (without the newline), `t` first.
pub fn format(record: &Record) -> String {
    match *record {
        Record::Line(Line { t, cpu_user, cpu_system, memory, processes }) => {
            let line = SampleLine {
                t: secs(t),
                cpu_user_s: secs(cpu_user),
                cpu_system_s: secs(cpu_system),
                memory_bytes: memory,
                processes,
            };
            serde_json::to_string(&line).expect("plain values")
        }
        Record::Event(t, event) => {
            let fields = match event {
                Event::Signal { signal, processes, cause } => {
                    let (cause, received) = describe(cause);
                    EventFields::Signal { signal: signal.name(), processes, cause, received }
                }
                Event::Sigkill { processes, cause } => {
                    let (cause, received) = cause.map(describe).unzip();
                    EventFields::Sigkill { processes, cause, received: received.flatten() }
                }
                Event::OomKill => EventFields::OomKill,
                Event::ForkRefused => EventFields::ForkRefused,
                Event::Soft { limit, signal, processes } => {
                    EventFields::SoftLimit { limit, signal: signal.name(), processes }
                }
                Event::Outside(LimitKind::Processes) => EventFields::ForkRefusedOutside,
                Event::Outside(_) => EventFields::OomOutside,
                Event::Exit(Status::Exited(code)) => EventFields::Exit { code: Some(code), signal: None },
                Event::Exit(Status::Signaled(signal)) => EventFields::Exit { code: None, signal: Some(signal.name()) },
                Event::End { verdict, exit_code, usage, dropped } => EventFields::End {
                    verdict,
                    exit_code,
                    cpu_user_s: secs(usage.cpu_user),
                    cpu_system_s: secs(usage.cpu_system),
                    peak_memory_bytes: usage.peak_memory,
                    max_processes: usage.max_processes,
                    dropped_lines: dropped,
                },
            };
            let fields = serde_json::to_string(&fields).expect("plain values");
            // `fields` is an object: `{"event":...}`; `t` goes in front.
            let t = serde_json::to_string(&secs(t)).expect("a finite number");
            format!("{{\"t\":{t},{}", &fields[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitKind;
    use crate::signals::{Sig, parse_signal};
    use nix::sys::signal::Signal;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn lines_are_json_with_t_first() {
        let line = Line { t: ms(1500), cpu_user: ms(250), cpu_system: ms(1), memory: 4096, processes: 2 };
        assert_eq!(
            format(&Record::Line(line)),
            r#"{"t":1.5,"cpu_user_s":0.25,"cpu_system_s":0.001,"memory_bytes":4096,"processes":2}"#
        );
        let signal = Event::Signal { signal: Sig::TERM, processes: 3, cause: Cause::Limit(LimitKind::Memory) };
        assert_eq!(
            format(&Record::Event(ms(612), signal)),
            r#"{"t":0.612,"event":"signal","signal":"SIGTERM","processes":3,"cause":"memory"}"#
        );
        let int = Sig::from(Signal::SIGINT);
        let received = Event::Signal { signal: int, processes: 1, cause: Cause::Received(int) };
        let text = format(&Record::Event(ms(1), received));
        assert!(text.ends_with(r#""cause":"signal","received":"SIGINT"}"#), "{text}");
        assert_eq!(format(&Record::Event(ms(2), Event::OomKill)), r#"{"t":0.002,"event":"oom_kill"}"#);
        let refused = format(&Record::Event(ms(3000), Event::ForkRefused));
        assert_eq!(refused, r#"{"t":3.0,"event":"fork_refused"}"#, "t written as samples write it");
        let outside = format(&Record::Event(ms(4), Event::Outside(LimitKind::Memory)));
        assert_eq!(outside, r#"{"t":0.004,"event":"oom_outside"}"#);
        let outside = format(&Record::Event(ms(5), Event::Outside(LimitKind::Processes)));
        assert_eq!(outside, r#"{"t":0.005,"event":"fork_refused_outside"}"#);
        let exit = Event::Exit(Status::Signaled(Sig::KILL));
        assert_eq!(format(&Record::Event(ms(3), exit)), r#"{"t":0.003,"event":"exit","signal":"SIGKILL"}"#);
        let real_time = parse_signal("RTMIN+6").unwrap();
        let rt = Event::Signal { signal: real_time, processes: 2, cause: Cause::Limit(LimitKind::WallTime) };
        assert!(format(&Record::Event(ms(4), rt)).contains(r#""signal":"SIGRTMIN+6""#));
        let exit = Event::Exit(Status::Signaled(real_time));
        assert_eq!(format(&Record::Event(ms(5), exit)), r#"{"t":0.005,"event":"exit","signal":"SIGRTMIN+6"}"#);
        let end = Event::End { verdict: Verdict::Memory, exit_code: 122, usage: Default::default(), dropped: 0 };
        let end: Value = serde_json::from_str(&format(&Record::Event(ms(4), end))).unwrap();
        assert_eq!(end["event"], "end");
        assert_eq!(end["verdict"], "memory");
        assert_eq!(end["exit_code"], 122);
    }
}
