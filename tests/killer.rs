//! The verdict names the real killer: a run's `memory` or `processes` verdict only when its own limit did it;
//! an enclosing group's OOM killer or process limit (a batch job's, a service's, an outer pynish's) is an outside
//! kill or refusal, reported as such (`oom`/`fork_refused` = `outside`, a timeline event, a stderr line naming
//! the enclosing limit). Each case runs on every backend this machine offers; what needs a hierarchy this
//! machine lacks is announced as skipped.

use crate::util::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the cgroup v1 memory hierarchy holds this test process, if it is mounted and writable.
fn v1_memory_group() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        let options = fields.get(dash + 3)?;
        (fields.get(dash + 1) == Some(&"cgroup") && options.split(',').any(|o| o == "memory"))
            .then(|| (fields[3].to_string(), PathBuf::from(fields[4])))
    })?;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then(|| path.to_string())
    })?;
    let rest = path.strip_prefix(mount.0.trim_end_matches('/'))?;
    let dir = mount.1.join(rest.trim_start_matches('/'));
    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).ok().map(|_| dir)
}

/// A memory group made by hand for one case, removed when dropped (its members are gone by then).
struct Group(PathBuf);

impl Group {
    fn new(limit: &str) -> Option<Group> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let Some(parent) = v1_memory_group() else {
            eprintln!("SKIP: no writable cgroup v1 memory hierarchy to make an enclosing group in");
            return None;
        };
        let dir = parent.join(format!("killer-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir).expect("an enclosing memory group");
        let group = Group(dir);
        std::fs::write(group.0.join("memory.limit_in_bytes"), limit).expect("its limit");
        Some(group)
    }

    /// A shell that moves itself into the group, then execs pynish with `args`.
    fn run(&self, args: &[&str]) -> Output {
        let procs = self.0.join("cgroup.procs");
        let script = format!("echo $$ > '{}' && exec \"$0\" \"$@\"", procs.display());
        let program = env!("CARGO_BIN_EXE_pynish");
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(script).arg(program).args(args);
        for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
            sh.env_remove(var);
        }
        sh.output().expect("sh runs")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Every JSON report on stderr, by `--label`.
fn reports(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON report ({e}): {l}")))
        .collect()
}

fn labelled<'a>(reports: &'a [Value], label: &str) -> &'a Value {
    reports.iter().find(|r| r["label"] == label).unwrap_or_else(|| panic!("no report labelled {label}: {reports:?}"))
}

#[test]
fn an_enclosing_groups_oom_kill_is_an_outside_kill_not_the_memory_verdict() {
    let Some(group) = Group::new("150M") else { return };
    let tk = testkit();
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let timeline = dir.path().join("timeline.jsonl");
        let timeline_arg = timeline.to_string_lossy().into_owned();
        let out = group.run(&[
            "--backend",
            backend,
            "--json",
            "--memory",
            "1GB",
            "--wall-time",
            "60s",
            "--timeline",
            &timeline_arg,
            "--",
            &tk,
            "alloc",
            "300",
        ]);
        let report = report(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(report["verdict"], "signaled", "{backend}: {report}");
        assert_eq!(code(&out), 137, "{backend}: {stderr}");
        assert_eq!(report["signal"], "SIGKILL", "{backend}: {report}");
        assert_eq!(report["oom"], "outside", "{backend}: {report}");
        let line = stderr.lines().find(|l| l.contains("OOM killer outside this run")).unwrap_or_else(|| {
            panic!("{backend}: no line names the outside OOM killer:\n{stderr}");
        });
        let name = group.0.file_name().unwrap().to_string_lossy().into_owned();
        assert!(line.contains(&name) && line.contains("150MiB"), "{backend}: the enclosing limit is not named: {line}");
        assert!(line.contains("--memory 1GB was not reached"), "{backend}: {line}");
        let events = std::fs::read_to_string(&timeline).unwrap();
        assert!(events.contains(r#""event":"oom_outside""#), "{backend}: no oom_outside event:\n{events}");
        assert!(!events.contains(r#""event":"oom_kill""#), "{backend}: the run's own OOM kill reported:\n{events}");
    }
}

#[test]
fn quiet_says_nothing_of_the_outside_kill() {
    let Some(group) = Group::new("150M") else { return };
    let out = group.run(&["--quiet", "--memory", "1GB", "--", &testkit(), "alloc", "300"]);
    assert_eq!(code(&out), 137);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_runs_own_oom_kill_is_the_memory_verdict() {
    for backend in backends().into_iter().filter(|b| b.starts_with("cgroup")) {
        let out = pynish_on(backend).args(["--memory", "100MB", "--", &testkit(), "alloc", "300"]).output().unwrap();
        let report = report(&out);
        assert_eq!(report["verdict"], "memory", "{backend}: {report}");
        assert_eq!(code(&out), 122);
        assert_eq!(report["oom"], "run", "{backend}: {report}");
    }
}

#[test]
fn nested_memory_limits_each_give_their_own_verdict() {
    let pynish_bin = env!("CARGO_BIN_EXE_pynish");
    for backend in backends().into_iter().filter(|b| b.starts_with("cgroup")) {
        let out = pynish_on(backend)
            .args(["--label", "outer", "--memory", "100MB", "--wall-time", "60s", "--"])
            .args([pynish_bin, "--backend", backend, "--json", "--label", "inner", "--memory", "1GB", "--"])
            .args([&testkit(), "alloc", "300"])
            .output()
            .unwrap();
        let all = reports(&out);
        let (outer, inner) = (labelled(&all, "outer"), labelled(&all, "inner"));
        assert_eq!(outer["verdict"], "memory", "{backend}: {outer}");
        assert_eq!(outer["exit_code"], 122, "{backend}: {outer}");
        assert_eq!(code(&out), 122);
        assert_eq!(outer["oom"], "run", "{backend}: {outer}");
        assert_eq!(inner["verdict"], "signaled", "{backend}: {inner}");
        assert_eq!(inner["exit_code"], 137, "{backend}: {inner}");
        assert_eq!(inner["oom"], "outside", "{backend}: {inner}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("OOM killer outside this run (the enclosing cgroup"), "{backend}: {stderr}");
    }
}

#[test]
fn nested_process_limits_each_give_their_own_verdict() {
    let pynish_bin = env!("CARGO_BIN_EXE_pynish");
    for backend in backends().into_iter().filter(|b| b.starts_with("cgroup")) {
        // The inner tree keeps its forks (they sleep) after the refusals, so that it lives while the outer run
        // samples its groups: a v1 kernel counts a refused fork in the forking task's own group only. The outer
        // grace is long and the inner's short, so that the inner pynish, signalled with its tree, always has the
        // time to end it and write its report before the outer's SIGKILL (on one loaded CI run it needed over 1 s).
        let out = pynish_on(backend)
            .args(["--label", "outer", "--processes", "5", "--wall-time", "60s", "--grace", "20s", "--"])
            .args([pynish_bin, "--backend", backend, "--json", "--label", "inner", "--processes", "100"])
            .args(["--grace", "1s", "--"])
            .args([&testkit(), "forkbomb", "20"])
            .output()
            .unwrap();
        let all = reports(&out);
        let (outer, inner) = (labelled(&all, "outer"), labelled(&all, "inner"));
        assert_eq!(outer["verdict"], "processes", "{backend}: {outer}");
        assert_eq!(code(&out), 121);
        assert_eq!(outer["fork_refused"], "run", "{backend}: {outer}");
        assert_ne!(inner["verdict"], "processes", "{backend}: {inner}");
        assert_eq!(inner["fork_refused"], "outside", "{backend}: {inner}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("a fork in the tree was refused by a process limit outside this run (the enclosing cgroup")
                && stderr.contains("allows 5 processes); pynish's --processes 100 was not reached"),
            "{backend}: {stderr}"
        );
    }
}

#[test]
fn nested_runs_groups_are_inside_the_outer_runs() {
    // The inner pynish (run as the command) prints where its groups are (`-v`): below the outer run's.
    let pynish_bin = env!("CARGO_BIN_EXE_pynish");
    // cgroup1's `-v` lists one group per hierarchy; cgroup2 has one group and is checked by its own unit tests.
    for backend in backends().into_iter().filter(|b| *b == "cgroup1") {
        let out = pynish_on(backend)
            .args(["-v", "--memory", "200MB", "--processes", "50", "--"])
            .args([pynish_bin, "--backend", backend, "-v", "--memory", "100MB", "--processes", "20", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let placements: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pynish: backend ")).collect();
        assert_eq!(placements.len(), 2, "{stderr}");
        let groups = |line: &str| -> Vec<PathBuf> {
            let list = line.rsplit("groups ").next().unwrap_or("").trim_end_matches(')');
            list.split(", ").filter(|g| g.contains("memory") || g.contains("pids")).map(PathBuf::from).collect()
        };
        let (outer, inner) = (groups(placements[0]), groups(placements[1]));
        assert!(!outer.is_empty() && !inner.is_empty(), "{stderr}");
        for dir in &inner {
            assert!(outer.iter().any(|o| dir.starts_with(o) && dir != o), "{} is not below {outer:?}", dir.display());
        }
    }
}
