//! What pynish holds itself and what it hands to the command: no zombies, no descriptors of its own in the
//! command, a small memory footprint while it supervises a busy tree, and the command's signal state, limits and
//! environment as they would be without pynish.

use crate::harness::*;
use crate::util::testkit;
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Zombie children of `parent`.
fn zombie_children(parent: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        if fields.next() == Some("Z") && fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Starts pynish on `script` (sh -c) with stdin a pipe: the script ends when the test closes it.
fn start_held(scene: &Scene, backend: &str, extra: &[&str], script: &str) -> Child {
    scene
        .pynish(backend)
        .args(extra)
        .args(["--grace", "300ms", "--", "sh", "-c", script, "sh"])
        .arg(scene.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn no_zombies_while_supervising_500_short_lived_children() {
    // testkit forks 500 children and exits without reaping them: 500 zombies are handed to pynish at once.
    let script = format!("{} children 500; echo > \"$1/ready\"; read x || true", testkit());
    each_backend(|backend| {
        let scene = Scene::new("zombies");
        let mut child = start_held(&scene, backend, &[], &script);
        wait_file(&scene.path("ready"));
        let mut zombies = Vec::new();
        let reaped = wait_until(PATIENCE, || {
            zombies = zombie_children(child.id());
            zombies.is_empty()
        });
        drop(child.stdin.take());
        let out = output_timeout(child, PATIENCE).expect("pynish ended");
        assert!(
            reaped,
            "{backend}: pynish left {} zombie children: {:?}",
            zombies.len(),
            &zombies[..zombies.len().min(10)]
        );
        let report = scene.report(&out);
        assert_eq!(report["verdict"], "completed", "{backend}: {report}");
        assert_eq!(crate::util::code(&out), 0, "{backend}");
        assert_run_gone(&scene.tag, &[]);
    });
}

#[test]
fn command_inherits_no_descriptor_but_those_the_user_passed() {
    // The test passes 0, 1, 2 and 5 to pynish (everything else is close-on-exec); the command lists its own.
    let expected = BTreeSet::from([0, 1, 2, 5]);
    each_backend(|backend| {
        let scene = Scene::new("fds");
        let extra = std::fs::File::open("/dev/null").unwrap();
        let raw = extra.as_raw_fd();
        let mut cmd = pynish_cmd(&scene.tag);
        close_extra_fds(&mut cmd, &[5]);
        // SAFETY: dup2 is async-signal-safe; `raw` stays open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 5) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.args(["--backend", backend, "-v", "--json", "--report"]).arg(scene.path("report.json")).args([
            "--wall-time",
            "60s",
            "--cpu-time",
            "60s",
            "--memory",
            "1GiB",
            "--processes",
            "100",
            "--",
            "sh",
            "-c",
            "ls /proc/$$/fd",
        ]);
        let (out, _) = scene.run(&mut cmd, PATIENCE);
        drop(extra);
        assert_eq!(crate::util::code(&out), 0, "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        let seen: BTreeSet<i32> =
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert_eq!(seen, expected, "{backend}: the command holds descriptors it was not given");
        scene.report(&out);
    });
}

#[test]
fn pynish_stays_small_while_supervising_a_busy_tree() {
    // 200 sleeping processes to walk on every sample, 500 short-lived children to reap, every limit set so pynish
    // samples often; pynish's peak resident set (VmHWM) and descriptors are read while it supervises.
    let script = format!(
        "{tk} forkbomb 200 > /dev/null & {tk} children 500; {tk} spin-children 2 & echo > \"$1/ready\"; read x || true",
        tk = testkit()
    );
    let limits = ["--wall-time", "60s", "--cpu-time", "60s", "--memory", "8GiB", "--processes", "1000"];
    each_backend(|backend| {
        let scene = Scene::new("footprint");
        let mut child = start_held(&scene, backend, &limits, &script);
        let pid = child.id();
        wait_file(&scene.path("ready"));
        let (mut peak_kb, mut max_fds) = (0, 0);
        let window = Instant::now();
        wait_until(Duration::from_secs(2), || {
            peak_kb = peak_kb.max(status_kb(pid, "VmHWM:").unwrap_or(0));
            max_fds = max_fds.max(fd_count(pid));
            window.elapsed() >= Duration::from_millis(1500)
        });
        drop(child.stdin.take());
        let out = output_timeout(child, PATIENCE).expect("pynish ended");
        let report = scene.report(&out);
        eprintln!(
            "{backend}: pynish peak RSS (VmHWM) {peak_kb} kB, at most {max_fds} descriptors, supervising {} processes",
            report["usage"]["max_processes"]
        );
        assert!(peak_kb > 0, "{backend}: could not read pynish's VmHWM");
        assert!(peak_kb < 20 * 1024, "{backend}: pynish's peak RSS is {peak_kb} kB");
        assert!(max_fds < 16, "{backend}: pynish held {max_fds} descriptors");
        assert_eq!(report["verdict"], "completed", "{backend}: the run ended early: {report}");
        assert!(report["usage"]["max_processes"].as_u64().unwrap() >= 200, "{backend}: {report}");
        assert_run_gone(&scene.tag, &[]);
    });
}

/// Runs `sh -c script` directly and under pynish (no limits), both with the same clean descriptors and tag;
/// returns (direct stdout, pynish stdout).
fn direct_and_under_pynish(backend: &str, script: &str) -> (String, String) {
    let scene = Scene::new("hygiene");
    let mut direct = Command::new("sh");
    direct.args(["-c", script]).env(TAG_VAR, &scene.tag);
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        direct.env_remove(var);
    }
    close_extra_fds(&mut direct, &[]);
    crate::util::as_caller(&mut direct);
    let direct = direct.stdin(Stdio::null()).output().unwrap();
    let mut under = pynish_cmd(&scene.tag);
    under.args(["--backend", backend, "--", "sh", "-c", script]);
    let under = under.stdin(Stdio::null()).output().unwrap();
    assert!(direct.status.success() && under.status.success(), "{direct:?} {under:?}");
    (String::from_utf8(direct.stdout).unwrap(), String::from_utf8(under.stdout).unwrap())
}

#[test]
fn command_starts_with_the_signal_state_it_would_have_without_pynish() {
    // Blocked, ignored and caught signals of a fresh `grep`, and its umask.
    each_backend(|backend| {
        let (direct, under) =
            direct_and_under_pynish(backend, "exec grep -E '^(SigBlk|SigIgn|SigCgt|Umask)' /proc/self/status");
        assert_eq!(under, direct, "{backend}: signal state differs under pynish");
    });
}

#[test]
fn command_starts_with_the_rlimits_it_would_have_without_pynish() {
    each_backend(|backend| {
        let (direct, under) = direct_and_under_pynish(backend, "exec cat /proc/self/limits");
        assert_eq!(under, direct, "{backend}: rlimits differ under pynish when no limit was asked");
    });
}

#[test]
fn command_starts_with_the_environment_it_would_have_without_pynish() {
    let sorted = |text: &str| text.lines().map(str::to_owned).collect::<BTreeSet<_>>();
    each_backend(|backend| {
        let (direct, under) = direct_and_under_pynish(backend, "exec env");
        assert_eq!(sorted(&under), sorted(&direct), "{backend}: environment differs under pynish");
    });
}
