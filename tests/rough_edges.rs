//! Small things a careful user ran into once (issue 19, item 11): a report sent nowhere, an environment
//! default named as a flag, a usage error that named nothing, a script's interrupt that pynish ignored,
//! "1 bytes", a unit the error text did not list.

use crate::util::*;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_report_to_dev_stdout_with_stdout_closed_is_refused_before_the_run() {
    // Once accepted: the report went to the /dev/null Rust's runtime puts on a closed descriptor, silently,
    // while `--report-fd 1` was refused.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for path in ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
        cmd.args(["--report", path, "--", "touch"]).arg(&marker).env_remove("PYNISH_BACKEND");
        // SAFETY: close() is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(1);
                Ok(())
            });
        }
        let out = cmd.stdout(Stdio::null()).output().unwrap();
        assert_eq!(code(&out), 125, "{path}: {}", stderr(&out));
        assert!(stderr(&out).contains("not open"), "{path}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{path}: {}", stderr(&out));
        assert!(!marker.exists(), "{path}: the command ran");
    }
}

#[test]
fn a_bad_environment_default_is_named_and_spares_check_plot_and_its_flag() {
    // Once: `invalid value 'x' for '--grace'` though no --grace was given, and `pynish check` refused too.
    let dir = tempfile::tempdir().unwrap();
    let timeline = dir.path().join("run.jsonl");
    pynish().arg("--timeline").arg(&timeline).args(["--", "true"]).assert().success();
    for (var, value, flag) in [
        ("PYNISH_GRACE", "x", ["--grace", "1s"]),
        ("PYNISH_SIGNAL", "FOO", ["--signal", "TERM"]),
        ("PYNISH_BACKEND", "nope", ["--backend", "proc"]),
    ] {
        let out = pynish().env(var, value).args(["--", "true"]).output().unwrap();
        assert_eq!(code(&out), 125, "{var}={value}: {}", stderr(&out));
        assert!(stderr(&out).starts_with(&format!("pynish: {var}='{value}'")), "{var}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        let out = pynish().env(var, value).args(flag).args(["--", "true"]).output().unwrap();
        assert_eq!(code(&out), 0, "{var}={value} beside {flag:?}: {}", stderr(&out));
        let out = pynish().env(var, value).args(["check"]).output().unwrap();
        assert_eq!(code(&out), 0, "{var}={value}: check: {}", stderr(&out));
        let out = pynish().env(var, value).arg("plot").arg(&timeline).output().unwrap();
        assert_eq!(code(&out), 0, "{var}={value}: plot: {}", stderr(&out));
    }
    // Empty counts as unset, as for most variables (once: "a value is required for '--backend'").
    let out = pynish().env("PYNISH_BACKEND", "").args(["--", "true"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_bare_pynish_names_the_missing_command() {
    // Once: "the following required arguments were not provided:", and nothing after it.
    let out = pynish().output().unwrap();
    assert_eq!(code(&out), 125);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("not provided: <COMMAND>"), "{}", stderr(&out));
}

/// Bit of `signal` in a /proc status mask.
fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

#[test]
fn an_interrupt_ends_a_background_pynish_and_the_command_still_ignores_it() {
    // A script's background job starts with SIGINT and SIGQUIT ignored. Once: pynish ignored `kill -INT` too
    // (GNU timeout does not), and ran on to its limit.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
    cmd.args(["--json", "--wall-time", "30", "--grace", "1s", "--", "sh", "-c"]);
    cmd.arg("grep SigIgn /proc/self/status; exec sleep 60").env_remove("PYNISH_BACKEND");
    // SAFETY: signal() with SIG_IGN installs no code of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            Ok(())
        });
    }
    let start = std::time::Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ignored = u64::from_str_radix(line.trim().trim_start_matches("SigIgn:").trim(), 16).expect("a mask");
    assert_eq!(ignored & (bit(libc::SIGINT) | bit(libc::SIGQUIT)), bit(libc::SIGINT) | bit(libc::SIGQUIT));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let report = report(&out);
    assert_eq!(report["received_signal"], "SIGINT", "{report}");
    assert!(took < Duration::from_secs(20), "pynish ran {took:?} after SIGINT");
}

#[test]
fn one_byte_is_one_byte() {
    let out = pynish().args(["--memory", "1", "--", "true"]).output().unwrap();
    assert!(stderr(&out).contains("limit 1 byte reached"), "{}", stderr(&out));
}

#[test]
fn an_unknown_time_unit_lists_weeks_which_are_accepted() {
    let out = pynish().args(["-w", "5x", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("h, d, w)"), "{}", stderr(&out));
    pynish().args(["-w", "1w", "--", "true"]).assert().success();
}

/// A parent and its child (same session, same group), each writing a marker when `signal` reaches it and then
/// exiting; each `wait`s on a `sleep` of its own, which the signal ends by its default action.
fn real_time_tree(dir: &std::path::Path, signal: &str) -> String {
    let d = dir.display();
    format!(
        "trap 'touch {d}/parent-got-it; exit 0' {signal}; \
         bash -c \"trap 'touch {d}/child-got-it; exit 0' {signal}; touch {d}/child-ready; sleep 100 & wait\" & \
         until [ -e {d}/child-ready ]; do sleep 0.01; done; touch {d}/parent-ready; sleep 100 & wait"
    )
}

#[test]
fn a_real_time_signal_is_the_first_signal_on_every_backend() {
    // Once refused ("real-time signal 34 cannot be the first signal"), though the help said "a name or number".
    // Spelled as a number, by name through PYNISH_SIGNAL, and from SIGRTMAX, named as `kill -l` names it.
    let min = libc::SIGRTMIN();
    let cases = [
        ((min + 6).to_string(), "RTMIN+6", "SIGRTMIN+6", false),
        ("RTMIN+6".to_owned(), "RTMIN+6", "SIGRTMIN+6", true),
        ("SIGRTMAX-2".to_owned(), "RTMAX-2", "SIGRTMAX-2", false),
    ];
    for backend in backends() {
        for (given, trap, name, by_env) in &cases {
            let dir = tempfile::tempdir().unwrap();
            let timeline = dir.path().join("timeline");
            let mut cmd = pynish_on(backend);
            if *by_env {
                cmd.env("PYNISH_SIGNAL", given);
            } else {
                cmd.args(["--signal", given]);
            }
            // A wall limit well past the tree's start, a grace long enough that SIGKILL never has to follow.
            cmd.args(["--wall-time", "3s", "--grace", "20s", "--timeline"]).arg(&timeline);
            let out = cmd.args(["--", "bash", "-c", &real_time_tree(dir.path(), trap)]).output().unwrap();
            let what = format!("{backend} {given}: {}", stderr(&out));
            assert!(dir.path().join("parent-ready").exists(), "the tree was not ready in 3 s: {what}");
            for marker in ["parent-got-it", "child-got-it"] {
                assert!(dir.path().join(marker).exists(), "{marker} missing: {what}");
            }
            assert_eq!(code(&out), 124, "{what}");
            let report = report(&out);
            check_invariants(124, &report);
            let esc = &report["escalation"];
            assert_eq!(esc["first_signal"], *name, "{what}");
            assert_eq!(report["limits"]["signal"], *name, "{what}");
            assert!(esc["signalled_processes"].as_u64() >= Some(2), "{what}");
            assert_eq!(esc["sigkill_sent"], false, "every member ended of the first signal: {what}");
            let lines = std::fs::read_to_string(&timeline).unwrap();
            let event = lines.lines().find(|l| l.contains(r#""event":"signal""#)).expect("a signal event");
            assert!(event.contains(&format!(r#""signal":"{name}""#)), "{event}");
        }
    }
}

#[test]
fn a_command_ended_by_a_real_time_signal_is_reported_so() {
    // nix's waitpid cannot name a real-time signal: the status was lost and the loop took "no child left".
    for backend in backends() {
        let out = pynish_on(backend).args(["--signal", "RTMIN+1", "-w", "1s", "--", "sleep", "100"]).output().unwrap();
        assert_eq!(code(&out), 124, "{backend}: {}", stderr(&out));
        let report = report(&out);
        check_invariants(124, &report);
        assert_eq!(report["signal"], "SIGRTMIN+1", "{backend}: {report}");
        assert_eq!(report["escalation"]["sigkill_sent"], false, "{backend}: {report}");
    }
}

#[test]
fn signals_that_do_not_exist_are_refused() {
    // 32 and 33 are glibc's own, below SIGRTMIN; 65 is past SIGRTMAX; RTMIN+99 past it by name.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for signal in ["0", "32", "65", "-3", "RTMIN+99", "SIGRTMAX-40", "RTMIN-1", "RTFOO"] {
        let out = pynish().arg(format!("--signal={signal}")).args(["--", "touch"]).arg(&marker).output().unwrap();
        assert_eq!(code(&out), 125, "{signal}");
        assert_eq!(stderr(&out).lines().count(), 1, "{signal}: {}", stderr(&out));
        assert!(stderr(&out).contains("signal"), "{signal}: {}", stderr(&out));
        let out = pynish().env("PYNISH_SIGNAL", signal).args(["--", "touch"]).arg(&marker).output().unwrap();
        assert_eq!(code(&out), 125, "PYNISH_SIGNAL={signal}");
        assert!(!marker.exists(), "{signal}: the command ran");
    }
}
