//! Inside a pid namespace whose `/proc` is not its own (`unshare --pid --fork` without `--mount-proc`): pynish
//! never reads the wrong processes through it. The proc backend refuses, before anything runs, every limit it
//! would have to sample; the cgroup backends still hold theirs; the wall-time limit still ends the whole tree.
//! Two runs in two namespaces sharing a cgroup hierarchy, both with the same pid, neither sweep nor collide.
//!
//! Every case runs a shell as pid 1 of a new namespace (`unshare`, util-linux). That shell waits for a line on
//! its stdin before it exits, so that the namespace (whose processes all die with its pid 1) outlives pynish
//! while the test looks for survivors: what is found then, pynish left behind. Processes are recognised by a
//! marker in their environment, set on pynish only.

use crate::util::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const MARKER: &str = "PYNISH_NS_TEST";
/// See `cgroup::PAGE_CACHE_MARGIN`.
const PAGE_CACHE_MARGIN: u64 = 4 << 20;

/// Whether `unshare --pid --fork` works here (it needs root or a user namespace).
fn unshare_works() -> bool {
    let ok = Command::new("unshare").args(["--pid", "--fork", "true"]).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: `unshare --pid --fork` does not work here (util-linux missing, or not root)");
    }
    ok
}

fn cgroup1_works() -> bool {
    let ok = pynish().args(["--backend", "cgroup1", "--", "true"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: cgroup1 is not usable on this machine");
    }
    ok
}

fn marker() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A shell as pid 1 of a new pid namespace (with the host's /proc) that prints its namespace, runs `pynish ARGS`
/// (stdin from the test, stdout to the test, the report to a file), prints `exit <code>`, then waits for a line.
struct Namespace {
    child: Child,
    stdout: BufReader<ChildStdout>,
    report: tempfile::NamedTempFile,
    mark: String,
    /// The inode of the namespace's pid namespace, as its shell sees it.
    pid_namespace: String,
}

impl Namespace {
    fn start(args: &[&str]) -> Namespace {
        let report = tempfile::NamedTempFile::new().unwrap();
        let mark = marker();
        let script = format!(
            "stat -L -c %i /proc/self/ns/pid; {MARKER}=\"$MARK\" \"$PYNISH\" \"$@\" 2>\"$REPORT\"; echo \"exit $?\"; \
             read done"
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "sh", "-c", &script, "sh"])
            .args(args)
            .env("PYNISH", env!("CARGO_BIN_EXE_pynish"))
            .env("REPORT", report.path())
            .env("MARK", &mark)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("unshare starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let pid_namespace = line(&mut stdout);
        Namespace { child, stdout, report, mark, pid_namespace }
    }

    fn line(&mut self) -> String {
        line(&mut self.stdout)
    }

    /// Sends a line to the command (as its stdin).
    fn send(&mut self, text: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{text}").unwrap();
    }

    /// Waits for pynish to end: its exit code, its stderr (the report last). Survivors are looked for now, while
    /// the namespace lives; then the namespace ends.
    fn finish(mut self) -> (i32, String, Value) {
        let mut exit = self.line();
        while !exit.starts_with("exit ") {
            exit = self.line(); // the command's own output
        }
        let code: i32 = exit["exit ".len()..].parse().unwrap();
        self.finish_after_exit(code)
    }

    /// `finish` once the `exit <code>` line has been read.
    fn finish_after_exit(mut self, code: i32) -> (i32, String, Value) {
        let alive = survivors(&self.mark);
        for &pid in &alive {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        self.send("done");
        self.child.wait().unwrap();
        let mut stderr = String::new();
        std::fs::File::open(self.report.path()).unwrap().read_to_string(&mut stderr).unwrap();
        assert!(alive.is_empty(), "processes {alive:?} outlived pynish; its stderr:\n{stderr}");
        let report = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap_or(Value::Null);
        if report != Value::Null {
            assert_eq!(report["exit_code"], code, "the report's exit_code is pynish's real exit status: {report}");
        }
        (code, stderr, report)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // A failed check: end the namespace (all of it dies with its pid 1).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn line(reader: &mut impl BufRead) -> String {
    let mut text = String::new();
    reader.read_line(&mut text).unwrap();
    assert!(!text.is_empty(), "the namespace's shell ended early");
    text.trim_end().to_string()
}

/// Live processes (not zombies) that carry `mark`, by their pids here.
fn survivors(mark: &str) -> Vec<i32> {
    crate::util::marked_alive(MARKER, mark)
}

/// Run groups named after the pid namespace `ns` (`pynish-<pid>-ns<ns>-<start>`).
fn groups_of_namespace(ns: &str) -> Vec<std::path::PathBuf> {
    let infix = format!("-ns{ns}-");
    let mut found = Vec::new();
    for hierarchy in ["memory", "cpuacct", "pids", "freezer"] {
        let mut stack = vec![Path::new("/sys/fs/cgroup").join(hierarchy)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("pynish-") && name.contains(&infix) {
                    found.push(entry.path());
                }
                stack.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn proc_backend_refuses_limits_it_would_sample_through_a_foreign_proc() {
    if !unshare_works() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    for limit in [
        &["--memory", "64MB"][..],
        &["--processes", "10"],
        &["--cpu-time", "1s"],
        &["--soft-cpu-time", "1s"],
        &["--soft-memory", "64MB"],
    ] {
        let mut args = vec!["--backend", "proc", "--json"];
        args.extend(limit);
        args.extend(["--", "sh", "-c", &touch]);
        let (code, stderr, report) = Namespace::start(&args).finish();
        assert_eq!(code, 125, "{limit:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{limit:?}: one line: {stderr}");
        assert!(stderr.contains(limit[0]) && stderr.contains("/proc belongs to another pid namespace"), "{stderr}");
        assert_eq!(report, Value::Null, "no report: nothing ran");
        assert!(!ran.exists(), "{limit:?}: the command ran");
    }
}

#[test]
fn memory_hog_is_refused_or_held_never_measured_through_a_foreign_proc() {
    if !unshare_works() {
        return;
    }
    // The case: 64MB asked, the hog grows to 2 GB in 50 MB steps.
    let mut cases = vec![vec!["--backend", "proc"], vec![]];
    if cgroup1_works() {
        cases.push(vec!["--backend", "cgroup1"]);
    }
    for backend in cases {
        let mut args = backend.clone();
        let hog = testkit();
        args.extend(["--json", "--memory", "64MB", "--wall-time", "60s", "--", &hog, "alloc", "2000", "50"]);
        let (code, stderr, report) = Namespace::start(&args).finish();
        if code == 125 {
            assert_eq!(report, Value::Null, "{backend:?}: {stderr}");
            assert!(stderr.contains("--memory needs the proc backend"), "{backend:?}: {stderr}");
            eprintln!("{backend:?}: refused: {}", stderr.trim());
            continue;
        }
        assert_eq!(code, 122, "{backend:?}: {stderr}");
        assert_eq!(report["verdict"], "memory", "{report}");
        assert_ne!(report["backend"], "proc", "{report}");
        let peak = report["usage"]["peak_memory_bytes"].as_u64().unwrap();
        assert!(peak <= 64_000_000 + PAGE_CACHE_MARGIN, "{backend:?}: peak {peak} under --memory 64MB");
        assert!(peak >= 30_000_000, "{backend:?}: peak {peak}: the hog was not measured");
        eprintln!("{backend:?}: held by {}, peak {peak}", report["backend"]);
    }
    let (code, stderr, _) = Namespace::start(&["--backend", "proc", "--memory", "64MB", "--", "true"]).finish();
    assert_eq!(code, 125, "the proc backend refuses: {stderr}");
}

#[test]
fn wall_time_ends_the_whole_tree_under_a_foreign_proc() {
    if !unshare_works() {
        return;
    }
    let mut backends = vec!["proc"];
    if cgroup1_works() {
        backends.push("cgroup1");
    }
    let dir = tempfile::tempdir().unwrap();
    for backend in backends {
        // A daemon that leaves the command's process group and session, and a TERM-ignoring child in it.
        let pidfile = dir.path().join(format!("{backend}.pid"));
        let script = format!(
            "\"$0\" daemon {pid} & trap '' TERM; sh -c 'trap \"\" TERM; exec sleep 100' & \
             while [ ! -s {pid} ]; do sleep 0.01; done; echo ready; wait",
            pid = pidfile.display()
        );
        let kit = testkit();
        let args = ["--backend", backend, "--json", "--wall-time", "1s", "--grace", "300ms", "--", "sh", "-c", &script];
        let mut args = args.to_vec();
        args.push(&kit);
        let mut run = Namespace::start(&args);
        assert_eq!(run.line(), "ready", "{backend}");
        let (code, stderr, report) = run.finish();
        assert_eq!(code, 124, "{backend}: {stderr}");
        assert_eq!(report["verdict"], "wall_time", "{report}");
        assert_eq!(report["backend"], backend, "{report}");
        assert_eq!(report["escalation"]["first_signal"], "SIGTERM", "{report}");
        // The shell, its TERM-ignoring child and the daemon got the first signal; the daemon by its pid in
        // pynish's namespace, found through the foreign /proc (proc) or the group (cgroup1).
        let signalled = report["escalation"]["signalled_processes"].as_u64().unwrap();
        assert!(signalled >= 3, "{backend}: {signalled} processes signalled: {report}");
        assert_eq!(report["escalation"]["sigkill_sent"], true, "{report}");
    }
}

#[test]
fn two_runs_in_two_pid_namespaces_keep_their_own_groups() {
    if !unshare_works() || !cgroup1_works() {
        return;
    }
    // Both pynish have the same pid in their namespaces. Each command says "ready" from inside its group, then
    // waits: the second run's sweep happens while the first run's group is live.
    let hog = testkit();
    let args = [
        "--json",
        "--memory",
        "64MB",
        "--wall-time",
        "60s",
        "--",
        "sh",
        "-c",
        "echo ready; read go; exec \"$0\" alloc 2000 50",
        &hog,
    ];
    let mut first = Namespace::start(&args);
    assert_eq!(first.line(), "ready");
    let first_groups = groups_of_namespace(&first.pid_namespace);
    assert!(!first_groups.is_empty(), "no group named after namespace {}", first.pid_namespace);
    let mut second = Namespace::start(&args);
    assert_eq!(second.line(), "ready");
    assert_ne!(first.pid_namespace, second.pid_namespace);
    let second_groups = groups_of_namespace(&second.pid_namespace);
    assert!(!second_groups.is_empty(), "no group named after namespace {}", second.pid_namespace);
    for group in &first_groups {
        assert!(group.exists(), "the second run swept the first run's {}", group.display());
    }
    let pid_of = |groups: &[std::path::PathBuf]| {
        groups[0].file_name().unwrap().to_string_lossy().split('-').nth(1).unwrap().to_string()
    };
    eprintln!(
        "two namespaces: pids {} and {}, groups {:?} and {:?}",
        pid_of(&first_groups),
        pid_of(&second_groups),
        first_groups[0].file_name().unwrap(),
        second_groups[0].file_name().unwrap()
    );
    first.send("go");
    second.send("go");
    for (which, run) in [("first", first), ("second", second)] {
        let (code, stderr, report) = run.finish();
        assert_eq!(code, 122, "{which}: {stderr}");
        assert_eq!(report["verdict"], "memory", "{which}: {report}");
        assert_eq!(report["backend"], "cgroup1", "{which}: fell back: {report}");
        let peak = report["usage"]["peak_memory_bytes"].as_u64().unwrap();
        assert!(peak <= 64_000_000 + PAGE_CACHE_MARGIN, "{which}: peak {peak}");
    }
    for group in first_groups.iter().chain(&second_groups) {
        assert!(!group.exists(), "{} left behind", group.display());
    }
}

#[test]
fn a_sigkilled_pynish_in_another_namespace_is_swept() {
    if !unshare_works() || !cgroup1_works() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    let script = format!(
        "\"$0\" daemon {pid} & while [ ! -s {pid} ]; do sleep 0.01; done; echo ready; exec sleep 100",
        pid = pidfile.display()
    );
    let kit = testkit();
    let mut run = Namespace::start(&["--backend", "cgroup1", "--wall-time", "60s", "--", "sh", "-c", &script, &kit]);
    assert_eq!(run.line(), "ready");
    let groups = groups_of_namespace(&run.pid_namespace);
    assert!(!groups.is_empty());
    // pynish dies without a chance to clean up; the daemon lives on in its group.
    let supervisor = survivors(&run.mark)
        .into_iter()
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "pynish"))
        .expect("pynish among the marked processes");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(run.line(), "exit 137");
    assert!(!survivors(&run.mark).is_empty(), "the daemon outlives its pynish");

    // A run in this namespace cannot look the owner up by its pid: the group's free lock says it is gone.
    let out = pynish().args(["--backend", "cgroup1", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for group in &groups {
        // Another test's run may be sweeping it right now, holding its lock (so this run left it alone): the
        // group is gone once that lock is free.
        if let Ok(dir) = std::fs::File::open(group) {
            let _lock = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
        }
        assert!(!group.join("cgroup.procs").exists(), "{} was not swept", group.display());
    }
    let (code, _, _) = run.finish_after_exit(137);
    assert_eq!(code, 137);
}

#[test]
fn check_says_what_a_foreign_proc_costs_the_proc_backend() {
    if !unshare_works() {
        return;
    }
    let out = Command::new("unshare")
        .args(["--pid", "--fork", env!("CARGO_BIN_EXE_pynish"), "check", "--json"])
        .output()
        .unwrap();
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap();
    let proc = findings["backends"].as_array().unwrap().iter().find(|b| b["name"] == "proc").unwrap();
    assert_eq!(proc["usable"], true, "{findings}");
    let detail = proc["detail"].as_str().unwrap();
    assert!(detail.contains("/proc belongs to another pid namespace"), "{detail}");
    if findings["auto"] == "proc" {
        let memory = findings["limits"].as_array().unwrap().iter().find(|l| l["name"] == "memory").unwrap();
        assert_eq!(memory["enforced_by"], Value::Null, "{findings}");
        assert_eq!(findings["ok"], false);
    }
}

#[test]
fn virtual_memory_and_wall_time_need_no_proc_and_are_not_refused() {
    if !unshare_works() {
        return;
    }
    let kit = testkit();
    let args = ["--backend", "proc", "--json", "--memory-kind", "virtual", "--memory", "64MB", "--wall-time", "60s"];
    let mut args = args.to_vec();
    args.extend(["--", &kit, "alloc", "200", "10"]);
    let (code, stderr, report) = Namespace::start(&args).finish();
    assert_ne!(code, 125, "{stderr}");
    assert_ne!(code, 0, "the allocation beyond RLIMIT_AS failed: {stderr}");
    assert_eq!(report["enforcement"]["memory"], "rlimit", "{report}");
    assert_eq!(report["backend"], "proc", "{report}");
}

#[test]
fn without_any_proc_the_proc_backend_refuses_to_run() {
    if !unshare_works() {
        return;
    }
    // A mount namespace of its own, where /proc is unmounted (the machine's stays).
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let script = "umount -l /proc && exec \"$0\" --wall-time 10s -- touch \"$1\"";
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "sh", "-c", script, env!("CARGO_BIN_EXE_pynish")])
        .arg(&ran)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("umount") {
        eprintln!("SKIP: cannot unmount /proc in a mount namespace here: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot find the command's processes"), "{stderr}");
    assert!(!ran.exists(), "the command ran");
}
