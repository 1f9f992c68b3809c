//! pynish runs one command under wall-time, CPU-time, memory and process limits that hold for its whole
//! process tree, and reports, beyond doubt, what happened.
//!
//! # Theory of operation
//!
//! **Process model.** pynish makes itself a child subreaper, then starts the command in a process group of its
//! own, with the rlimits, the cgroup placement (on cgroup v2: born in its group, `clone3`) and a parent-death
//! signal set in the child before `exec` (`spawn`), and with what it inherited from pynish's caller as it would
//! be without pynish (`inherit`: closed standard descriptors, ignored signals, an empty signal mask, SIGCHLD at
//! its default). Every descendant of
//! the command, daemonized or not, stays a descendant of pynish: an orphan is re-parented to pynish, not to init.
//! So "pynish has no child left" is exactly "the tree is gone", and pynish ends only then.
//!
//! **Watch loop.** One single-threaded loop (`monitor`) sleeps in `ppoll` on a self-pipe fed by the signals it
//! handles, with a timeout that is the nearest deadline: the wall-clock limit, the next adaptive sample of the
//! tree (`tree`: a cgroup when a memory or process limit needs one and one can be made, else `/proc`), or the end
//! of the grace period.
//!
//! **Escalation.** On the first limit crossed (or a terminating signal received, or the command's first process
//! ending while others live on) the first signal goes to every member, then SIGCONT; after the grace period
//! SIGKILL goes to every member, again and again until none is left. The verdict (`verdict`) is decided from the
//! facts only once everything is reaped; the report (`report`) is written after that, so it never mixes with the
//! command's output.
//!
//! **Output.** With `--output`, the command's stdout and stderr are one pipe that a thread of pynish's own
//! (`capture`) drains into the file while the loop watches, so that the loop never waits on output and output
//! never waits on the loop; once the tree is gone the thread takes what the pipe still holds, and only then is
//! the report written.
//!
//! **Timeline.** With `--timeline`, the monitor hands each sample it takes, and each event, to `timeline`, which
//! thins them and passes lines to a writer thread; `plot` draws the file afterwards.
//!
//! # Layers
//!
//! Every module uses only what stands below it, so that each can be read, changed and tested without the ones
//! above (`../shared/tools/modgraph.py src` finds any circle, and CI fails on one):
//!
//! ```text
//! main ──► cli ──► settings        clap types stop in cli; settings is the checked run spec, a pure value
//!  │                  ▲
//!  └──► run ──────────┘             orchestration: backend, supervision, verdict, outputs
//!        ├──► capture ──► destination  --output: the pipe's reader thread, the cap
//!        ├──► monitor ──► tree/ (proc, cgroup v1, v2), spawn (──► clone3), adopt, terminal, wakeup
//!        │      └──► timeline ──┐
//!        ├──► report ───────────┼──► record   plain data: asked, facts, usage, escalation, outcome;
//!        └──► verdict ──────────┘             the monitor fills it, the others read it
//!
//! leaves, for any layer: limits, units, signals, exit_code, procfs, inherit, destination (the path checks)
//! ```
//!
//! The monitor fills the `record`; `verdict` decides from its facts; `report` renders the report from it (`schema1` its frozen first layout) and
//! `timeline` its header and `end` line. A new output therefore learns the record, never the monitor's types,
//! and a change to the report's layout stays in `report`.
//!
//! # Reading reports from Rust
//!
//! The library's public modules are the report's types and what builds them (`report`, `record`, `verdict`,
//! `limits`, `exit_code`) and the command line (`cli`, `settings`, `units`, `signals`), so that a benchmark
//! harness or a CI tool reads pynish's reports with the very types that wrote them:
//!
//! ```
//! use pynish::report::Report;
//! use pynish::verdict::Verdict;
//!
//! // A report pynish wrote (tests/golden/ has the run that gave it): a 1 s wall-time limit, a command that
//! // ignored SIGTERM and got SIGKILL after the 0.2 s grace.
//! let line = include_str!("../tests/golden/report-schema-1.json");
//! // A schema-1 line reads into today's types (schema 2 only adds fields, each with a default).
//! let report: Report = serde_json::from_str(line).expect("a schema-1 report");
//! assert_eq!(report.schema, 1);
//! assert_eq!(report.verdict, Verdict::WallTime);
//! assert_eq!(report.exit_code, pynish::exit_code::WALL_TIME);
//! assert_eq!(report.limits.wall_time_s, Some(1.0));
//! assert!(report.usage.wall_time_s >= 1.0);
//! assert_eq!(report.escalation.first_signal.as_deref(), Some("SIGTERM"));
//! assert!(report.escalation.sigkill_sent);
//! // Written back as schema 1 (`--schema 1`), it is the same line.
//! assert_eq!(pynish::schema1::to_json(&report), line.trim_end());
//! ```

#![deny(missing_docs)]

#[cfg(target_os = "linux")]
mod capture;
pub mod cli;
mod destination;
pub mod exit_code;
mod fork_helper;
mod inherit;
pub mod limits;
mod plot;
pub mod record;
pub mod report;
pub mod schema1;
pub mod settings;
pub mod signals;
mod tree;
pub mod units;
pub mod verdict;

#[cfg(target_os = "linux")]
mod adopt;
#[cfg(target_os = "linux")]
mod check;
#[cfg(target_os = "linux")]
mod clone3;
#[cfg(target_os = "linux")]
mod delegate;
#[cfg(target_os = "linux")]
mod lifeline;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod mathlib;
#[cfg(target_os = "linux")]
mod monitor;
#[cfg(target_os = "linux")]
mod procfs;
#[cfg(target_os = "linux")]
mod run;
#[cfg(target_os = "linux")]
mod spawn;
#[cfg(target_os = "linux")]
mod terminal;
#[cfg(target_os = "linux")]
mod timeline;
#[cfg(target_os = "linux")]
mod wakeup;

/// Writes one line to stderr, ignoring failure: a closed or broken stderr must cost neither the verdict, the
/// exit code, nor the clean-up of the tree (`eprintln!` would panic on EPIPE).
pub fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Writes one line to stdout, ignoring a reader that went away.
fn say_out(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Parses the command line and runs; returns pynish's exit status. Every error, bad input included, ends with 125
/// and one line on stderr.
pub fn main() -> u8 {
    inherit::reset_sigchld();
    if fork_helper::asked() {
        return fork_helper::write();
    }
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(cli::Refused::Usage(error)) => return usage_error(error),
        Err(cli::Refused::Env(problem)) => {
            say(format_args!("pynish: {problem}"));
            return exit_code::ERROR;
        }
    };
    #[cfg(target_os = "linux")]
    {
        run::run(cli)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cli;
        say(format_args!("pynish: only Linux is supported so far"));
        exit_code::ERROR
    }
}

/// clap's errors span several lines and exit 2; pynish promises one line and 125 (help and version still exit 0).
fn usage_error(error: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    #[cfg(target_os = "linux")]
    if error.kind() == ErrorKind::DisplayVersion {
        say_out(format_args!("pynish {} ({})", env!("CARGO_PKG_VERSION"), check::summary()));
        return 0;
    }
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return 0;
    }
    let rendered = error.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if first.ends_with(':') {
        // "the following required arguments were not provided:", then one indented line per argument, before
        // the usage: the one line names them.
        let listed: Vec<&str> = lines.take_while(|l| !l.starts_with("Usage:")).collect();
        first = format!("{} {}", first, listed.join(", "));
    }
    say(format_args!("pynish: {first} (see pynish --help)"));
    exit_code::ERROR
}

/// What Rust's runtime does before `fn main` that pynish keeps, for the C `main` in main.rs (see there): SIGPIPE
/// ignored (a reader that goes away is an EPIPE that pynish ignores, not its death with the tree still running),
/// and descriptors 0, 1 and 2 that were closed opened on /dev/null, so that no file pynish opens takes their
/// number and receives what is meant for stdout or stderr.
#[cfg(unix)]
pub fn prepare_process() {
    use nix::libc;
    // SAFETY: SIG_IGN installs no handler code; poll reads the three pollfd entries it is given; open with a
    // constant C string. Nothing else runs yet: pynish is single-threaded here.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
        while libc::poll(fds.as_mut_ptr(), 3, 0) < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
        for fd in fds {
            if fd.revents & libc::POLLNVAL != 0 && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) < 0 {
                libc::abort();
            }
        }
    }
}
