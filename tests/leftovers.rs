//! `--leave-leftovers`: pynish ends with the command's first process and leaves the rest running.

use crate::harness::*;
use crate::util::*;
use std::time::Duration;

#[test]
fn leftovers_outlive_pynish_with_the_flag_and_die_without_it() {
    for leave in [true, false] {
        let scene = Scene::new("leftovers");
        let pidfile = scene.file("pid");
        let mut cmd = scene.pynish("auto");
        if leave {
            cmd.arg("--leave-leftovers");
        }
        cmd.args(["--wall-time", "20s", "--", "sh", "-c", &format!("sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}")]);
        let (out, took) = scene.run(&mut cmd, PATIENCE);
        let r = scene.report(&out);
        assert_eq!(code(&out), 0, "{r}");
        assert_eq!(r["verdict"], "completed");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let leftover = read_pid(&scene.path("pid"));
        if leave {
            assert_eq!(r["backend"], "proc", "auto means proc with --leave-leftovers");
            assert!(pid_alive(leftover), "the leftover was ended although --leave-leftovers");
            assert_eq!(r["escalation"]["signalled_processes"], 0);
        } else {
            assert!(!pid_alive(leftover), "the leftover outlived pynish without --leave-leftovers");
        }
        // Scene's clean-up kills the leftover by its tag.
    }
}

#[test]
fn leave_leftovers_refuses_a_cgroup_backend() {
    let out = pynish().args(["--leave-leftovers", "--backend", "cgroup1", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--leave-leftovers needs the proc backend"), "{stderr}");
}
