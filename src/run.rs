//! One supervised run, start to finish: pick the backend, supervise, decide, report, exit as the command did.

use crate::cli::{Cli, Sub};
use crate::exit_code::{self, ExitCode};
use crate::monitor::{self, Log};
use crate::record::Enforcement;
use crate::report::{self, Report};
use crate::settings::Settings;
use crate::signals::Sig;
use crate::spawn::SpawnError;
use crate::timeline::{self, Event, Timeline};
use crate::tree::{self, Tree};
use crate::verdict::{self, Verdict};
use anyhow::Result;

/// How pynish itself ends.
enum Exit {
    Code(u8),
    /// Die of this signal, as the command did (the shell then sees a real signal death).
    Signal(Sig),
}

/// Runs and returns pynish's exit status (unless it dies of the command's signal first).
pub fn run(cli: Cli) -> u8 {
    match supervise(cli) {
        Ok(Exit::Code(code)) => code,
        Ok(Exit::Signal(signal)) => die_of(signal),
        Err(error) => {
            crate::say(format_args!("pynish: {error:#}"));
            exit_code::ERROR
        }
    }
}

fn supervise(cli: Cli) -> Result<Exit> {
    match cli.subcommand {
        Some(Sub::Check { json }) => return crate::check::run(json).map(Exit::Code),
        Some(Sub::Plot { file, output }) => return crate::plot::run(&file, output.as_deref()).map(|()| Exit::Code(0)),
        None => {}
    }
    let settings = Settings::from_cli(cli)?;
    if let Some(adopt) = settings.adopt {
        crate::adopt::validate(adopt)?;
    }
    if let Some(fd) = settings.lifeline {
        crate::lifeline::validate(fd)?;
    }
    let log = Log { verbose: settings.verbose };
    crate::delegate::maybe_rerun(&settings, &settings.limits)?;
    let opened = settings.timeline.as_deref().map(timeline::open).transpose()?;
    let (mut tree, why) = tree::select(settings.backend, &settings.limits)?;
    if tree.name() == "proc"
        && let Some(reason) = tree::proc::refusal(&settings.limits)
    {
        anyhow::bail!("{reason} (backend proc: {why})");
    }
    if tree.name() == "proc" && settings.limits.cpu_quota.is_some() {
        anyhow::bail!("{} (backend proc: {why})", tree::CPU_QUOTA_NEEDS);
    }
    log.event(format_args!("backend {} ({why})", tree.name()));
    let started = report::Started::now();
    let mut timeline = match opened {
        Some(opened) => {
            tree.split_cpu();
            Some(Timeline::start(opened, &timeline_header(&settings, tree.as_ref(), &started))?)
        }
        None => None,
    };
    // Last before the command starts: nothing that can fail is left between here and `finish`.
    let (capture, output) = match &settings.output {
        Some(path) => {
            let (capture, pipe) = crate::capture::start(path, settings.output_limit)?;
            (Some(capture), Some(pipe))
        }
        None => (None, None),
    };
    let result = monitor::supervise(&settings, tree.as_mut(), &log, timeline.as_mut(), output);
    // The tree is gone: what it wrote is in the pipe, and goes to FILE before the report says how much.
    let captured = capture
        .and_then(|capture| capture.finish().map_err(|error| crate::say(format_args!("pynish: {error:#}"))).ok());
    if let Err(error) = tree.cleanup() {
        crate::say(format_args!("pynish: {error:#}"));
    }
    let backend = tree.name();
    let asked = settings.asked();
    let result_usage = result.as_ref().ok().map(|outcome| (outcome.wall, outcome.usage));
    let (report, exit) = match result {
        Ok(outcome) => {
            let (verdict, code) = verdict::decide(&outcome.facts);
            let mut enforcement = enforcement(&settings, tree.as_ref());
            if outcome.facts.limit.is_none() && outcome.facts.kernel_limit == Some(crate::limits::LimitKind::CpuTime) {
                enforcement.cpu_time = Some("rlimit".to_owned()); // RLIMIT_CPU's SIGXCPU ended the command before pynish did
            }
            let report = Report::from_outcome(&asked, &outcome, verdict, code, backend, enforcement);
            if !settings.quiet
                && !settings.json
                && settings.report.is_none()
                && settings.report_fd.is_none()
                && let Some(line) = report::message(&settings.limits, settings.grace, &outcome, verdict, backend)
            {
                crate::say(format_args!("{line}"));
            }
            // Said even with --json: the report's `oom` names it, the line points at the limit that did it.
            if !settings.quiet
                && let Some(line) = report::outside_message(&settings.limits, &outcome)
            {
                crate::say(format_args!("{line}"));
            }
            let exit = match (verdict, code) {
                (Verdict::Signaled, ExitCode::Signal(signal)) => Exit::Signal(signal),
                _ => Exit::Code(code.into()),
            };
            (report, exit)
        }
        Err(error) => {
            let (code, text) = match error {
                SpawnError::NotFound(cmd) => (ExitCode::NotFound, format!("{cmd}: command not found")),
                SpawnError::NotExecutable(cmd, why) => {
                    (ExitCode::NotExecutable, format!("{cmd}: cannot execute: {why}"))
                }
                SpawnError::Setup(error) => (ExitCode::Error, format!("{error:#}")),
            };
            crate::say(format_args!("pynish: {text}"));
            (Report::spawn_error(&asked, code, backend, text), Exit::Code(code.into()))
        }
    };
    let mut report = report.started(&started);
    report.output = captured;
    if let Some(mut timeline) = timeline {
        let (wall, usage) = result_usage.unwrap_or_default();
        let (verdict, exit_code) = (report.verdict, report.exit_code);
        timeline.event(wall, Event::End { verdict, exit_code, usage, dropped: timeline.dropped() });
        if let Err(error) = timeline.finish() {
            crate::say(format_args!("pynish: {error:#}"));
        }
    }
    // The tree is gone and the verdict stands: a report that cannot be written is said, not allowed to replace
    // the verdict's exit status.
    if let Err(error) = emit(&settings, &report) {
        crate::say(format_args!("pynish: {error:#}"));
    }
    Ok(exit)
}

/// The timeline's first line: what its samples are measured against.
fn timeline_header(settings: &Settings, tree: &dyn Tree, started: &report::Started) -> timeline::Header {
    let asked = settings.asked();
    timeline::Header {
        timeline: timeline::FORMAT,
        pynish: env!("CARGO_PKG_VERSION"),
        backend: tree.name(),
        limits: asked.limits,
        enforcement: enforcement(settings, tree),
        command: asked.command,
        label: asked.label,
        started_at: started.at.clone(),
        hostname: started.hostname.clone(),
    }
}

/// Which mechanism holds each limit asked, as the backend says; `--cpus` is the backend's cpuset where it adds one.
fn enforcement(settings: &Settings, tree: &dyn Tree) -> Enforcement {
    let mut enforcement = Enforcement::new(&settings.limits, &|kind| tree.enforcement(kind));
    if let (Some(_), Some(held)) = (&enforcement.cpus, tree.cpus_held_by()) {
        enforcement.cpus = Some(held.to_owned());
    }
    enforcement
}

/// Writes the report wherever it was asked for.
fn emit(settings: &Settings, report: &Report) -> Result<()> {
    let json = match settings.schema {
        1 => crate::schema1::to_json(report),
        _ => report.to_json(),
    };
    if settings.json {
        use std::io::Write;
        // A closed stderr must not cost the other destinations their report.
        let _ = writeln!(std::io::stderr(), "{json}");
    }
    if let Some(fd) = settings.report_fd {
        report::write_fd(fd, &json)?;
    }
    if let Some(path) = &settings.report {
        report::write_file(path, &json)?;
    }
    Ok(())
}

/// Ends pynish by `signal`, as the command ended, so that a calling shell sees a real signal death (and, for
/// SIGINT, stops its script as it would without pynish). Core dumps of pynish itself are disabled first.
/// Plain libc calls, not nix's, which name only the standard signals: a command may die of a real-time one.
fn die_of(signal: Sig) -> u8 {
    use nix::sys::resource::{Resource, setrlimit};
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    let number = signal.number();
    // SAFETY: restoring the default disposition installs no Rust code as a handler; the set is a local value
    // filled by sigemptyset before use; raise takes a plain number.
    unsafe {
        libc::signal(number, libc::SIG_DFL);
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, number);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(number);
    }
    // Still here: the signal's default action does not terminate (e.g. SIGCHLD); use the shell's number.
    u8::from(ExitCode::Signal(signal))
}
