//! Signals sent to pynish itself: passed on to the whole tree once, the grace period honoured, the report and
//! pynish's own death telling which signal it was; a second SIGINT cuts the grace short; SIGKILL to pynish takes
//! its direct child with it (PR_SET_PDEATHSIG).

use crate::harness::*;
use crate::util::{f, testkit};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Counts, per pid, the signals a `testkit record` tree logged.
fn received(scene: &Scene) -> HashMap<i32, Vec<String>> {
    let mut seen: HashMap<i32, Vec<String>> = HashMap::new();
    for line in lines(&scene.path("log")) {
        let (pid, signal) = line.split_once(' ').expect("PID SIGNAME");
        seen.entry(pid.parse().unwrap()).or_default().push(signal.to_owned());
    }
    seen
}

/// Starts `testkit record DIR 4` under pynish and returns pynish and the four recording pids once they are ready.
fn start_recorders(scene: &Scene, backend: &str, grace: &str) -> (std::process::Child, Vec<i32>) {
    let child = scene
        .pynish(backend)
        .args(["--grace", grace, "--wall-time", "60s", "--", &testkit(), "record"])
        .arg(scene.dir.path())
        .arg("4")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pids = wait_pids(&scene.path("pids"));
    (child, pids)
}

/// pynish receives `signal` once the command is ready: every member gets it, then the grace period passes,
/// then SIGKILL; the verdict is `signaled`, `received_signal` names it, and pynish dies of it (or exits 128+N).
fn received_signal_is_passed_on_and_reported(name: &str, signal: i32) {
    each_backend(|backend| {
        let scene = Scene::new(name);
        let (child, pids) = start_recorders(&scene, backend, "1s");
        let sent = Instant::now();
        send(child.id(), signal);
        let out = output_timeout(child, PATIENCE).expect("pynish ended");
        let took = sent.elapsed();
        let report = scene.report(&out);
        assert_eq!(report["verdict"], "signaled", "{backend} {name}: {report}");
        assert_eq!(report["received_signal"], name, "{backend}: {report}");
        assert_eq!(report["exit_code"], 128 + signal, "{backend}: {report}");
        assert_eq!(shell_code(out.status), 128 + signal, "{backend} {name}: pynish ended with {:?}", out.status);
        // The tree got the grace period: the recorders ignore the signal, so SIGKILL came a second later.
        let esc = &report["escalation"];
        assert_eq!(esc["first_signal"], name, "{backend}: {report}");
        assert_eq!(esc["sigkill_sent"], true, "{backend}: {report}");
        let gap = f(&esc["sigkill_at_s"]) - f(&esc["first_signal_at_s"]);
        assert!((0.95..5.0).contains(&gap), "{backend} {name}: SIGKILL {gap} s after the first signal");
        assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(10), "{backend}: took {took:?}");
        let seen = received(&scene);
        for pid in &pids {
            let got = seen.get(pid).cloned().unwrap_or_default();
            assert!(got.iter().all(|s| s == name) && !got.is_empty(), "{backend}: member {pid} got {got:?}");
        }
        assert_run_gone(&scene.tag, &pids);
    });
}

#[test]
pub(crate) fn sigterm_to_pynish_is_passed_on_once_and_reported() {
    received_signal_is_passed_on_and_reported("SIGTERM", libc::SIGTERM);
}

#[test]
fn sigint_to_pynish_is_passed_on_once_and_reported() {
    received_signal_is_passed_on_and_reported("SIGINT", libc::SIGINT);
}

#[test]
fn sighup_to_pynish_is_passed_on_once_and_reported() {
    received_signal_is_passed_on_and_reported("SIGHUP", libc::SIGHUP);
}

#[test]
pub(crate) fn first_signal_reaches_each_member_exactly_once() {
    // Many programs take a second SIGINT or SIGTERM as "stop now, skip the cleanup": the first signal must arrive
    // once. 32 recorders in the command's process group log every delivery; a duplicate shows only when a member
    // consumed the first copy before the second was sent, so the run is repeated to give it every chance.
    each_backend(|backend| {
        for round in 0..3 {
            let scene = Scene::new("once");
            let (out, _) = scene.run(
                scene
                    .pynish(backend)
                    .args(["--wall-time", "500ms", "--grace", "300ms", "--", &testkit(), "record"])
                    .arg(scene.dir.path())
                    .arg("32"),
                PATIENCE,
            );
            let report = scene.report(&out);
            assert_eq!(report["verdict"], "wall_time", "{backend}: {report}");
            let pids = wait_pids(&scene.path("pids"));
            let seen = received(&scene);
            let twice: Vec<_> = seen.iter().filter(|(_, got)| got.len() > 1).collect();
            assert!(twice.is_empty(), "{backend} round {round}: members got SIGTERM more than once: {twice:?}");
            assert_eq!(seen.len(), pids.len(), "{backend}: not every member got SIGTERM: {seen:?}");
            assert_run_gone(&scene.tag, &pids);
        }
    });
}

#[test]
fn second_sigint_during_grace_kills_at_once() {
    each_backend(|backend| {
        let scene = Scene::new("second-int");
        let (child, pids) = start_recorders(&scene, backend, "60s");
        let pynish_pid = child.id();
        send(pynish_pid, libc::SIGINT);
        // The first SIGINT reached the tree (so pynish is in its grace period): now the second.
        let forwarded = wait_until(PATIENCE, || pids.iter().all(|p| received(&scene).contains_key(p)));
        let second = Instant::now();
        send(pynish_pid, libc::SIGINT);
        let out = output_timeout(child, PATIENCE).expect("pynish ended");
        assert!(forwarded, "{backend}: the first SIGINT never reached the tree: {:?}", received(&scene));
        let took = second.elapsed();
        assert!(took < Duration::from_secs(10), "{backend}: pynish took {took:?} after the second SIGINT");
        let report = scene.report(&out);
        assert_eq!(report["verdict"], "signaled", "{backend}: {report}");
        assert_eq!(report["received_signal"], "SIGINT", "{backend}: {report}");
        assert_eq!(report["escalation"]["sigkill_sent"], true, "{backend}: {report}");
        assert!(f(&report["escalation"]["sigkill_at_s"]) < 30.0, "{backend}: {report}");
        assert_eq!(shell_code(out.status), 130, "{backend}: {:?}", out.status);
        assert_run_gone(&scene.tag, &pids);
    });
}

#[test]
fn sigkill_to_pynish_kills_its_direct_child() {
    each_backend(|backend| {
        let scene = Scene::new("pdeathsig");
        let mut child = scene
            .pynish(backend)
            .args(["--wall-time", "60s", "--", &testkit(), "record"])
            .arg(scene.dir.path())
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pids = wait_pids(&scene.path("pids"));
        send(child.id(), libc::SIGKILL);
        child.wait().unwrap();
        let died = wait_until(PATIENCE, || !alive_in_run(pids[0], &scene.tag));
        assert!(died, "{backend}: the command {} outlived pynish's SIGKILL", pids[0]);
    });
}

#[test]
fn sigusr1_to_pynish_reaches_the_command_once() {
    each_backend(|backend| {
        let scene = Scene::new("usr1");
        let (child, pids) = start_recorders(&scene, backend, "200ms");
        send(child.id(), libc::SIGUSR1);
        let got = wait_until(PATIENCE, || received(&scene).contains_key(&pids[0]));
        // SIGUSR1 is not a request to stop: pynish goes on; end the run with SIGTERM.
        send(child.id(), libc::SIGTERM);
        let out = output_timeout(child, PATIENCE).expect("pynish ended");
        assert!(got, "{backend}: SIGUSR1 never reached the command");
        let report = scene.report(&out);
        assert_eq!(report["received_signal"], "SIGTERM", "{backend}: {report}");
        let seen = received(&scene);
        let usr1 = seen[&pids[0]].iter().filter(|s| *s == "SIGUSR1").count();
        assert_eq!(usr1, 1, "{backend}: SIGUSR1 should arrive exactly once: {seen:?}");
        assert_run_gone(&scene.tag, &pids);
    });
}
