//! The command-line definition, and its conversion into `Settings`: clap types stop here.

use crate::limits::{Limits, MemoryKind};
use crate::settings::{Adopt, Settings};
use crate::signals::{Sig, parse_signal};
use crate::tree::BackendChoice;
use crate::units::{parse_duration, parse_size};
use clap::{Parser, Subcommand, ValueEnum, ValueHint};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const LONG_ABOUT: &str = "\
Run one command under wall-time, CPU-time, memory and process limits that hold for its whole process tree, \
escalate from a polite signal to SIGKILL, and report what happened: completed (with its exit code), killed by a \
signal, or stopped at a limit, and which one.";

/// Both `-h` and `--help` print the short help, which must stay within 40 lines at 100 columns (so --report-fd
/// and --label show in `pynish help` only); the usage is spelled out because clap's own (`<COMMAND>...`) hides
/// the `--` and the subcommands' arguments.
const USAGE: &str =
    "pynish [OPTIONS] -- COMMAND [ARGS]...\n       pynish check [--json] | pynish plot FILE [-o OUT.svg]";

const AFTER_HELP: &str = "\
Exit status: the command's own, or a limit's (above); 128+N: killed by signal N; 125: bad input;
126: cannot execute; 127: not found. More: pynish help (units, environment), man pynish (report).";

const AFTER_LONG_HELP: &str = "\
Units:
  Durations: 250ms, 7s, 1.5h, 1h 30m, 2d; a bare number is seconds (as in GNU timeout).
  Sizes: 500MB = 500*10^6 bytes, 500MiB = 500*2^20 bytes, 1.5GiB; a bare number is bytes.

Exit status:
  N      the command exited by itself with code N, within its limits
  128+N  the command was killed by signal N (not sent by pynish), or pynish was asked to stop by N
  124    wall-time limit reached           123  CPU-time limit reached
  122    memory limit reached              121  process limit reached
  120    a member wrote past --file-size (it was killed by SIGXFSZ)
  125    pynish failed or the input was bad; nothing is run
  126    the command cannot be executed    127  the command was not found
  A limit is the verdict even if the command exits 0 in the grace period or the kernel killed it.
  With --preserve-status the command's own status is returned even when a limit was hit.

Environment:
  PYNISH_GRACE, PYNISH_SIGNAL and PYNISH_BACKEND set defaults for --grace, --signal and --backend;
  a flag on the command line wins over the environment.

The JSON report and what pynish guarantees: man pynish (or README.md).";

/// Run a command under limits that hold for its whole process tree, and report the verdict
#[derive(Debug, Parser)]
#[command(
    name = "pynish",
    version,
    override_usage = USAGE,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    after_long_help = AFTER_LONG_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_flag = true,
    max_term_width = 100
)]
pub struct Cli {
    /// `pynish check` or `pynish plot`, in place of a run.
    #[command(subcommand)]
    pub subcommand: Option<Sub>,

    /// Real time, e.g. 7s, 1.5h (exit 124)
    ///
    /// Counted from the start of the command, as GNU timeout does.
    #[arg(short = 'w', long, value_name = "DUR", value_hint = ValueHint::Other, value_parser = positive_duration, help_heading = "Limits")]
    pub wall_time: Option<Duration>,

    /// CPU time, user + system, of the whole tree (exit 123)
    ///
    /// Members of the tree that have ended count too.
    #[arg(short = 'c', long, value_name = "DUR", value_hint = ValueHint::Other, value_parser = positive_duration, help_heading = "Limits")]
    pub cpu_time: Option<Duration>,

    /// Memory of the whole tree, e.g. 500MB, 2GiB (exit 122)
    ///
    /// 500MB is 500*10^6 bytes, 500MiB is 500*2^20 bytes, a bare number is bytes; --memory-kind says what is
    /// counted.
    #[arg(short = 'm', long, value_name = "SIZE", value_hint = ValueHint::Other, value_parser = positive_size, help_heading = "Limits")]
    pub memory: Option<u64>,

    /// What -m counts
    #[arg(long, value_name = "KIND", value_enum, default_value_t = MemoryKind::Resident, help_heading = "Limits")]
    pub memory_kind: MemoryKind,

    /// Processes alive at once in the tree (exit 121)
    ///
    /// More than N alive at once is over the limit; members that have ended do not count.
    #[arg(short = 'p', long, value_name = "N", value_hint = ValueHint::Other, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Limits")]
    pub processes: Option<u64>,

    /// Warn the tree when it has run this long: --soft-signal to every member, once
    ///
    /// The run goes on under its hard limits; the report's `soft` lists each soft limit reached and when. Below
    /// --wall-time, if both are given. Like Slurm's --signal=SIG@TIME, counted from the start.
    #[arg(long, value_name = "DUR", value_hint = ValueHint::Other, value_parser = positive_duration, hide_short_help = true, help_heading = "Soft limits")]
    pub soft_wall_time: Option<Duration>,

    /// Warn the tree when it has used this much CPU time (user + system, ended members included)
    ///
    /// Counted and timed as --cpu-time is (a few ms late at most); below --cpu-time, if both are given.
    #[arg(long, value_name = "DUR", value_hint = ValueHint::Other, value_parser = positive_duration, hide_short_help = true, help_heading = "Soft limits")]
    pub soft_cpu_time: Option<Duration>,

    /// Warn the tree when its memory exceeds SIZE (counted as --memory counts resident memory)
    ///
    /// Sampled by pynish on every backend; nothing is throttled (no memory.high). Below --memory, if both are
    /// given.
    #[arg(long, value_name = "SIZE", value_hint = ValueHint::Other, value_parser = positive_size, hide_short_help = true, help_heading = "Soft limits")]
    pub soft_memory: Option<u64>,

    /// The warning a soft limit sends (default URG: ignored unless the command listens for it)
    ///
    /// SIGURG's default action is to ignore it, so a command that does not handle the warning is never ended by
    /// it. Name USR1, USR2, TERM, ... for one the command traps. If the warning itself ends the command's first
    /// process, the verdict is that soft limit's (wall_time, cpu_time or memory).
    #[arg(long, value_name = "SIG", value_hint = ValueHint::Other, value_parser = parse_signal, default_value = "URG", hide_short_help = true, help_heading = "Soft limits")]
    pub soft_signal: Sig,

    /// Descriptors each process may hold open (RLIMIT_NOFILE)
    ///
    /// Set in the command before exec and inherited by every descendant, as prlimit --nofile would set it for
    /// one process. Above the hard limit pynish inherited it is refused, unless pynish is privileged.
    #[arg(long, value_name = "N", value_hint = ValueHint::Other, value_parser = clap::value_parser!(u64).range(1..), hide_short_help = true, help_heading = "Per-process limits")]
    pub open_files: Option<u64>,

    /// Bytes each process may write to one file (RLIMIT_FSIZE; exit 120)
    ///
    /// A process writing past it gets SIGXFSZ (or EFBIG when it ignores that); a member killed by SIGXFSZ is a
    /// limit hit: verdict file_size, exit 120. Inherited by every descendant.
    #[arg(long, value_name = "SIZE", value_hint = ValueHint::Other, value_parser = parse_size, hide_short_help = true, help_heading = "Per-process limits")]
    pub file_size: Option<u64>,

    /// Main-thread stack of each process (RLIMIT_STACK)
    ///
    /// Set in the command before exec and inherited by every descendant, e.g. 8MiB.
    #[arg(long, value_name = "SIZE", value_hint = ValueHint::Other, value_parser = positive_size, hide_short_help = true, help_heading = "Per-process limits")]
    pub stack: Option<u64>,

    /// Largest core dump of each process (RLIMIT_CORE); 0 forbids core dumps
    ///
    /// Set in the command before exec and inherited by every descendant.
    #[arg(long, value_name = "SIZE", value_hint = ValueHint::Other, value_parser = parse_size, hide_short_help = true, help_heading = "Per-process limits")]
    pub core_size: Option<u64>,

    /// Run the whole tree on these CPUs only, e.g. 0,2-3 (as taskset -c)
    ///
    /// Set with sched_setaffinity before exec and inherited by every member; with --backend cgroup1 also a
    /// cpuset group, so that no member can widen its own. Each CPU must be online and allowed to pynish.
    #[arg(long, value_name = "LIST", value_hint = ValueHint::Other, value_parser = parse_cpus, hide_short_help = true, help_heading = "CPUs")]
    pub cpus: Option<CpuList>,

    /// At most this many CPUs' worth of time per second, for the whole tree together, e.g. 0.5, 1.5
    ///
    /// The kernel's CPU controller throttles the tree (cpu.cfs_quota_us on cgroup v1, cpu.max on v2): needs a
    /// cgroup backend with a cpu controller, and is refused where there is none (pynish check says which this
    /// machine has), never run unthrottled.
    #[arg(long, value_name = "CORES", value_hint = ValueHint::Other, value_parser = positive_cores, hide_short_help = true, help_heading = "CPUs")]
    pub cpu_quota: Option<f64>,

    /// Time from the first signal to SIGKILL
    #[arg(short = 'g', long, value_name = "DUR", value_hint = ValueHint::Other, value_parser = parse_duration, default_value = "2s", env = "PYNISH_GRACE", help_heading = "Escalation")]
    pub grace: Duration,

    /// The first signal, a name or number
    ///
    /// Sent to every member of the tree when a limit is reached (TERM, SIGINT, 9, ...); SIGKILL follows after
    /// the grace period. Real-time signals too: by number (40) or by name as kill -l prints it (RTMIN+6, SIGRTMAX-2).
    #[arg(short = 's', long, value_name = "SIG", value_hint = ValueHint::Other, value_parser = parse_signal, default_value = "TERM", env = "PYNISH_SIGNAL", help_heading = "Escalation")]
    pub signal: Sig,

    /// Exit with the command's own status even when a limit was hit
    #[arg(long, help_heading = "Escalation")]
    pub preserve_status: bool,

    /// When the command's first process ends, leave what it left behind running and end pynish there
    ///
    /// By default pynish ends every process the command left behind (daemons, setsid grandchildren) once the
    /// command's first process has ended. With this flag pynish reports and exits at once instead, and the
    /// leftovers run on unsupervised and unlimited, as under `timeout`. It needs the proc backend (a cgroup's
    /// members die with the group pynish removes): `--backend auto` then means proc, and a cgroup backend is
    /// refused. Limits still hold until the first process ends.
    #[arg(long, hide_short_help = true, help_heading = "Escalation")]
    pub leave_leftovers: bool,

    /// Print the JSON report on stderr once the whole tree is gone
    ///
    /// One object on one line, after everything the command printed.
    #[arg(long, help_heading = "Reporting")]
    pub json: bool,

    /// Write the JSON report to FILE, atomically
    ///
    /// Through a temporary file in the same directory and a rename; the directory must exist.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = "Reporting")]
    pub report: Option<PathBuf>,

    /// Write the JSON report to open descriptor FD (3>run.json)
    ///
    /// One line, e.g. --report-fd 3 ... 3>run.json, or 3>>runs.jsonl to append one line per run.
    // Left out of the short help, like --label, so that it stays within 40 lines (see USAGE).
    #[arg(long, value_name = "FD", value_hint = ValueHint::Other, value_parser = clap::value_parser!(i32).range(0..), hide_short_help = true, help_heading = "Reporting")]
    pub report_fd: Option<i32>,

    /// Write usage over time to FILE, as JSON lines (pynish plot draws it)
    ///
    /// One line per sample (CPU, memory, processes of the whole tree) and per event (signals, kernel kills, the
    /// command's exit), while the command runs; `pynish plot FILE` draws it. Thinned as the run ages, so any run
    /// writes a bounded file.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = "Reporting")]
    pub timeline: Option<PathBuf>,

    /// Send the tree's stdout and stderr to FILE, not to the terminal
    ///
    /// One pipe for both, as `>FILE 2>&1`, so in the order written. Written by the same rules as --report: the
    /// directory must exist; a regular file is replaced atomically once the run is over. See --output-limit.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, conflicts_with = "adopt", hide_short_help = true, help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Keep at most SIZE bytes of output in --output's FILE: the first and the last half
    ///
    /// Where the middle was dropped, one line says how much (its own bytes beyond SIZE). The command is never
    /// blocked or slowed: pynish reads everything and discards the middle, holding the last half in memory.
    /// 64KiB is 65536 bytes, 1MB 10^6.
    #[arg(long, value_name = "SIZE", value_hint = ValueHint::Other, value_parser = positive_size, requires = "output", hide_short_help = true, help_heading = "Output")]
    pub output_limit: Option<u64>,

    /// The report's layout: 2 (the default), or 1 for a reader that refuses keys it does not know
    ///
    /// Schema 2 is schema 1 plus fields (when and where the run started, its I/O, output capture, soft limits,
    /// the kernel's OOM kills outside the run); nothing of schema 1 changed. `--schema 1` writes exactly schema
    /// 1's keys, for a strict reader written against it.
    #[arg(long, value_name = "N", value_hint = ValueHint::Other, value_parser = clap::value_parser!(u32).range(1..=2), default_value_t = crate::report::SCHEMA, env = "PYNISH_SCHEMA", hide_short_help = true, help_heading = "Reporting")]
    pub schema: u32,

    /// A name for this run, carried into the report
    #[arg(long, value_name = "TEXT", value_hint = ValueHint::Other, hide_short_help = true, help_heading = "Reporting")]
    pub label: Option<String>,

    /// Print nothing of pynish's own, not even a limit hit
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Reporting")]
    pub quiet: bool,

    /// Print one line on stderr per supervision event
    #[arg(short, long, help_heading = "Reporting")]
    pub verbose: bool,

    /// How the tree is contained and measured
    #[arg(long, value_name = "BACKEND", value_enum, default_value_t = BackendChoice::Auto, env = "PYNISH_BACKEND", help_heading = "Backend")]
    pub backend: BackendChoice,

    /// No writable cgroup v2 group? Re-run in a delegated systemd scope
    ///
    /// Where cgroup v2 offers the memory and pids controllers but no group this user may write, pynish runs
    /// itself again under `systemd-run --user --scope -p Delegate=yes`, where the cgroup2 backend works
    /// unprivileged. Where that cannot help (no cgroup v2 controllers, no systemd user manager), pynish goes on
    /// with the best backend it has.
    #[arg(long, help_heading = "Backend")]
    pub delegate: bool,

    /// Supervise this existing child of pynish instead of starting COMMAND (needs --adopt-fd)
    ///
    /// For a program that forks the process to limit, holds it on a pipe and then execs pynish (the Python
    /// package's "fork" context does this). PID must be a child of this process that has not been waited for;
    /// pynish puts it in its own process group, the run's cgroups and rlimits (prlimit), gives it the terminal's
    /// foreground when pynish holds it, then releases it by writing one byte ("G") to --adopt-fd and closing it.
    /// If pynish cannot set the run up it kills PID, writes nothing, and exits 125. COMMAND is not run: it is the
    /// argv shown in messages and the report. The held process should arm PR_SET_PDEATHSIG and run only after
    /// reading the byte.
    #[arg(long, value_name = "PID", value_hint = ValueHint::Other, value_parser = clap::value_parser!(i32).range(1..), requires = "adopt_fd", conflicts_with = "delegate", hide_short_help = true, help_heading = "Adopting a process")]
    pub adopt: Option<i32>,

    /// The write end of the pipe the adopted process waits on (see --adopt)
    #[arg(long, value_name = "FD", value_hint = ValueHint::Other, value_parser = clap::value_parser!(i32).range(0..), requires = "adopt", hide_short_help = true, help_heading = "Adopting a process")]
    pub adopt_fd: Option<i32>,

    /// End the tree, as on a SIGTERM to pynish, once every write end of the pipe whose read end is FD is closed
    ///
    /// For a caller that must not leave a run behind when it dies: it keeps the pipe's write end to itself.
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(0..), hide = true)]
    pub lifeline_fd: Option<i32>,

    // Global, since disabling clap's own help flag disables it in `check` too.
    /// Print help (pynish help adds units, exit status and details)
    #[arg(short = 'h', long, action = clap::ArgAction::HelpShort, global = true)]
    pub help: Option<bool>,

    // The usage line shows it, so the short help leaves it out (it must stay within 40 lines).
    /// The command to run, and its arguments
    #[arg(
        value_name = "COMMAND",
        value_hint = ValueHint::CommandWithArguments,
        required = true,
        trailing_var_arg = true,
        num_args = 1..,
        hide_short_help = true,
        long_help = "The command to run, and its arguments; write -- before them"
    )]
    pub command: Vec<OsString>,
}

/// What pynish does instead of a run.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Draw a --timeline file as an SVG
    ///
    /// Memory, CPU time and processes over time, each limit as a dashed line, each event (signals, kernel
    /// kills, the command's exit) as a vertical line; 960x720 pixels, for a CI artifact page.
    Plot {
        /// The timeline (JSON lines) that --timeline wrote
        #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
        file: PathBuf,
        /// Where to write the SVG [default: FILE with the extension .svg]
        #[arg(short, long, value_name = "OUT", value_hint = ValueHint::FilePath)]
        output: Option<PathBuf>,
    },
    /// Tell which limits this machine can enforce, with which backend, and why not the others
    Check {
        /// Print the findings as one JSON object
        #[arg(long)]
        json: bool,
    },
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

fn positive_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("must be greater than zero".into()),
        bytes => Ok(bytes),
    }
}

/// `--cpu-quota`: a positive, finite number of CPUs.
fn positive_cores(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(cores) if cores.is_finite() && cores > 0.0 => Ok(cores),
        _ => Err("not a positive number of CPUs (e.g. 0.5, 2)".into()),
    }
}

/// `--cpus`'s value as one list (a plain `Vec` would make clap take the flag many times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(text: &str) -> Result<CpuList, String> {
    crate::units::parse_cpu_list(text).map(CpuList)
}

/// A command line pynish refuses, before anything runs.
pub enum Refused {
    /// clap's own error (usage, help, version).
    Usage(clap::Error),
    /// A variable of `FROM_ENV` that does not hold a value for its flag, in one line.
    Env(String),
}

/// The variables that give a flag its default: the variable, the flag's id, and the flag's own parser.
#[allow(clippy::type_complexity)]
const FROM_ENV: [(&str, &str, fn(&str) -> Result<(), String>); 4] = [
    ("PYNISH_SCHEMA", "schema", |v| match v.trim() {
        "1" | "2" => Ok(()),
        _ => Err("not 1 or 2".to_owned()),
    }),
    ("PYNISH_GRACE", "grace", |v| parse_duration(v).map(drop)),
    ("PYNISH_SIGNAL", "signal", |v| parse_signal(v).map(drop)),
    ("PYNISH_BACKEND", "backend", |v| {
        <BackendChoice as clap::ValueEnum>::from_str(v, true).map(drop).map_err(|_| {
            let names: Vec<_> = BackendChoice::value_variants()
                .iter()
                .filter_map(|b| b.to_possible_value().map(|p| p.get_name().to_string()))
                .collect();
            format!("not one of {}", names.join(", "))
        })
    }),
];

/// Parses pynish's command line. A variable of `FROM_ENV` is seen as its own, not as its flag: an empty one
/// counts as unset, and a bad one is named (`PYNISH_GRACE='x': ...`), and only where it would be used: a run
/// that does not give its flag. `pynish check` and `pynish plot` never use them.
pub fn parse() -> Result<Cli, Refused> {
    use clap::FromArgMatches;
    use clap::parser::ValueSource;
    let mut command = command();
    let mut bad = Vec::new();
    for (var, id, check) in FROM_ENV {
        // Unless it holds a good value, clap must not read it: it would name the flag, and refuse `check` too.
        let problem = match std::env::var(var) {
            Err(std::env::VarError::NotPresent) => continue,
            Ok(value) if value.trim().is_empty() => None,
            Ok(value) => match check(&value) {
                Ok(()) => continue,
                Err(why) => Some(format!("{var}='{value}' is not a value for --{id}: {why}")),
            },
            Err(std::env::VarError::NotUnicode(value)) => Some(format!("{var}={value:?} is not text")),
        };
        bad.extend(problem.map(|problem| (id, problem)));
        command = command.mut_arg(id, |arg| arg.env(None::<&str>));
    }
    let mut matches = command.try_get_matches().map_err(Refused::Usage)?;
    // Before `from_arg_matches_mut`, which takes the values out.
    let used = bad
        .into_iter()
        .find(|(id, _)| matches.subcommand().is_none() && matches.value_source(id) != Some(ValueSource::CommandLine));
    let cli = Cli::from_arg_matches_mut(&mut matches).map_err(Refused::Usage)?;
    if let Some((_, problem)) = used {
        return Err(Refused::Env(problem));
    }
    Ok(cli)
}

// Here, at the edge, rather than in `settings`: so that `settings` stays a pure value that knows no clap type,
// and `cli` is the only module that does. (An inherent impl may live in any module of the crate; the path
// `Settings::from_cli` is kept for callers.)
impl Settings {
    /// Turns a parsed command line into checked `Settings` (see `Settings::validated`): bad input is an error
    /// here, before anything runs.
    pub fn from_cli(cli: Cli) -> anyhow::Result<Settings> {
        Settings {
            limits: Limits {
                wall_time: cli.wall_time,
                cpu_time: cli.cpu_time,
                memory: cli.memory,
                memory_kind: cli.memory_kind,
                processes: cli.processes,
                soft: crate::limits::Soft {
                    wall_time: cli.soft_wall_time,
                    cpu_time: cli.soft_cpu_time,
                    memory: cli.soft_memory,
                    signal: cli.soft_signal,
                },
                rlimits: crate::limits::Rlimits {
                    open_files: cli.open_files,
                    file_size: cli.file_size,
                    stack: cli.stack,
                    core_size: cli.core_size,
                },
                cpus: cli.cpus.map(|list| list.0),
                cpu_quota: cli.cpu_quota,
            },
            grace: cli.grace,
            signal: cli.signal,
            preserve_status: cli.preserve_status,
            leave_leftovers: cli.leave_leftovers,
            json: cli.json,
            report: cli.report,
            report_fd: cli.report_fd,
            timeline: cli.timeline,
            label: cli.label,
            schema: cli.schema,
            quiet: cli.quiet,
            verbose: cli.verbose,
            backend: cli.backend,
            delegate: cli.delegate,
            command: cli.command,
            adopt: cli.adopt.zip(cli.adopt_fd).map(|(pid, fd)| Adopt { pid, fd }),
            lifeline: cli.lifeline_fd,
            output: cli.output,
            output_limit: cli.output_limit,
        }
        .validated()
    }
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cpu_quota_is_a_positive_number_of_cpus() {
        assert_eq!(super::positive_cores("0.5"), Ok(0.5));
        assert_eq!(super::positive_cores(" 2 "), Ok(2.0));
        for bad in ["0", "-1", "inf", "NaN", "half", ""] {
            assert!(super::positive_cores(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn verify_cli() {
        super::command().debug_assert();
    }
}
