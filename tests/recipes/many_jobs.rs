//! The README's "Many jobs" recipes for GNU parallel, run with the real parallel: many commands under the same
//! limits with one JSON line each, their summary with jq, resuming an interrupted run, jobs pinned to cores under
//! a memory budget, and the same across machines over ssh (an sshd on 127.0.0.1, see `sshd`).

use super::{Sandbox, have, marked, recipe};
use crate::harness::wait_until;
use crate::util::testkit;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The reports of a `results.jsonl`, in file order; every line must be one whole JSON object.
fn reports(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let report: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not one report: {line}"));
            assert_eq!(report["schema"], pynish::report::SCHEMA, "{line}");
            report
        })
        .collect()
}

/// Reports by label (a label seen twice keeps both, in file order).
fn by_label(reports: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for report in reports {
        map.entry(report["label"].as_str().expect("a label").to_string()).or_default().push(report.clone());
    }
    map
}

/// parallel's job log: job number → (exit value, signal).
fn joblog(path: &Path) -> BTreeMap<usize, (i32, i32)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut jobs = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        let seq: usize = fields[0].parse().expect("a job number");
        let entry = (fields[6].parse().expect("an exit value"), fields[7].parse().expect("a signal"));
        assert!(jobs.insert(seq, entry).is_none(), "job {seq} is twice in the job log:\n{text}");
    }
    jobs
}

fn read(sandbox: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sandbox.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn write_jobs(sandbox: &Sandbox, jobs: &[String]) {
    std::fs::write(sandbox.path().join("jobs.txt"), jobs.join("\n") + "\n").expect("jobs.txt");
}

/// The jobs of the plain recipe: the line, what it prints on stdout and stderr, pynish's exit status.
fn mixed_jobs() -> Vec<(String, String, &'static str, i32)> {
    let mut jobs = vec![
        ("echo hello; echo to-stderr >&2".into(), "hello\n".into(), "to-stderr\n", 0),
        ("echo second; exit 3".into(), "second\n".into(), "", 3),
        (format!("{} alloc 1500 50", testkit()), String::new(), "", 122),
    ];
    for n in 4..=8 {
        jobs.push((format!("echo job {n}; sleep 0.{n}"), format!("job {n}\n"), "", 0));
    }
    jobs
}

#[test]
fn many_jobs_recipe_gives_one_json_line_per_job_and_keeps_outputs_apart() {
    if !have("parallel", "parallel") {
        return;
    }
    let recipe = recipe("many-jobs");
    let sandbox = Sandbox::new();
    let jobs = mixed_jobs();
    write_jobs(&sandbox, &jobs.iter().map(|job| job.0.clone()).collect::<Vec<_>>());
    let run = sandbox.run("bash", &recipe.code, &[]);
    // parallel's status: how many jobs failed (here: exit 3 and the memory limit).
    assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    assert!(run.took < Duration::from_secs(20), "took {:?}", run.took);

    let reports = reports(&sandbox.path().join("results.jsonl"));
    assert_eq!(reports.len(), jobs.len(), "one line per job");
    let by_label = by_label(&reports);
    let log = joblog(&sandbox.path().join("jobs.log"));
    for (n, (line, out, err, code)) in jobs.iter().enumerate() {
        let seq = n + 1;
        let report = &by_label[line][0];
        assert_eq!(by_label[line].len(), 1, "{line}");
        assert_eq!(report["exit_code"], *code, "{line}: {report}");
        let verdict = if *code == 122 { "memory" } else { "completed" };
        assert_eq!(report["verdict"], verdict, "{line}: {report}");
        assert_eq!(report["command"], serde_json::json!(["sh", "-c", line]));
        assert_eq!(report["limits"]["wall_time_s"], 600.0);
        assert_eq!(report["limits"]["memory_bytes"], 1u64 << 30);
        assert_eq!(log[&seq], (*code, 0), "job {seq} in the job log");
        if *code != 122 {
            assert_eq!(read(&sandbox, &format!("out/{seq}.out")), *out, "job {seq}");
            assert_eq!(read(&sandbox, &format!("out/{seq}.err")), *err, "job {seq}");
        }
    }
}

#[test]
fn many_jobs_recipe_resumes_an_interrupted_run() {
    if !have("parallel", "parallel") {
        return;
    }
    let recipe = recipe("many-jobs");
    let sandbox = Sandbox::new();
    // Job 4 blocks until `released` exists, so that the first run is interrupted while it runs; the others are
    // done by then.
    sandbox.stub("blocker", "touch started; [ -e released ] || exec sleep 600; echo released");
    let jobs: Vec<String> = ["echo 1", "echo 2", "echo 3", "blocker", "echo 5", "echo 6"].map(String::from).into();
    write_jobs(&sandbox, &jobs);

    let first = sandbox.spawn("bash", &recipe.code, &[]);
    let log = sandbox.path().join("jobs.log");
    let ready =
        wait_until(Duration::from_secs(20), || sandbox.path().join("started").exists() && joblog(&log).len() == 5);
    assert!(ready, "the first run did not get to job 4 with the others done; job log: {:?}", joblog(&log));
    // Ctrl-C: the terminal sends SIGINT to parallel (its jobs are in process groups of their own).
    let parallel: Vec<i32> =
        marked(&first.marker).into_iter().filter(|(_, cmd)| cmd.contains("bin/parallel")).map(|(pid, _)| pid).collect();
    assert_eq!(parallel.len(), 1, "parallel's pid: {:?}", marked(&first.marker));
    // SAFETY: kill takes plain integers; the pid is this recipe's parallel.
    assert_eq!(unsafe { libc::kill(parallel[0], libc::SIGINT) }, 0);
    let first = first.finish();
    assert_ne!(first.code, 0, "stderr:\n{}", first.stderr);
    assert_eq!(joblog(&log).keys().copied().collect::<Vec<_>>(), [1, 2, 3, 5, 6], "job 4 was interrupted");
    let interrupted = &by_label(&reports(&sandbox.path().join("results.jsonl")))["blocker"];
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["verdict"], "signaled", "{}", interrupted[0]);
    assert_eq!(interrupted[0]["received_signal"], "SIGTERM", "{}", interrupted[0]);
    assert_eq!(interrupted[0]["escalation"]["sigkill_sent"], false, "pynish had the time to end it gently");

    std::fs::write(sandbox.path().join("released"), "").expect("released");
    let second = sandbox.run("bash", &recipe.code, &[]);
    assert_eq!(second.code, 0, "stderr:\n{}", second.stderr);
    let log = joblog(&log);
    assert_eq!(log.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert!(log.values().all(|&entry| entry == (0, 0)), "{log:?}");
    let reports = by_label(&reports(&sandbox.path().join("results.jsonl")));
    for job in &jobs {
        let verdicts: Vec<&Value> = reports[job].iter().map(|r| &r["verdict"]).collect();
        let expected = if job == "blocker" { vec!["signaled", "completed"] } else { vec!["completed"] };
        assert_eq!(verdicts, expected, "{job}: run again only if it was interrupted");
    }
    assert_eq!(read(&sandbox, "out/4.out"), "released\n");
}

#[test]
fn summary_recipe_counts_verdicts_and_names_the_slowest_and_the_biggest() {
    if !have("jq", "jq") {
        return;
    }
    let recipe = recipe("many-jobs-summary");
    let sandbox = Sandbox::new();
    // Reports as the recipes write them, by pynish: "b" was interrupted once and run again.
    let runs: &[(&str, &[&str])] = &[
        ("a", &["--wall-time", "200ms", "--", "sleep", "5"]),
        ("b", &["--wall-time", "5s", "--", "sh", "-c", "kill -TERM $PPID; sleep 5"]),
        ("b", &["--", "sleep", "1"]),
        ("c", &["--", "sleep", "0.1"]),
    ];
    let mut reports = String::new();
    for (label, args) in runs {
        let out = crate::util::pynish().args(["--json", "--label", label]).args(*args).output().expect("pynish");
        reports += &crate::util::report(&out).to_string();
        reports += "\n";
    }
    let alloc = crate::util::pynish()
        .args(["--json", "--label", "d", "--memory", "30MB", "--", &testkit(), "alloc", "100", "5"])
        .output()
        .expect("pynish");
    reports += &format!("{}\n", crate::util::report(&alloc));
    std::fs::write(sandbox.path().join("results.jsonl"), &reports).expect("results.jsonl");

    let run = sandbox.run("bash", &recipe.code, &[]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let last: Vec<Value> = reports.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (b, d) = (&last[2], &last[4]);
    assert_eq!(lines[..3], ["2 completed", "1 memory", "1 wall_time"], "{}", run.stdout);
    // The slowest: b's second run (1 s) first, then a (0.2 s), c (0.1 s) and d (a quick allocation) in an order
    // a loaded machine may change.
    assert_eq!(lines[3], format!("{} s  b", b["usage"]["wall_time_s"]), "{}", run.stdout);
    let mut rest: Vec<&str> = lines[4..7].iter().map(|l| l.rsplit("  ").next().unwrap_or_default()).collect();
    rest.sort();
    assert_eq!(rest, ["a", "c", "d"], "{}", run.stdout);
    let seconds: Vec<f64> =
        lines[3..7].iter().map(|l| l.split(' ').next().unwrap().parse().expect("seconds")).collect();
    assert!(seconds.windows(2).all(|w| w[0] >= w[1]), "not slowest first: {}", run.stdout);
    assert_eq!(lines.len(), 3 + 4 + 1, "{}", run.stdout);
    let peak = d["usage"]["peak_memory_bytes"].as_u64().expect("a peak") / 1_048_576;
    assert_eq!(lines[7], format!("peak {peak} MiB  d"), "{}", run.stdout);
}

#[test]
fn pinned_recipe_puts_each_job_on_its_slots_core_within_a_share_of_the_budget() {
    if !have("parallel", "parallel") {
        return;
    }
    let recipe = recipe("many-jobs-pinned");
    let cores = std::thread::available_parallelism().expect("nproc").get() as u64;
    let mut sandbox = Sandbox::new();
    sandbox.env("BUDGET", "400000000");
    let mut jobs: Vec<String> = (1..=6)
        .map(|n| format!("echo {n} $PARALLEL_JOBSLOT $(grep Cpus_allowed_list /proc/self/status | cut -f2)"))
        .collect();
    // More than the whole budget: over its share whatever the number of cores.
    jobs.push(format!("{} alloc 500 10", testkit()));
    write_jobs(&sandbox, &jobs);
    let run = sandbox.run("bash", &recipe.code, &[]);
    assert_eq!(run.code, 1, "one job failed (the allocator); stderr:\n{}", run.stderr);
    for n in 1..=6 {
        let out = read(&sandbox, &format!("out/{n}/stdout"));
        let fields: Vec<u64> = out.split_whitespace().map(|f| f.parse().expect("a number")).collect();
        let [job, slot, cpu] = fields[..] else { panic!("job {n} printed {out:?}") };
        assert_eq!(job, n);
        assert!((1..=cores).contains(&slot), "job {n}: slot {slot} of {cores}");
        assert_eq!(cpu, slot - 1, "job {n} in slot {slot} is pinned to core {cpu} alone");
    }
    let reports = by_label(&reports(&sandbox.path().join("results.jsonl")));
    assert_eq!(reports.len(), jobs.len());
    for (label, runs) in &reports {
        assert_eq!(runs[0]["limits"]["memory_bytes"], 400_000_000 / cores, "{label}");
        let verdict = if label.contains("alloc") { "memory" } else { "completed" };
        assert_eq!(runs[0]["verdict"], verdict, "{label}: {}", runs[0]);
    }
}

/// MemAvailable in bytes.
fn mem_available() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:")).expect("MemAvailable");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).expect("a number") * 1024
}

#[test]
fn pinned_recipe_shares_out_eighty_percent_of_available_memory_by_default() {
    if !have("parallel", "parallel") {
        return;
    }
    let recipe = recipe("many-jobs-pinned");
    let cores = std::thread::available_parallelism().expect("nproc").get() as u64;
    let sandbox = Sandbox::new();
    write_jobs(&sandbox, &["true".to_string()]);
    let before = mem_available();
    let run = sandbox.run("bash", &recipe.code, &[]);
    let after = mem_available();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let reports = reports(&sandbox.path().join("results.jsonl"));
    let share = reports[0]["limits"]["memory_bytes"].as_u64().expect("a memory limit");
    // MemAvailable moves as other processes run; the share must be 80 % of it, give or take that.
    let (low, high) = (before.min(after) * 8 / 10 / cores, before.max(after) * 8 / 10 / cores);
    assert!(share * 100 >= low * 95 && share * 100 <= high * 105, "share {share}, expected {low}..{high}");
}

#[test]
fn ssh_recipe_runs_jobs_on_other_machines_and_brings_the_reports_back() {
    let tools = [
        ("parallel", "parallel"),
        ("rsync", "rsync"),
        (super::sshd::SSHD, "openssh-server"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ];
    if !tools.iter().all(|(program, package)| have(program, package)) {
        return;
    }
    let recipe = recipe("many-jobs-ssh");
    let mut sandbox = Sandbox::new();
    let sshd = super::sshd::Sshd::start(&sandbox.path().display().to_string());
    sandbox.env("PARALLEL_SSH", &format!("ssh -F {}", sshd.client_config.display()));
    let mut jobs: Vec<String> =
        (1..=4).map(|n| format!("echo job {n} on ${{PARALLEL_SSHLOGIN#*/}} over \"$SSH_CONNECTION\"")).collect();
    jobs.push("echo failing >&2; exit 3".into());
    jobs.push(format!("{} alloc 1500 50", testkit()));
    write_jobs(&sandbox, &jobs);
    let run = sandbox.run("bash", &recipe.code, &[]);
    assert_eq!(run.code, 0, "the last command (cat) succeeds; stderr:\n{}", run.stderr);

    let mut nodes = Vec::new();
    for n in 1..=4 {
        let out = read(&sandbox, &format!("out/{n}/stdout"));
        let rest = out.strip_prefix(&format!("job {n} on ")).unwrap_or_else(|| panic!("job {n} printed {out:?}"));
        let (node, connection) = rest.trim_end().split_once(" over ").expect("node and connection");
        assert!(["node1", "node2"].contains(&node), "job {n} ran on {node:?}");
        assert!(connection.starts_with("127.0.0.1 "), "job {n} did not run over ssh: {connection:?}");
        nodes.push(node.to_string());
    }
    eprintln!("jobs 1-4 ran on {nodes:?}");
    // parallel fills the free slots of both machines at the start.
    assert!(nodes.contains(&"node1".into()) && nodes.contains(&"node2".into()), "jobs 1-4 ran on {nodes:?}");
    assert_eq!(read(&sandbox, "out/5/stderr"), "failing\n");
    let reports = by_label(&reports(&sandbox.path().join("results.jsonl")));
    assert_eq!(reports.len(), jobs.len(), "{reports:?}");
    for job in &jobs {
        let report = &reports[job][0];
        let (verdict, code) = match job {
            j if j.contains("alloc") => ("memory", 122),
            j if j.contains("exit 3") => ("completed", 3),
            _ => ("completed", 0),
        };
        assert_eq!((report["verdict"].as_str(), report["exit_code"].as_i64()), (Some(verdict), Some(code)), "{job}");
    }
    // --cleanup removed each report on the machine that ran it; only the copies came back here.
    for n in 1..=jobs.len() {
        assert!(sandbox.path().join(format!("report-{n}.json")).exists(), "report {n} came back");
    }
    drop(sshd);
}
