//! The files pynish ships beside its binary, and its own help: the checked-in completions and man pages are
//! what the current CLI generates, the man pages render without warnings, bash completion really completes, and
//! the help fits a screen.

use crate::util::pynish;
use std::path::Path;
use std::process::Command;

/// The generator itself, so that the test and `cargo run --example gen-artifacts` cannot disagree.
#[path = "../examples/gen-artifacts.rs"]
#[allow(dead_code)]
mod gen_artifacts;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// The first line where two texts differ, to show in a failure.
fn first_difference(want: &str, have: &str) -> String {
    let (mut want_lines, mut have_lines) = (want.lines(), have.lines());
    for number in 1.. {
        match (want_lines.next(), have_lines.next()) {
            (None, None) => break,
            (w, h) if w == h => continue,
            (w, h) => {
                return format!(
                    "line {number}:\n  generated:   {}\n  checked in:  {}",
                    w.unwrap_or("<end>"),
                    h.unwrap_or("<end>")
                );
            }
        }
    }
    "only in the final newline or in invalid UTF-8".into()
}

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let files = gen_artifacts::render(&readme());
    let mut problems = Vec::new();
    for (path, want) in &files {
        match std::fs::read(root().join(path)) {
            Ok(have) if &have == want => {}
            Ok(have) => problems.push(format!(
                "{} is stale, {}",
                path.display(),
                first_difference(&String::from_utf8_lossy(want), &String::from_utf8_lossy(&have))
            )),
            Err(error) => problems.push(format!("{} is missing ({error})", path.display())),
        }
    }
    for dir in gen_artifacts::DIRS {
        for entry in std::fs::read_dir(root().join(dir)).into_iter().flatten().flatten() {
            let path = Path::new(dir).join(entry.file_name());
            if !files.iter().any(|(p, _)| *p == path) {
                problems.push(format!("{} is not generated any more; remove it", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the checked-in completions and man pages differ from what the CLI generates:\n{}\n\nRegenerate them with \
         `{}` and commit completions/ and man/.",
        problems.join("\n"),
        gen_artifacts::REGENERATE
    );
}

/// A tool that checks roff, if this machine has one: groff with every warning on, else mandoc's linter.
fn man_linter() -> Option<(&'static str, Vec<&'static str>)> {
    let works = |program: &str, args: &[&str]| Command::new(program).args(args).output().is_ok();
    if works("groff", &["-v"]) {
        Some(("groff", vec!["-man", "-ww", "-z"]))
    } else if works("mandoc", &["-V"]) {
        Some(("mandoc", vec!["-T", "lint", "-W", "warning"]))
    } else {
        None
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let Some((linter, args)) = man_linter() else {
        eprintln!(
            "SKIP man_pages_render_without_warnings: neither groff nor mandoc is installed (apt-get install groff-base)"
        );
        return;
    };
    for page in ["man/pynish.1", "man/pynish-check.1", "man/pynish-plot.1"] {
        let output = Command::new(linter).args(&args).arg(root().join(page)).output().expect("the linter runs");
        let complaints =
            String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && complaints.trim().is_empty(), "{linter} on {page}: {complaints}");
    }
}

/// What bash completion offers for the words typed so far (the last one being completed), through the function
/// completions/pynish.bash registers, called as bash's `complete -F` would.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = r#"
        source "$1" || exit 1
        shift
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        function=$(complete -p pynish | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
        "$function" pynish "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script, "bash"])
        .arg(root().join("completions/pynish.bash"))
        .args(words)
        .output()
        .expect("bash runs");
    assert!(output.status.success(), "bash completion failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

/// What bash puts on the command line for these candidates: their longest common prefix.
fn common_prefix(candidates: &[String]) -> String {
    let first = candidates.first().cloned().unwrap_or_default();
    let length = candidates.iter().map(|c| first.bytes().zip(c.bytes()).take_while(|(a, b)| a == b).count()).min();
    first[..length.unwrap_or(0)].to_string()
}

#[test]
fn bash_completes_mem_to_memory() {
    let candidates = bash_complete(&["pynish", "--mem"]);
    assert!(candidates.contains(&"--memory".to_string()), "{candidates:?}");
    assert_eq!(common_prefix(&candidates), "--memory", "pynish --mem<TAB> offers {candidates:?}");
}

#[test]
fn bash_completes_backend_names() {
    let mut candidates = bash_complete(&["pynish", "--backend", ""]);
    candidates.sort();
    assert_eq!(candidates, ["auto", "cgroup1", "cgroup2", "proc"]);
    assert_eq!(bash_complete(&["pynish", "--backend", "cg"]).len(), 2);
}

/// `pynish ARGS` at a 100-column terminal.
fn help_at_100_columns(args: &[&str]) -> String {
    let output = pynish().args(args).env("COLUMNS", "100").env_remove("LINES").output().expect("pynish runs");
    assert!(output.status.success(), "pynish {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

#[test]
fn help_fits_in_40_lines_of_100_columns() {
    for flag in ["--help", "-h"] {
        let help = help_at_100_columns(&[flag]);
        let lines: Vec<&str> = help.lines().collect();
        assert!(lines.len() <= 40, "pynish {flag} takes {} lines, more than 40:\n{help}", lines.len());
        for line in &lines {
            assert!(line.chars().count() <= 100, "pynish {flag} has a line wider than 100 columns: {line:?}");
        }
        for heading in ["Limits:", "Escalation:", "Reporting:", "Backend:"] {
            assert!(lines.contains(&heading), "pynish {flag} has no {heading} heading:\n{help}");
        }
        assert!(help.contains("pynish help"), "pynish {flag} does not say where the details are:\n{help}");
    }
}

#[test]
fn check_has_its_own_help() {
    for flag in ["--help", "-h"] {
        let help = help_at_100_columns(&["check", flag]);
        assert!(help.contains("Usage: pynish check") && help.contains("--json"), "pynish check {flag}:\n{help}");
    }
}

#[test]
fn long_help_explains_units_and_exit_status() {
    let help = help_at_100_columns(&["help"]);
    for needle in ["Units:", "1.5h", "500MiB", "Exit status:", "124", "125", "127", "PYNISH_GRACE"] {
        assert!(help.contains(needle), "pynish help does not mention {needle}:\n{help}");
    }
    for line in help.lines() {
        assert!(line.chars().count() <= 100, "pynish help has a line wider than 100 columns: {line:?}");
    }
}

#[test]
fn version_names_pynish_and_its_version() {
    let output = pynish().arg("--version").output().expect("pynish runs");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    // One line: the version, then which backends work on this machine.
    assert!(first.starts_with(&format!("pynish {} (backends: ", env!("CARGO_PKG_VERSION"))), "{first}");
    assert!(first.contains("proc yes") && first.contains("; auto uses "), "{first}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}
