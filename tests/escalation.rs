//! The first signal, the grace period, then SIGKILL, for the whole tree.

use crate::util::*;
use std::time::Duration;

#[test]
pub(crate) fn term_ignoring_shell_gets_sigkill_after_grace() {
    for backend in backends() {
        let (out, took) = timed(pynish_on(backend).args([
            "--wall-time",
            "1s",
            "--grace",
            "1s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; sleep 30",
        ]));
        assert_eq!(code(&out), 124, "{backend}");
        let report = report(&out);
        assert_eq!(report["verdict"], "wall_time");
        let esc = &report["escalation"];
        assert_eq!(esc["first_signal"], "SIGTERM");
        assert_eq!(esc["sigkill_sent"], true, "{report}");
        let gap = f(&esc["sigkill_at_s"]) - f(&esc["first_signal_at_s"]);
        assert!((0.95..2.5).contains(&gap), "{backend}: SIGKILL {gap} s after SIGTERM");
        assert!(took < Duration::from_secs(8), "{backend}: took {took:?}");
    }
}

#[test]
pub(crate) fn verdict_holds_when_command_exits_cleanly_in_grace() {
    let out = pynish_on("proc")
        .args(["--wall-time", "1s", "--", "sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 124);
    let report = report(&out);
    assert_eq!(report["verdict"], "wall_time");
    assert_eq!(report["command_exit_code"], 0);
    assert_eq!(report["escalation"]["sigkill_sent"], false);
}

#[test]
pub(crate) fn custom_first_signal_is_sent() {
    let out =
        pynish_on("proc").args(["--wall-time", "500ms", "--signal", "INT", "--", "sleep", "30"]).output().unwrap();
    let report = report(&out);
    assert_eq!(report["escalation"]["first_signal"], "SIGINT");
    assert_eq!(report["signal"], "SIGINT");
    assert_eq!(code(&out), 124);
}

#[test]
pub(crate) fn preserve_status_returns_the_commands_status() {
    let out =
        pynish_on("proc").args(["--wall-time", "500ms", "--preserve-status", "--", "sleep", "30"]).output().unwrap();
    assert_eq!(code(&out), 128 + 15);
    assert_eq!(report(&out)["verdict"], "wall_time");
}
