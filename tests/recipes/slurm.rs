//! The README's Slurm recipe on a real single-node Slurm: munged, slurmctld and slurmd (Debian's `munge` and
//! `slurm-wlm`) started by the test from a configuration in a temporary directory, on ports the kernel picked and
//! under a node name of this test process, so that test runs side by side do not meet. Steps get cgroups
//! (`proctrack/cgroup`, `task/cgroup` with `ConstrainRAMSpace`), as on a cluster. Dropping the guard cancels
//! what runs, stops the daemons and removes the cgroups Slurm made, also when a test fails.
//!
//! Without Slurm the tests are skipped with the reason; in CI (`CI` set) a missing Slurm fails them.

use super::{Sandbox, installed, recipe};
use crate::harness::wait_until;
use crate::util::testkit;
use serde_json::Value;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MUNGED: &str = "/usr/sbin/munged";
const SLURMCTLD: &str = "/usr/sbin/slurmctld";
const SLURMD: &str = "/usr/sbin/slurmd";
/// Slurm is ready in about a second on an idle machine.
const START_PATIENCE: Duration = Duration::from_secs(60);
/// Marks the daemons (and what slurmd starts) for the clean-up.
const DAEMON_MARKER: &str = "PYNISH_TEST_SLURM";

pub struct Slurm {
    daemons: Vec<Child>,
    /// `SLURM_CONF` for the clients.
    pub conf: PathBuf,
    /// The node's name; Slurm's cgroups are `slurm_NODE` in each hierarchy.
    pub node: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Slurm {
    /// Starts a single-node Slurm, or says why not and returns None (outside CI only).
    pub fn start() -> Option<Slurm> {
        let missing: Vec<&str> = [MUNGED, SLURMCTLD, SLURMD, "sbatch", "srun", "squeue", "scancel", "sinfo"]
            .into_iter()
            .filter(|program| !installed(program))
            .collect();
        if !missing.is_empty() {
            let reason = format!("{missing:?} not installed (apt-get install slurm-wlm munge)");
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(!ci, "CI must run the Slurm recipe, but {reason}");
            eprintln!("SKIP the Slurm recipe: {reason}");
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_path_buf();
        for sub in ["state", "spool"] {
            std::fs::create_dir(path.join(sub)).expect("a directory for Slurm");
        }
        let mut key = vec![0u8; 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"), &mut key)
            .expect("random bytes");
        std::fs::write(path.join("munge.key"), key).expect("munge.key");
        std::fs::set_permissions(path.join("munge.key"), std::fs::Permissions::from_mode(0o400)).expect("chmod");

        let node = format!("pynish{}", std::process::id());
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_string();
        let conf = path.join("slurm.conf");
        let d = path.display();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=pynishtest\n\
                 SlurmctldHost={hostname}(127.0.0.1)\n\
                 SlurmctldPort={ctld_port}\n\
                 SlurmdPort={d_port}\n\
                 SlurmUser=root\n\
                 SlurmdUser=root\n\
                 AuthType=auth/munge\n\
                 AuthInfo=socket={d}/munge.socket\n\
                 CredType=cred/munge\n\
                 StateSaveLocation={d}/state\n\
                 SlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\n\
                 SlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/slurmctld.log\n\
                 SlurmdLogFile={d}/slurmd.log\n\
                 ProctrackType=proctrack/cgroup\n\
                 TaskPlugin=task/cgroup\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\n\
                 JobCompType=jobcomp/none\n\
                 SelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_Core_Memory\n\
                 SlurmdParameters=config_overrides\n\
                 MpiDefault=none\n\
                 ReturnToService=2\n\
                 KillWait=10\n\
                 NodeName={node} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs=4 RealMemory=4000 State=UNKNOWN\n\
                 PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                ctld_port = free_port(),
                d_port = free_port(),
            ),
        )
        .expect("slurm.conf");
        std::fs::write(
            path.join("cgroup.conf"),
            "CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainRAMSpace=yes\n",
        )
        .expect("cgroup.conf");

        let mut slurm = Slurm { daemons: Vec::new(), conf: conf.clone(), node: node.clone(), dir };
        let start = Instant::now();
        slurm.daemon(
            MUNGED,
            &[
                "--force",
                "--foreground",
                &format!("--socket={d}/munge.socket"),
                &format!("--key-file={d}/munge.key"),
                &format!("--pid-file={d}/munged.pid"),
                &format!("--log-file={d}/munged.log"),
                &format!("--seed-file={d}/munge.seed"),
            ],
        );
        let socket = path.join("munge.socket");
        assert!(wait_until(START_PATIENCE, || socket.exists()), "munged did not start:\n{}", slurm.logs());
        slurm.daemon(SLURMCTLD, &["-D", "-f", &conf.display().to_string()]);
        slurm.daemon(SLURMD, &["-D", "-f", &conf.display().to_string(), "-N", &node]);
        let ready = wait_until(START_PATIENCE, || {
            let out = slurm.client("sinfo").args(["-h", "-o", "%T", "-n", &node]).output().expect("sinfo runs");
            String::from_utf8_lossy(&out.stdout).trim() == "idle"
        });
        assert!(ready, "Slurm's node is not idle after {START_PATIENCE:?}:\n{}", slurm.logs());
        eprintln!("Slurm ready after {:?}", start.elapsed());
        Some(slurm)
    }

    fn daemon(&mut self, program: &str, args: &[&str]) {
        let name = Path::new(program).file_name().expect("a program name").to_string_lossy();
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.out"))).expect("a log file");
        let child = Command::new(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .env(DAEMON_MARKER, self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start: {e}"));
        self.daemons.push(child);
    }

    /// A Slurm client command for this cluster.
    pub fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// The daemons' logs, for a failure message.
    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") || name.ends_with(".out") {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
                text += &format!("--- {name}\n{}\n", tail.join("\n"));
            }
        }
        text
    }

    /// The ids of the jobs in the queue.
    pub fn queue(&self) -> Vec<String> {
        let out = self.client("squeue").args(["-h", "-o", "%i"]).output().expect("squeue runs");
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for job in self.queue() {
            let _ = self.client("scancel").arg(&job).status();
        }
        let _ = wait_until(Duration::from_secs(15), || self.queue().is_empty());
        for daemon in self.daemons.iter().rev() {
            // SAFETY: kill takes plain integers; the pid is a daemon this guard started.
            unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
        }
        let marker = self.dir.path().display().to_string();
        let gone = wait_until(Duration::from_secs(10), || daemon_processes(&marker).is_empty());
        if !gone {
            for pid in daemon_processes(&marker) {
                // SAFETY: as above; the pid is a process of this cluster.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            wait_until(Duration::from_secs(5), || daemon_processes(&marker).is_empty());
        }
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        // Slurm leaves its top cgroups (slurm_NODE) behind in each hierarchy; remove them, deepest first.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_groups(&hierarchy.path().join(format!("slurm_{}", self.node)));
        }
    }
}

/// Live processes of this cluster: the daemons (marked by `DAEMON_MARKER=marker` in their environment) and the
/// slurmstepds slurmd starts (which get a clean environment and init as parent, but keep slurmd's log, in the
/// cluster's directory `marker`, open).
fn daemon_processes(marker: &str) -> Vec<i32> {
    let needle = format!("{DAEMON_MARKER}={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let marked = std::fs::read(entry.path().join("environ"))
            .is_ok_and(|environ| environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()));
        let holds_a_file_here = || {
            std::fs::read_dir(entry.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(marker)))
        };
        if pid as u32 != std::process::id() && (marked || holds_a_file_here()) && crate::util::pid_alive(pid) {
            found.push(pid);
        }
    }
    found
}

fn remove_groups(group: &Path) {
    let Ok(entries) = std::fs::read_dir(group) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_groups(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(group);
}

/// Submits `solve.sbatch` (with the arguments after it), prints the job's id and waits until it has left the
/// queue (`sbatch --wait` polls only every few seconds). Bounded by the sandbox's timeout.
const SUBMIT_AND_WAIT: &str = r#"set -e
job=$(sbatch --parsable --output=slurm.out "$@" solve.sbatch)
echo "$job"
while squeue -h -o %i | grep -qx "$job"; do sleep 0.05; done"#;

/// One submission of the recipe: the sandbox it ran in and the job's report.
struct Submission {
    sandbox: Sandbox,
    report: Value,
    output: String,
}

/// Writes the recipe as `solve.sbatch` with `solve` (a shell script body), submits it with `sbatch_args`, waits
/// for the job to end and returns its report.
fn submit(slurm: &Slurm, solve: &str, sbatch_args: &[&str], env: &[(&str, &str)]) -> Submission {
    let recipe = recipe("slurm-sbatch");
    let mut sandbox = Sandbox::new();
    sandbox.env("SLURM_CONF", &slurm.conf.display().to_string());
    for (key, value) in env {
        sandbox.env(key, value);
    }
    sandbox.script("solve", solve);
    std::fs::write(sandbox.path().join("solve.sbatch"), &recipe.code).expect("solve.sbatch");
    if sbatch_args.iter().any(|arg| arg.starts_with("--uid")) {
        // The job's user writes its report and output here.
        std::fs::set_permissions(sandbox.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let run = sandbox.run("sh", SUBMIT_AND_WAIT, sbatch_args);
    let output = std::fs::read_to_string(sandbox.path().join("slurm.out")).unwrap_or_default();
    let job = run.stdout.trim().to_string();
    assert!(!job.is_empty() && run.code == 0, "sbatch failed: {}\n{}", run.stderr, slurm.logs());
    let path = sandbox.path().join(format!("report-{job}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; job output:\n{output}\n{}", path.display(), slurm.logs()));
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(report["label"], job.as_str(), "{report}");
    Submission { sandbox, report, output }
}

/// One cluster for every case, which run side by side (Slurm takes a few seconds from submission to the end of
/// even a short job).
#[test]
fn slurm_recipe_runs_pynish_in_job_steps() {
    let Some(slurm) = Slurm::start() else { return };
    std::thread::scope(|scope| {
        let cases = [
            scope.spawn(|| within_limits_and_over_pynish_memory_limit(&slurm)),
            scope.spawn(|| slurm_memory_limit_below_pynish_limit_ends_the_job_first(&slurm)),
            scope.spawn(|| cancel_reaches_pynish_which_reports(&slurm)),
            scope.spawn(|| as_a_user_pynish_samples_in_the_step(&slurm)),
        ];
        let failed = cases.into_iter().map(|case| case.join()).filter(Result::is_err).count();
        assert_eq!(failed, 0, "see the panic message(s) above");
    });
}

fn within_limits_and_over_pynish_memory_limit(slurm: &Slurm) {
    let cgroup1 = crate::util::backends().contains(&"cgroup1");

    // A job within its limits: it runs in the step, inside pynish's group inside the step's group.
    let done = submit(slurm, "cat /proc/self/cgroup > cgroup.txt; echo solved \"$1\"", &[], &[]);
    assert_eq!(done.report["verdict"], "completed", "{}", done.report);
    assert_eq!(done.report["limits"]["memory_bytes"], 900_000_000);
    assert_eq!(done.report["limits"]["wall_time_s"], 28.0 * 60.0);
    assert!(done.output.contains("solved input.txt"), "{}", done.output);
    let cgroups = std::fs::read_to_string(done.sandbox.path().join("cgroup.txt")).expect("cgroup.txt");
    let memory = cgroups.lines().find(|l| l.contains(":memory:")).expect("a memory cgroup").to_string();
    assert!(memory.contains(&format!("/slurm_{}/uid_", slurm.node)), "not in the step's group: {memory}");
    if cgroup1 {
        assert_eq!(done.report["backend"], "cgroup1", "{}", done.report);
        let step = memory.rsplit_once("/pynish-").map(|(step, _)| step);
        assert!(step.is_some_and(|s| s.contains("/step_")), "pynish's group is not in the step's: {memory}");
    }

    // Over pynish's memory limit (below Slurm's --mem=1G): pynish's verdict.
    let over = submit(slurm, &format!("exec {} alloc 1500 50", testkit()), &[], &[]);
    assert_eq!((over.report["exit_code"].as_i64(), over.report["verdict"].as_str()), (Some(122), Some("memory")));
}

fn as_a_user_pynish_samples_in_the_step(slurm: &Slurm) {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIP a Slurm job of another user: only root may submit one (sbatch --uid)");
        return;
    }
    // Slurm gives the user the step's memory (and freezer) group, but pynish's cgroup1 backend also needs the
    // cpuacct and pids hierarchies, which Slurm leaves alone here: pynish samples, and still holds the limit.
    let solve = format!(
        "stat -c '%U' /sys/fs/cgroup/memory$(grep :memory: /proc/self/cgroup | cut -d: -f3) > owner.txt; \
         exec {} alloc 1500 50",
        testkit()
    );
    let run = submit(slurm, &solve, &["--uid=65534", "--gid=65534"], &[]);
    let owner = std::fs::read_to_string(run.sandbox.path().join("owner.txt")).expect("owner.txt");
    assert_eq!(owner.trim(), "nobody", "the step's memory group belongs to the job's user");
    let report = &run.report;
    assert_eq!(report["backend"], "proc", "{report}");
    assert_eq!((report["exit_code"].as_i64(), report["verdict"].as_str()), (Some(122), Some("memory")), "{report}");
}

fn slurm_memory_limit_below_pynish_limit_ends_the_job_first(slurm: &Slurm) {
    let alloc = format!("exec {} alloc 600 20", testkit());
    let mut backends = vec!["proc"];
    if crate::util::backends().contains(&"cgroup1") {
        backends.push("cgroup1");
    }
    for backend in backends {
        let run = submit(slurm, &alloc, &["--mem=200M"], &[("PYNISH_BACKEND", backend)]);
        let report = &run.report;
        assert_eq!(report["backend"], backend);
        let peak = report["usage"]["peak_memory_bytes"].as_u64().expect("a peak");
        assert!(peak < 300_000_000, "{backend}: Slurm's 200 MiB were passed: {report}");
        // Slurm's limit, not pynish's: the kernel's OOM kill by an enclosing group, an outside kill with every
        // backend (issue 25), named as such.
        assert_eq!(
            (report["exit_code"].as_i64(), report["verdict"].as_str()),
            (Some(137), Some("signaled")),
            "{report}"
        );
        assert_eq!(report["signal"], "SIGKILL");
        assert_eq!(report["oom"], "outside", "{backend}: {report}");
    }
}

fn cancel_reaches_pynish_which_reports(slurm: &Slurm) {
    let recipe = recipe("slurm-sbatch");
    let mut sandbox = Sandbox::new();
    sandbox.env("SLURM_CONF", &slurm.conf.display().to_string());
    sandbox.script("solve", "echo \"$SLURM_JOB_ID\" > started.tmp; mv started.tmp started; exec sleep 600");
    std::fs::write(sandbox.path().join("solve.sbatch"), &recipe.code).expect("solve.sbatch");
    let running = sandbox.spawn("sh", SUBMIT_AND_WAIT, &[]);
    let started = sandbox.path().join("started");
    assert!(wait_until(Duration::from_secs(30), || started.exists()), "the job did not start:\n{}", slurm.logs());
    let job = std::fs::read_to_string(&started).expect("the job's id").trim().to_string();
    // What Slurm does at --time, on demand.
    let status = slurm.client("scancel").arg(&job).status().expect("scancel runs");
    assert!(status.success());
    let run = running.finish();
    assert_eq!(run.stdout.trim(), job);
    let path = sandbox.path().join(format!("report-{job}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), slurm.logs()));
    let report: Value = serde_json::from_str(&text).expect("a report");
    assert_eq!(report["verdict"], "signaled", "{report}");
    assert_eq!(report["received_signal"], "SIGTERM", "{report}");
}
