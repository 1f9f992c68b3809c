//! What the caller hands pynish, and what the command gets of it: a parent that ignores SIGCHLD, a blocked
//! signal mask, ignored signals, closed standard descriptors (issue 10); and the escalation counts the report
//! gives, exact on every backend.

use crate::harness::{Scene, each_backend, pynish_cmd, send, shell_code, wait_pids, wait_timeout};
use crate::util::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bit of `signal` in a /proc status mask (`SigIgn`, `SigBlk`).
fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// The mask on the `SigIgn:`/`SigBlk:` line of a /proc/self/status text.
fn mask(status: &str, name: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in:\n{status}"));
    u64::from_str_radix(line[name.len() + 1..].trim(), 16).expect("a hex mask")
}

/// `pynish --backend BACKEND -- grep Sig /proc/self/status`, started as by `cmd`'s caller: the command's masks.
fn command_masks(mut cmd: Command, backend: &str) -> String {
    let out = cmd.args(["--backend", backend, "--", "grep", "Sig", "/proc/self/status"]).output().expect("pynish runs");
    assert_eq!(shell_code(out.status), 0, "{backend}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("text")
}

/// pynish as a plain `Command`, whose child first runs `before_exec` (to block or ignore signals as a caller
/// would).
fn pynish_from(before_exec: fn()) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        cmd.env_remove(var);
    }
    // SAFETY: the callers pass functions that only call sigprocmask, signal or close (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            before_exec();
            Ok(())
        });
    }
    cmd
}

fn block_term_and_alrm() {
    // SAFETY: sigemptyset/sigaddset fill a local set; sigprocmask takes it by pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn ignore_hup_int_pipe() {
    // SAFETY: signal() with SIG_IGN installs no code of ours.
    unsafe {
        for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

fn default_pipe() {
    // SAFETY: signal() with SIG_DFL installs no code of ours. (The test harness, a Rust program, ignores SIGPIPE.)
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

// ---- 1. A parent that ignores SIGCHLD ----

#[test]
fn sigchld_ignored_by_the_caller_keeps_the_exit_code_exact() {
    // As in the issue: a shell that ignores SIGCHLD execs pynish.
    let out = Command::new("bash")
        .args(["-c", "trap '' CHLD; exec \"$0\" --json -- sh -c 'exit 3'", env!("CARGO_BIN_EXE_pynish")])
        .output()
        .unwrap();
    let report = report(&out);
    assert_eq!(code(&out), 3, "{report}");
    assert_eq!(report["verdict"], "completed");
    assert_eq!(report["command_exit_code"], 3);
}

#[test]
fn sigchld_ignored_by_the_caller_keeps_the_statuses_exact_on_every_backend() {
    with_sigchld_ignored(|| {
        for backend in backends() {
            let out = pynish_on(backend).args(["--", "sh", "-c", "exit 3"]).output().unwrap();
            assert_eq!(code(&out), 3, "{backend}");
            assert_eq!(report(&out)["command_exit_code"], 3, "{backend}");
            // sleep dies of the first signal at once: pynish must see it die, not wait out the 2 s grace period.
            let out = pynish_on(backend).args(["--wall-time", "300ms", "--", "sleep", "10"]).output().unwrap();
            let report = report(&out);
            assert_eq!(code(&out), 124, "{backend}: {report}");
            assert_eq!(report["signal"], "SIGTERM", "{backend}: {report}");
            assert_eq!(report["escalation"]["sigkill_sent"], false, "{backend}: {report}");
            assert!(f(&report["usage"]["wall_time_s"]) < 2.0, "{backend}: the grace period was waited out: {report}");
        }
    });
}

#[test]
fn the_command_starts_with_sigchld_at_its_default() {
    with_sigchld_ignored(|| {
        // The wrapper works: a program started the same way does inherit SIGCHLD ignored.
        let mut direct = Command::new("grep");
        as_caller(&mut direct);
        let direct = direct.args(["SigIgn", "/proc/self/status"]).output().unwrap();
        let direct = String::from_utf8(direct.stdout).unwrap();
        assert_ne!(mask(&direct, "SigIgn") & bit(libc::SIGCHLD), 0, "the test's caller does not ignore SIGCHLD");
        for backend in backends() {
            let out = pynish_on(backend).args(["--", "grep", "SigIgn", "/proc/self/status"]).output().unwrap();
            let view = String::from_utf8(out.stdout.clone()).unwrap();
            assert_eq!(mask(&view, "SigIgn") & bit(libc::SIGCHLD), 0, "{backend}: the command ignores SIGCHLD");
            report(&out);
        }
    });
}

// The suites' cases, rerun with pynish started by a parent that ignores SIGCHLD.
macro_rules! rerun_with_sigchld_ignored {
    ($($module:ident: $($test:ident),+;)+) => {
        mod sigchld_ignored {
            $($(
                #[test]
                fn $test() {
                    crate::util::with_sigchld_ignored(crate::$module::$test);
                }
            )+)+
        }
    };
}

rerun_with_sigchld_ignored! {
    exit_codes: own_exit_code_passes_through, foreign_signal_gives_128_plus_n, missing_command_is_127,
        non_executable_file_is_126;
    limits: wall_limit_stops_sleeper, cpu_limit_stops_busy_loop, cpu_limit_counts_the_whole_tree,
        memory_limit_stops_growing_process, memory_limit_counts_the_whole_tree,
        virtual_memory_limit_is_per_process_rlimit, process_limit_stops_forker;
    escalation: term_ignoring_shell_gets_sigkill_after_grace, verdict_holds_when_command_exits_cleanly_in_grace,
        custom_first_signal_is_sent, preserve_status_returns_the_commands_status;
    tree: setsid_daemon_dies_with_the_tree, leftovers_of_a_finished_command_are_ended,
        no_zombies_from_many_short_children;
    signals: sigterm_to_pynish_is_passed_on_once_and_reported, first_signal_reaches_each_member_exactly_once;
    adversarial: grandchild_that_calls_setsid_after_double_fork_dies,
        tree_ignoring_term_hup_and_int_is_killed_after_grace,
        busy_grandchild_left_by_a_command_that_exits_at_once_is_ended_after_grace;
}

// ---- 2. A blocked signal mask; ignored signals ----

#[test]
fn the_command_starts_with_an_empty_signal_mask() {
    // As in the issue: perl blocks SIGALRM and SIGTERM, then execs pynish.
    let out = Command::new("perl")
        .args(["-MPOSIX", "-e", "sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGALRM,SIGTERM)); exec @ARGV"])
        .args([env!("CARGO_BIN_EXE_pynish"), "--", "grep", "SigBlk", "/proc/self/status"])
        .output()
        .unwrap();
    assert_eq!(shell_code(out.status), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mask(&String::from_utf8(out.stdout).unwrap(), "SigBlk"), 0);
    for backend in backends() {
        let masks = command_masks(pynish_from(block_term_and_alrm), backend);
        assert_eq!(mask(&masks, "SigBlk"), 0, "{backend}: {masks}");
    }
}

#[test]
fn a_blocked_term_in_the_caller_does_not_cost_the_command_its_grace_period() {
    for backend in backends() {
        let out = pynish_from(block_term_and_alrm)
            .args(["--backend", backend, "--json", "--wall-time", "300ms", "--", "sleep", "10"])
            .output()
            .unwrap();
        let report = report(&out);
        assert_eq!(code(&out), 124, "{backend}: {report}");
        assert_eq!(report["signal"], "SIGTERM", "{backend}: the command did not die of the first signal: {report}");
        assert_eq!(report["escalation"]["sigkill_sent"], false, "{backend}: {report}");
    }
}

#[test]
fn pynish_started_with_term_blocked_still_receives_it() {
    each_backend(|backend| {
        let scene = Scene::new("blocked-term");
        let mut cmd = pynish_cmd(&scene.tag);
        // SAFETY: block_term_and_alrm only calls sigemptyset, sigaddset and sigprocmask.
        unsafe {
            cmd.pre_exec(|| {
                block_term_and_alrm();
                Ok(())
            });
        }
        cmd.args(["--backend", backend, "--json", "--report"]).arg(scene.path("report.json"));
        cmd.args(["--wall-time", "60s", "--", "sh", "-c", "echo $$ > \"$0\"; exec sleep 60"]).arg(scene.path("pid"));
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let pids = wait_pids(&scene.path("pid"));
        send(child.id(), libc::SIGTERM);
        let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("pynish ended on SIGTERM");
        assert_eq!(shell_code(status), 128 + libc::SIGTERM, "{backend}");
        let report = report_file(&scene.path("report.json"), shell_code(status));
        assert_eq!(report["received_signal"], "SIGTERM", "{backend}: {report}");
        assert_eq!(report["signal"], "SIGTERM", "{backend}: {report}");
        crate::harness::assert_run_gone(&scene.tag, &pids);
    });
}

#[test]
fn ignored_signals_stay_ignored_and_sigpipe_is_passed_through() {
    for backend in backends() {
        // nohup and background jobs of scripts: SIGHUP and SIGINT ignored; a caller that ignores SIGPIPE too.
        let masks = command_masks(pynish_from(ignore_hup_int_pipe), backend);
        let ignored = mask(&masks, "SigIgn");
        for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE] {
            assert_ne!(ignored & bit(signal), 0, "{backend}: signal {signal} is not ignored any more: {masks}");
        }
        // SIGPIPE at its default in the caller stays at its default, although pynish (a Rust program) ignores it.
        let masks = command_masks(pynish_from(default_pipe), backend);
        assert_eq!(mask(&masks, "SigIgn") & bit(libc::SIGPIPE), 0, "{backend}: {masks}");
    }
}

// ---- 2b. Closed standard descriptors ----

/// Which of 0, 1, 2 the command (a shell) finds open, when pynish is started with `closed` closed.
fn open_for_command(backend: &str, closed: i32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("open");
    let script = r#"s=; for fd in 0 1 2; do [ -e /proc/self/fd/$fd ] && s="$s$fd"; done; echo "$s" > "$0""#;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
    cmd.args(["--backend", backend, "--", "sh", "-c", script]).arg(&out_file);
    // SAFETY: close is async-signal-safe; it runs after std has set up the child's 0, 1 and 2.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(closed);
            Ok(())
        });
    }
    let status = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(status.success(), "{backend}: {status:?}");
    std::fs::read_to_string(&out_file).unwrap().trim().to_string()
}

#[test]
fn a_closed_standard_descriptor_stays_closed_for_the_command() {
    for backend in backends() {
        assert_eq!(open_for_command(backend, 0), "12", "{backend}: stdin closed");
        assert_eq!(open_for_command(backend, 1), "02", "{backend}: stdout closed");
        assert_eq!(open_for_command(backend, 2), "01", "{backend}: stderr closed");
        assert_eq!(open_for_command(backend, 9), "012", "{backend}: all open");
    }
}

#[test]
fn pynish_with_stderr_closed_still_ends_as_the_command_did() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
        cmd.arg("--report").arg(&report_path).args(args);
        // SAFETY: close is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(2);
                Ok(())
            });
        }
        shell_code(cmd.stdin(Stdio::null()).stdout(Stdio::null()).status().unwrap())
    };
    // Its "limit reached" line and its "command not found" go nowhere, harmlessly.
    let status = run(&["--wall-time", "100ms", "--", "sleep", "10"]);
    assert_eq!(status, 124);
    assert_eq!(report_file(&report_path, status)["verdict"], "wall_time");
    let status = run(&["--", "no-such-command-pynish"]);
    assert_eq!(status, 127);
    assert_eq!(report_file(&report_path, status)["verdict"], "spawn_error");
    // A report to the closed descriptor is bad input, not a report written to Rust's /dev/null.
    let status = run(&["--report-fd", "2", "--", "true"]);
    assert_eq!(status, 125);
}

// ---- 3. Exact escalation counts ----

#[test]
fn a_wall_time_run_always_counts_the_member_it_signalled() {
    // Seen once on cgroup1: sh killed by the `killpg` left the group before it was listed, and the report said
    // `signalled_processes: 0`. `util::report` asserts at least one for every limit verdict.
    each_backend(|backend| {
        for run in 0..20 {
            let out = pynish_on(backend).args(["--wall-time", "50ms", "--", "sh", "-c", "sleep 10"]).output().unwrap();
            let report = report(&out);
            assert_eq!(report["verdict"], "wall_time", "{backend}, run {run}: {report}");
        }
    });
}

/// Runs `sh` + `sleep` under pynish with `args`, ends it with SIGTERM to pynish once both run, and returns the
/// report's escalation.
fn escalation_of_two(backend: &str, args: &[&str], script: &str) -> serde_json::Value {
    let scene = Scene::new("count");
    let mut cmd = scene.pynish(backend);
    cmd.args(args).args(["--", "sh", "-c", script]).arg(scene.path("pids"));
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Written by the shell's own `echo` (a `mv` to publish it would be a third member), so read until complete.
    let mut pids = Vec::new();
    let complete = crate::harness::wait_until(crate::harness::PATIENCE, || {
        let text = std::fs::read_to_string(scene.path("pids")).unwrap_or_default();
        pids = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        text.ends_with('\n') && pids.len() == 2
    });
    assert!(complete, "{backend}: the workload did not publish its two pids");
    send(child.id(), libc::SIGTERM);
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("pynish ended");
    let report = report_file(&scene.path("report.json"), shell_code(status));
    crate::harness::assert_run_gone(&scene.tag, &pids);
    report["escalation"].clone()
}

#[test]
fn escalation_counts_are_exact() {
    // Two members, sh and sleep, in the command's process group: the killpg kills both at once.
    let both = r#"sleep 60 & echo $$ $! > "$0"; wait"#;
    // Both ignore SIGTERM (sleep inherits the ignored disposition): SIGKILL after the grace period reaches both.
    let deaf = r#"trap '' TERM; sleep 60 & echo $$ $! > "$0"; wait; wait"#;
    each_backend(|backend| {
        let esc = escalation_of_two(backend, &[], both);
        assert_eq!((&esc["first_signal"], &esc["signalled_processes"]), (&"SIGTERM".into(), &2.into()), "{backend}");
        assert_eq!(esc["sigkill_sent"], false, "{backend}: {esc}");
        let esc = escalation_of_two(backend, &["--grace", "200ms"], deaf);
        assert_eq!(esc["signalled_processes"], 2, "{backend}: {esc}");
        assert_eq!(esc["killed_processes"], 2, "{backend}: {esc}");
        // No grace: SIGKILL is the first signal.
        let esc = escalation_of_two(backend, &["--grace", "0"], both);
        assert_eq!((&esc["first_signal"], &esc["signalled_processes"]), (&"SIGKILL".into(), &2.into()), "{backend}");
        assert_eq!(esc["killed_processes"], 2, "{backend}: {esc}");
    });
}
