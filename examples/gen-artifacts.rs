//! Regenerates pynish's shell completions (`completions/`) and man pages (`man/`) from the clap definition in
//! `src/cli.rs`, and the man page's EXIT STATUS and JSON REPORT sections from the tables in README.md:
//!
//! ```sh
//! cargo run --example gen-artifacts
//! ```
//!
//! The files are committed, so that a package or a user gets them without building; `tests/artifacts.rs`
//! includes this file and fails when what it renders differs from what is checked in. The output holds no
//! date and no absolute path, so the same sources always render the same bytes.

use clap_complete::{Generator, Shell};
use roff::{Inline, Roff, bold, roman};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a user runs to bring the checked-in files up to date.
pub const REGENERATE: &str = "cargo run --example gen-artifacts";

/// The directories this generator owns entirely: a file in them that it does not render is stale.
pub const DIRS: [&str; 2] = ["completions", "man"];

/// The date in the pages' title line: a constant, so that the output does not change from day to day. Set it to
/// the release date when the version changes.
const MAN_DATE: &str = "2026-11-24";

/// The manual a page belongs to, as `man` names section 1 when the page does not say.
const MANUAL: &str = "General Commands Manual";

const SHELLS: [Shell; 5] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Elvish, Shell::PowerShell];

/// Every generated file: its path relative to the repository, and its contents.
pub fn render(readme: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for shell in SHELLS {
        let mut cmd = pynish::cli::command();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "pynish", &mut out);
        files.push((Path::new("completions").join(shell.file_name("pynish")), out));
    }
    // `pynish help` prints the long help, but it is no page of its own (as clap_mangen::generate_to does).
    let mut cmd = pynish::cli::command().disable_help_subcommand(true);
    cmd.build();
    let check = cmd.find_subcommand("check").expect("the check subcommand").clone();
    let plot = cmd.find_subcommand("plot").expect("the plot subcommand").clone();
    files.push((PathBuf::from("man/pynish.1"), main_page(cmd, readme).into_bytes()));
    files.push((PathBuf::from("man/pynish-check.1"), subcommand_page(check, "PYNISH-CHECK").into_bytes()));
    files.push((PathBuf::from("man/pynish-plot.1"), subcommand_page(plot, "PYNISH-PLOT").into_bytes()));
    files
}

fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).context("cannot read README.md")?;
    for dir in DIRS {
        std::fs::create_dir_all(root.join(dir)).with_context(|| format!("cannot create {dir}/"))?;
    }
    for (path, contents) in render(&readme) {
        std::fs::write(root.join(&path), contents).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// pynish(1): clap_mangen's sections for what clap knows, then the ones a user needs beyond the flags.
fn main_page(cmd: clap::Command, readme: &str) -> String {
    let version = cmd.get_version().unwrap_or_default().to_owned();
    let man =
        clap_mangen::Man::new(cmd).title("PYNISH").date(MAN_DATE).source(format!("pynish {version}")).manual(MANUAL);
    let mut page = Page::default();
    page.clap(|w| man.render_title(w));
    page.clap(|w| man.render_name_section(w));
    page.clap(|w| man.render_synopsis_section(w));
    page.clap(|w| man.render_description_section(w));
    page.roff(description());
    page.clap(|w| man.render_options_section(w));
    page.clap(|w| man.render_subcommands_section(w));
    page.roff(units());
    page.roff(exit_status(readme));
    page.roff(environment());
    page.roff(json_report(readme));
    page.roff(timeline());
    page.roff(guarantees());
    page.roff(examples());
    page.roff(see_also(&[
        "pynish-check(1)",
        "pynish-plot(1)",
        "timeout(1)",
        "prlimit(1)",
        "systemd-run(1)",
        "cgroups(7)",
    ]));
    page.finish()
}

/// pynish-check(1), pynish-plot(1): what clap knows, and the way back to pynish(1).
fn subcommand_page(cmd: clap::Command, title: &str) -> String {
    let source = format!("pynish {}", env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(cmd).title(title).date(MAN_DATE).source(source).manual(MANUAL);
    let mut page = Page::default();
    page.clap(|w| man.render(w));
    page.roff(see_also(&["pynish(1)"]));
    page.finish()
}

/// A man page put together from clap_mangen's sections and our own.
#[derive(Default)]
struct Page {
    text: String,
}

impl Page {
    /// Appends what `render` writes, without the preamble every `roff` document starts with but the first.
    fn clap(&mut self, render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
        let mut out = Vec::new();
        render(&mut out).expect("rendering to memory cannot fail");
        let text = String::from_utf8(out).expect("roff output is UTF-8");
        self.push(&text);
    }

    fn roff(&mut self, roff: Roff) {
        self.push(&roff.render());
    }

    fn push(&mut self, text: &str) {
        let preamble = Roff::new().render();
        match text.strip_prefix(&preamble) {
            Some(body) if !self.text.is_empty() => self.text.push_str(body),
            _ => self.text.push_str(text),
        }
    }

    /// The page in plain ASCII (other characters become groff's `\[uXXXX]`, which man, groff and mandoc read
    /// whatever the locale), tidied so that `mandoc -T lint` finds nothing either: no trailing blanks, no blank
    /// lines (`.sp`), no `.br` around one (clap_mangen puts them before "Possible values"), no `.PP` right after
    /// `.SH`.
    fn finish(self) -> String {
        let mut lines: Vec<&str> = Vec::new();
        for line in self.text.lines() {
            let mut line = line;
            while line.ends_with(' ') && !line.ends_with("\\ ") {
                line = &line[..line.len() - 1];
            }
            let line = if line.is_empty() { ".sp" } else { line };
            let previous = lines.last().copied().unwrap_or_default();
            match (previous, line) {
                (".br", ".sp") => *lines.last_mut().expect("a previous line") = ".sp",
                (".sp", ".br") | (".sp", ".sp") => {}
                (sh, ".PP") if sh.starts_with(".SH") => {}
                _ => lines.push(line),
            }
        }
        let mut out = String::with_capacity(self.text.len());
        for line in lines {
            for c in line.chars() {
                if c.is_ascii() {
                    out.push(c);
                } else {
                    out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// A paragraph whose `code` spans are set in bold.
fn para(roff: &mut Roff, text: &str) {
    roff.control("PP", []);
    roff.text(inline(text));
}

/// A tagged paragraph: `tag` in bold, then `text`.
fn item(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text(inline(text));
}

/// Lines shown as they are, indented (commands).
fn literal(roff: &mut Roff, lines: &[&str]) {
    roff.control("RS", ["4"]);
    roff.control("nf", []);
    for line in lines {
        roff.text([roman(*line)]);
    }
    roff.control("fi", []);
    roff.control("RE", []);
}

/// Markdown inline text to roff: `code` in bold, `**strong**` in bold, `\|` (a pipe inside a table) as `|`.
fn inline(text: &str) -> Vec<Inline> {
    let text = text.replace("\\|", "|").replace("**", "`");
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

/// The rows of the first table after the line `## {heading}...` in the README, header row left out.
fn readme_table(readme: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = readme.lines().skip_while(|line| !line.starts_with(&format!("## {heading}")));
    assert!(lines.next().is_some(), "README.md has no section '## {heading}'");
    let rows: Vec<Vec<String>> = lines
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and the |---| line
        .map(cells)
        .collect();
    assert!(!rows.is_empty(), "README.md's section '## {heading}' has no table");
    rows
}

/// The cells of a Markdown table row; `\|` is a pipe inside a cell.
fn cells(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("one cell").push_str("\\|");
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().expect("one cell").push(c),
        }
    }
    if out.last().is_some_and(|cell| cell.trim().is_empty()) {
        out.pop();
    }
    out.iter().map(|cell| cell.trim().to_owned()).collect()
}

fn section(name: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", [name]);
    roff
}

fn description() -> Roff {
    let mut roff = Roff::new();
    para(
        &mut roff,
        "pynish makes itself a child subreaper and starts the command in its own process group, with its rlimits, \
         its cgroup and a parent-death signal set before `exec`. Every descendant stays a descendant of pynish, so \
         pynish knows the tree is gone exactly when it has no child left, and it ends only then. When a limit is \
         reached, pynish sends the first signal (--signal) to every member of the tree, waits the grace period \
         (--grace), and then sends SIGKILL until nothing is left. The verdict is decided once everything is \
         reaped, and reported by the exit status and, if asked for, a JSON report.",
    );
    para(
        &mut roff,
        "Write `--` before the command, so that its own options are not taken for pynish's; to run a program \
         called `check`, `plot` or `help`, write `pynish -- check`.",
    );
    roff
}

fn units() -> Roff {
    let mut roff = section("UNITS");
    item(
        &mut roff,
        "DUR",
        "A duration: a decimal number and a unit, `250ms`, `7s`, `1.5h`, `2d`, or several, `1h 30m`. A bare \
         number is seconds, as in GNU timeout.",
    );
    item(
        &mut roff,
        "SIZE",
        "A size in bytes: `500MB` is 500*10^6 bytes, `500MiB` is 500*2^20 bytes, `1.5GiB`; a bare number is \
         bytes. Values are exact, never rounded up, and a value too large is an error, not a clamp.",
    );
    item(&mut roff, "SIG", "A signal: a name with or without SIG (`TERM`, `SIGINT`) or a number (`15`).");
    roff
}

fn exit_status(readme: &str) -> Roff {
    let mut roff = section("EXIT STATUS");
    for row in readme_table(readme, "Exit status") {
        item(&mut roff, &row[0], &row[1]);
    }
    para(
        &mut roff,
        "A limit is the verdict even when the command handled the first signal and exited 0 within the grace \
         period, and even when the kernel did the killing (SIGXCPU from RLIMIT_CPU, the OOM killer in the run's \
         cgroup, a fork refused by `pids.max`). With --preserve-status pynish exits with the command's own status \
         instead, as timeout(1) does. Bad input (an unknown unit, a zero limit, an unknown flag, a missing \
         command, a report directory that does not exist) prints one line and exits 125 with nothing run.",
    );
    roff
}

fn environment() -> Roff {
    let mut roff = section("ENVIRONMENT");
    item(&mut roff, "PYNISH_GRACE", "The default for --grace.");
    item(&mut roff, "PYNISH_SIGNAL", "The default for --signal.");
    item(&mut roff, "PYNISH_BACKEND", "The default for --backend.");
    para(
        &mut roff,
        "They set house defaults; a flag on the command line wins over the environment. The command inherits \
         pynish's environment unchanged.",
    );
    roff
}

fn json_report(readme: &str) -> Roff {
    let mut roff = section("JSON REPORT");
    para(
        &mut roff,
        "With --json, --report FILE or --report-fd FD, pynish writes one JSON object on one line, once the whole \
         tree is gone, so it never mixes with the command's output. The report is a public contract: fields are \
         added only with a new `schema` number. Durations are in seconds and sizes in bytes. Its fields:",
    );
    for row in readme_table(readme, "The JSON report") {
        item(&mut roff, &row[0].replace('`', ""), &row[1]);
    }
    roff
}

fn timeline() -> Roff {
    let mut roff = section("TIMELINE");
    para(
        &mut roff,
        "With --timeline FILE, pynish writes JSON lines while the command runs: a header with the backend and the \
         limits (as in the report), then one line per sample of the whole tree (`t` in seconds since the start, \
         `cpu_user_s`, `cpu_system_s`, `memory_bytes`, `processes`) and one per event (`t`, `event`: `signal`, \
         `sigkill`, `oom_kill`, `fork_refused`, `oom_outside`, `fork_refused_outside`, `exit`, and last `end` with the verdict). `t` never decreases. \
         Samples are thinned as the run ages (20 ms apart for the first 10 s, the spacing doubling each time the \
         run's age doubles, each line keeping the most memory and processes seen since the previous one), so a \
         run of length T writes at most 500 + 250 log2(T / 10 s) sample lines: about 250 KB for an hour. A writer \
         thread does the writing, so a slow disk never delays enforcement. pynish-plot(1) draws the file.",
    );
    roff
}

fn guarantees() -> Roff {
    let mut roff = section("GUARANTEES");
    para(
        &mut roff,
        "**Nothing of the tree outlives pynish.** Before it starts the command, pynish makes itself a child \
         subreaper: every descendant, daemonized or double-forked, stays a descendant of pynish and cannot escape \
         to init. pynish exits only when it has no child left. When a limit is reached, when pynish receives \
         TERM, INT, HUP or QUIT, and when the command's first process ends while members of its tree live on, \
         the first signal goes to every member, then SIGKILL after the grace period, until none is left.",
    );
    para(
        &mut roff,
        "**Limits hold for the whole tree.** CPU time is the user and system time of every member, ended members \
         included; memory is the total of the tree (or, with --memory-kind virtual, the address space of each \
         process, held by RLIMIT_AS); processes are the members alive at once; wall time runs from the start of \
         the command. The proc backend samples /proc, more often near a limit, so a tree that grows very fast can \
         pass a memory or process limit for a moment before it is stopped; RLIMIT_CPU backs the CPU-time limit \
         per process. A cgroup backend has the kernel hold the memory and process limits for the whole group and \
         count its CPU time exactly.",
    );
    para(
        &mut roff,
        "**If pynish itself is killed by SIGKILL** it can clean nothing up. The command's first process dies with \
         it (PR_SET_PDEATHSIG). Deeper descendants may survive with the proc backend, re-parented to init or the \
         nearest subreaper. With a cgroup backend they stay in the run's group, and the next pynish run with a \
         cgroup backend in the same place kills them and removes the stale group.",
    );
    roff
}

fn examples() -> Roff {
    let mut roff = section("EXAMPLES");
    para(&mut roff, "Run the tests for at most 10 minutes and 2 GiB of memory, all processes together:");
    literal(&mut roff, &["pynish --wall-time 10m --memory 2GiB -- make test"]);
    para(&mut roff, "Give a training script 1.5 hours of CPU time and keep the report:");
    literal(&mut roff, &["pynish --cpu-time 1.5h --report run.json --label train -- ./train.sh"]);
    para(&mut roff, "Append one JSON line per run to a log, and count the verdicts with jq(1):");
    literal(
        &mut roff,
        &[
            "pynish --wall-time 10m --report-fd 3 -- ./backup 3>>runs.jsonl",
            "jq -r .verdict runs.jsonl | sort | uniq -c",
        ],
    );
    para(&mut roff, "Branch on the verdict in a script:");
    literal(
        &mut roff,
        &[
            "pynish --wall-time 1h -- ./job",
            "case $? in",
            "  0) echo done ;;",
            "  124) echo \"timed out\" ;;",
            "  122) echo \"out of memory\" ;;",
            "esac",
        ],
    );
    para(&mut roff, "Ask for SIGINT first and give 30 seconds before SIGKILL, for every run of this shell:");
    literal(&mut roff, &["export PYNISH_SIGNAL=INT PYNISH_GRACE=30s"]);
    para(&mut roff, "See which limits this machine can enforce:");
    literal(&mut roff, &["pynish check"]);
    roff
}

fn see_also(pages: &[&str]) -> Roff {
    let mut roff = section("SEE ALSO");
    roff.text([roman(pages.join(", "))]);
    roff
}
