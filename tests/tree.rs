//! Nothing of the tree survives pynish, daemonized grandchildren included.

use crate::util::*;

#[test]
pub(crate) fn setsid_daemon_dies_with_the_tree() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("daemon.pid");
        let out =
            pynish_on(backend).args(["--wall-time", "1s", "--", &testkit(), "daemon"]).arg(&pidfile).output().unwrap();
        assert_eq!(code(&out), 124, "{backend}");
        let daemon = read_pid(&pidfile);
        assert_dead(&[daemon]);
    }
}

#[test]
pub(crate) fn leftovers_of_a_finished_command_are_ended() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    // The daemon's parent exits at once; the command (sh) waits for the pid file and exits 0.
    let script = format!(
        "{} daemon {} & while [ ! -s {} ]; do sleep 0.01; done; exit 0",
        testkit(),
        pidfile.display(),
        pidfile.display()
    );
    let out = pynish_on("proc").args(["--grace", "500ms", "--", "sh", "-c", &script]).output().unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(report(&out)["verdict"], "completed");
    assert_dead(&[read_pid(&pidfile)]);
}

#[test]
pub(crate) fn no_zombies_from_many_short_children() {
    let out = pynish_on("proc").args(["--", &testkit(), "children", "500"]).output().unwrap();
    assert_eq!(code(&out), 0);
}
