//! Every member ends (issue 19): a member that writes itself out of the run's groups (root may) and out of the
//! command's session is no longer in any group pynish kills, but it is still below pynish, the child subreaper,
//! which finds it there and kills it. The wall limit plus the grace period holds, on every backend this machine
//! offers (an absent one is announced by `backends()`).

use crate::util::*;
use std::time::Duration;

#[test]
fn a_member_that_leaves_the_groups_is_killed_at_the_wall_limit() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: only root may move a process out of the run's groups");
        return;
    }
    let kit = testkit();
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("stray");
        let pidfile = pidfile.to_str().unwrap();
        let mut cmd = pynish_on(backend);
        // Without the fix pynish waits for the stray for ever: the bound ends that wait, and the test fails below.
        cmd.args(["--wall-time", "1s", "--grace", "1s", "--", &kit, "leave-groups", pidfile])
            .timeout(Duration::from_secs(30));
        let (output, took) = timed(&mut cmd);
        let stray = read_pid(std::path::Path::new(pidfile));
        let survived = pid_alive(stray);
        if survived {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(stray), nix::sys::signal::Signal::SIGKILL);
        }
        assert!(!survived, "{backend}: the member that left the groups outlived pynish");
        assert!(took < Duration::from_secs(15), "{backend}: pynish took {took:?} under --wall-time 1s --grace 1s");
        let report = report(&output);
        assert_eq!(report["verdict"], "wall_time", "{backend}: {report}");
        let killed = report["escalation"]["killed_processes"].as_u64().unwrap();
        assert!(killed >= 1, "{backend}: the stray was killed but not counted: {report}");
    }
}
