//! Many pynish runs at once, as GNU parallel runs them: 40 jobs of mixed outcomes (completed with various exit
//! codes, wall time with a daemon left behind, memory, CPU time), 8 at a time, all appending their reports to
//! one file. Every verdict must be right, every line one whole report, and nothing of any run may be left: no
//! process (found by the tag every run carries) and no cgroup (found by the names pynish gives its groups).

use crate::harness::*;
use crate::util::{have_tool, testkit};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const JOBS: usize = 40;
const AT_ONCE: usize = 8;

/// A job of the list: its line for parallel, and the verdict and exit status it must end with.
struct Job {
    line: String,
    verdict: &'static str,
    exit_code: i32,
}

/// Job `n` (1-based): the kind goes round, so that each wave of 8 mixes them all.
fn job(n: usize, backend: &str, dir: &Path) -> Job {
    let dir = dir.display();
    let pynish = env!("CARGO_BIN_EXE_pynish");
    // `exec`: pynish takes the shell's pid, which the job writes down first (pynish's groups are named by it).
    let start = format!("echo {n} $$ >> pids; exec {pynish} --backend {backend} --label {n} --report-fd 3");
    let end = "3>>results.jsonl";
    let tk = testkit();
    match n % 4 {
        0 => {
            let code = (n / 4 % 5) as i32;
            Job {
                line: format!(
                    "{start} --wall-time 30s -- sh -c 'cat /proc/self/cgroup > {dir}/cgroup-{n}; exit {code}' {end}"
                ),
                verdict: "completed",
                exit_code: code,
            }
        }
        1 => Job {
            line: format!("{start} --wall-time 500ms --grace 500ms -- {tk} daemon {dir}/daemon-{n} {end}"),
            verdict: "wall_time",
            exit_code: 124,
        },
        2 => Job {
            line: format!("{start} --memory 50MB --wall-time 30s -- {tk} alloc 200 5 {end}"),
            verdict: "memory",
            exit_code: 122,
        },
        _ => Job {
            // 0.3 s of CPU: with 8 jobs on a small machine it may take many seconds of wall time to get it.
            line: format!("{start} --cpu-time 300ms --wall-time 60s -- {tk} spin {end}"),
            verdict: "cpu_time",
            exit_code: 123,
        },
    }
}

/// Directories under `dir` (to `depth` levels) whose name starts with one of `prefixes`.
fn groups_named(dir: &Path, prefixes: &[String], depth: usize, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|prefix| name.starts_with(prefix)) {
            found.push(entry.path().display().to_string());
        }
        if depth > 1 {
            groups_named(&entry.path(), prefixes, depth - 1, found);
        }
    }
}

#[test]
fn forty_jobs_eight_at_a_time_each_get_their_verdict_and_leave_nothing() {
    if !have_tool("parallel", "--version", "parallel") {
        return;
    }
    each_backend(|backend| {
        let scene = Scene::new("many");
        let jobs: Vec<Job> = (1..=JOBS).map(|n| job(n, backend, scene.dir.path())).collect();
        let list: String = jobs.iter().map(|job| job.line.clone() + "\n").collect();
        std::fs::write(scene.path("jobs.txt"), list).expect("jobs.txt");
        let mut cmd = Command::new("parallel");
        cmd.args(["--jobs", &AT_ONCE.to_string(), "--joblog", "jobs.log", "-a", "jobs.txt"])
            .current_dir(scene.dir.path())
            .env(TAG_VAR, &scene.tag)
            .env("HOME", scene.dir.path());
        close_extra_fds(&mut cmd, &[]);
        let (out, took) = scene.run(&mut cmd, Duration::from_secs(120));
        eprintln!("{backend}: {JOBS} jobs, {AT_ONCE} at a time, took {took:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{backend}: parallel or a job said:\n{stderr}");

        // Every line one whole report, one per job, each with its verdict.
        let text = std::fs::read_to_string(scene.path("results.jsonl")).expect("results.jsonl");
        let mut reports: BTreeMap<usize, Value> = BTreeMap::new();
        for line in text.lines() {
            let report: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{backend}: {e}: {line}"));
            assert_eq!(report["schema"], pynish::report::SCHEMA);
            let label: usize = report["label"].as_str().and_then(|l| l.parse().ok()).expect("a job number");
            assert!(reports.insert(label, report).is_none(), "{backend}: job {label} reported twice");
        }
        assert_eq!(reports.len(), JOBS, "{backend}: {text}");
        for (n, job) in (1..).zip(&jobs) {
            let report = &reports[&n];
            let what = (report["verdict"].as_str(), report["exit_code"].as_i64(), report["backend"].as_str());
            assert_eq!(what, (Some(job.verdict), Some(job.exit_code as i64), Some(backend)), "job {n}: {report}");
        }
        // parallel saw the same exit statuses.
        let log = std::fs::read_to_string(scene.path("jobs.log")).expect("jobs.log");
        let mut logged = 0;
        for line in log.lines().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            let n: usize = fields[0].parse().expect("a job number");
            assert_eq!(fields[6], jobs[n - 1].exit_code.to_string(), "{backend}: job {n} in the job log");
            logged += 1;
        }
        assert_eq!(logged, JOBS);

        // No process of any run is left, the daemons included.
        let mut published = Vec::new();
        for n in (1..=JOBS).filter(|n| n % 4 == 1) {
            published.extend(wait_pids(&scene.path(&format!("daemon-{n}"))));
        }
        assert_run_gone(&scene.tag, &published);

        // No group of any run is left. The runs' groups are named by their pynish's pid: the census looks for
        // those names, and a completed job saw that its own memory group was one (with a cgroup backend).
        let pids: BTreeMap<usize, u32> = std::fs::read_to_string(scene.path("pids"))
            .expect("pids")
            .lines()
            .map(|line| {
                let (n, pid) = line.split_once(' ').expect("N PID");
                (n.parse().expect("N"), pid.parse().expect("PID"))
            })
            .collect();
        assert_eq!(pids.len(), JOBS);
        if backend != "proc" {
            let cgroup = std::fs::read_to_string(scene.path("cgroup-4")).expect("cgroup-4");
            let memory = cgroup.lines().find(|l| l.contains("memory")).unwrap_or_default();
            assert!(memory.contains(&format!("/pynish-{}-", pids[&4])), "job 4 was not in its group: {cgroup}");
        }
        let prefixes: Vec<String> = pids.values().map(|pid| format!("pynish-{pid}-")).collect();
        let mut left = Vec::new();
        groups_named(Path::new("/sys/fs/cgroup"), &prefixes, 8, &mut left);
        assert!(left.is_empty(), "{backend}: groups left behind: {left:?}");
    });
}
