//! The README's recipes, run as written: every code block that follows a `<!-- recipe: NAME -->` line is
//! extracted and run by a shell in a sandbox (a temporary directory as working directory and HOME, the built
//! pynish on PATH, stubs for the commands a recipe stands for), and what it prints is checked. Every process a
//! recipe starts carries a marker in its environment; a test fails if any of them is still alive once the recipe
//! is done. The "Many jobs" recipes (GNU parallel, ssh, Slurm) are in the submodules.

use crate::util::{pid_alive, testkit};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod many_jobs;
mod slurm;
mod sshd;

/// Generous: each recipe is meant to take well under 2 s, but tests run side by side on a small machine.
const RECIPE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long processes of a finished recipe get to finish exiting before they count as survivors.
const EXIT_PATIENCE: Duration = Duration::from_secs(2);
/// The environment variable that marks every process a recipe starts.
const MARKER: &str = "PYNISH_RECIPE_SANDBOX";

struct Recipe {
    /// The fence's language: `sh` or `crontab`.
    language: String,
    code: String,
}

/// The recipes of the README, by name.
fn recipes() -> Vec<(String, Recipe)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
    let mut found = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("<!-- recipe: ").and_then(|rest| rest.strip_suffix(" -->")) else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        let language = fence.strip_prefix("```").unwrap_or_else(|| panic!("recipe {name}: no ``` right after it"));
        let code: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
        found.push((name.to_string(), Recipe { language: language.to_string(), code: code.join("\n") + "\n" }));
    }
    found
}

fn recipe(name: &str) -> Recipe {
    recipes().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("README.md has no recipe {name}")).1
}

/// The command part of a crontab line: what follows the five time fields.
fn cron_command(line: &str) -> &str {
    let mut rest = line.trim_start();
    for _ in 0..5 {
        rest = rest.trim_start_matches(|c: char| !c.is_whitespace()).trim_start();
    }
    rest
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn last_stderr_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }
}

/// A temporary directory that is a recipe's working directory and HOME, with `bin/` for stubs.
struct Sandbox {
    dir: tempfile::TempDir,
    /// PATH for the recipe; `None`: stubs, pynish's directory, then the system's.
    path: Option<String>,
    env: Vec<(String, String)>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("stubs")).expect("stubs/");
        Sandbox { dir, path: None, env: Vec::new() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executable shell script `name` (relative to the sandbox) with `body` after the shebang.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("the script's directory");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("the script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// A stand-in, on PATH, for a command a recipe runs (`make`).
    fn stub(&self, name: &str, body: &str) {
        self.script(&format!("stubs/{name}"), body);
    }

    fn env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Runs `shell -c code NAME ARGS...` in the sandbox, with a clean environment.
    fn run(&self, shell: &str, code: &str, args: &[&str]) -> Run {
        self.spawn(shell, code, args).finish()
    }

    /// Starts `shell -c code NAME ARGS...` in the sandbox, with a clean environment; `finish` waits for it.
    fn spawn(&self, shell: &str, code: &str, args: &[&str]) -> Running {
        let pynish_dir = Path::new(env!("CARGO_BIN_EXE_pynish")).parent().expect("pynish's directory");
        let path = self.path.clone().unwrap_or_else(|| {
            format!("{}:{}:/usr/local/bin:/usr/bin:/bin", self.path().join("stubs").display(), pynish_dir.display())
        });
        let marker = self.path().display().to_string();
        let mut command = Command::new(shell);
        command
            .args(["-c", code, "recipe"])
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path())
            .env(MARKER, &marker)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{shell} does not start: {e}"));
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Running { child, start, marker, out_reader, err_reader }
    }
}

/// A recipe started by `Sandbox::spawn`.
struct Running {
    child: std::process::Child,
    start: Instant,
    /// The value of `MARKER` in the recipe's environment.
    marker: String,
    out_reader: std::thread::JoinHandle<String>,
    err_reader: std::thread::JoinHandle<String>,
}

impl Running {
    /// Waits for the recipe (at most `RECIPE_TIMEOUT`) and checks that it left no process behind.
    fn finish(mut self) -> Run {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if self.start.elapsed() > RECIPE_TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                kill_survivors(&self.marker);
                panic!("the recipe ran longer than {RECIPE_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = self.start.elapsed();
        let survivors = kill_survivors(&self.marker);
        assert!(survivors.is_empty(), "the recipe left processes behind: {survivors:?}");
        let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let stdout = self.out_reader.join().expect("stdout");
        Run { code, stdout, stderr: self.err_reader.join().expect("stderr"), took }
    }
}

/// Live processes whose environment carries `MARKER=marker`.
fn marked(marker: &str) -> Vec<(i32, String)> {
    let needle = format!("{MARKER}={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()) && pid_alive(pid) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string()));
        }
    }
    found
}

/// Waits a little for the recipe's processes to be gone; kills and returns those that are not.
fn kill_survivors(marker: &str) -> Vec<(i32, String)> {
    let start = Instant::now();
    loop {
        let alive = marked(marker);
        if alive.is_empty() {
            return alive;
        }
        if start.elapsed() > EXIT_PATIENCE {
            for (pid, _) in &alive {
                // SAFETY: kill takes plain integers; pid is a process of this test's recipe.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails the test, naming the Debian package to install, when `program` (a name on PATH, or a path) is missing.
fn require(program: &str, package: &str) {
    assert!(installed(program), "{program} is not installed (apt-get install {package}); the README's recipes use it");
}

/// Whether `program` (a name on PATH, or a path), which a recipe uses, is installed. Where it is not, the test is
/// skipped (the caller returns) with the reason and the Debian package to install; in CI (`CI` set), which installs
/// them all (.ci/run), it fails instead, so that no recipe goes untested there.
#[must_use]
fn have(program: &str, package: &str) -> bool {
    if installed(program) {
        return true;
    }
    crate::util::skip_outside_ci(&format!(
        "{program} is not installed (apt-get install {package}); the README's recipes use it"
    ));
    false
}

fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

#[test]
fn every_recipe_in_the_readme_is_tested() {
    let mut names: Vec<String> = recipes().into_iter().map(|(name, _)| name).collect();
    names.sort();
    // A new recipe needs a test here too.
    assert_eq!(
        names,
        [
            "case-on-exit-status",
            "ci-log-bounded",
            "ci-memory",
            "crontab-jsonl",
            "jq-summary",
            "many-jobs",
            "many-jobs-pinned",
            "many-jobs-ssh",
            "many-jobs-summary",
            "slurm-sbatch"
        ]
    );
}

#[test]
fn case_recipe_says_how_each_job_ended() {
    let recipe = recipe("case-on-exit-status");
    assert_eq!(recipe.language, "sh");
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.path().join("not-executable"), "").expect("a file");
    let testkit = testkit();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["true"], 0, "done"),
        (&["sh", "-c", "exit 3"], 3, "failed with exit code 3"),
        (&[&testkit, "forkbomb", "300"], 121, "stopped: more than 200 processes at once"),
        (&[&testkit, "alloc", "1500", "50"], 122, "stopped: more than 1 GiB of memory"),
        (&["./not-executable"], 126, "not run: ./not-executable cannot be executed"),
        (&["no-such-command-here"], 127, "not run: no-such-command-here not found"),
        (&["sh", "-c", "kill -TERM $$"], 143, "killed by signal 15"),
    ];
    for (job, code, said) in cases {
        let run = sandbox.run("bash", &recipe.code, job);
        assert_eq!((run.code, run.last_stderr_line()), (*code, *said), "job {job:?}; stderr:\n{}", run.stderr);
        assert!(run.took < Duration::from_secs(10), "job {job:?} took {:?}", run.took);
    }
}

#[test]
fn ci_recipe_fails_with_a_clear_message_on_memory() {
    if !have("jq", "jq") {
        return;
    }
    let recipe = recipe("ci-memory");
    let sandbox = Sandbox::new();
    sandbox.stub("make", &format!("exec {} alloc 1500 50", testkit()));
    let run = sandbox.run("bash", &recipe.code, &[]);
    assert_eq!(run.code, 122, "stderr:\n{}", run.stderr);
    let line = run.stdout.trim();
    let peak = line
        .strip_prefix("::error::make test needed more than 1 GiB of memory (peak seen: ")
        .and_then(|rest| rest.strip_suffix(" MiB); see pynish.json"))
        .and_then(|mib| mib.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("not the message the recipe promises: {line:?}"));
    // The proc backend samples (the peak is past 1 GiB); a cgroup's kernel stops the tree at 1 GiB.
    assert!((900..1600).contains(&peak), "peak {peak} MiB");
    assert!(sandbox.path().join("pynish.json").exists());
}

#[test]
fn ci_recipe_passes_other_outcomes_through_quietly() {
    if !have("jq", "jq") {
        return;
    }
    let recipe = recipe("ci-memory");
    for (status, body) in [(0, "exit 0"), (2, "echo 'test failed' >&2; exit 2")] {
        let sandbox = Sandbox::new();
        sandbox.stub("make", body);
        let run = sandbox.run("bash", &recipe.code, &[]);
        assert_eq!(run.code, status, "stderr:\n{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
}

#[test]
fn ci_log_recipe_keeps_the_start_and_the_end_of_a_flood() {
    if !have("jq", "jq") {
        return;
    }
    let recipe = recipe("ci-log-bounded");
    let sandbox = Sandbox::new();
    // 20 MB of output (1333334 lines of 15 bytes), then the last words on stderr.
    sandbox.stub("make", "echo 'make: start'; yes 'make: building' | head -n 1333334; echo 'make: done' >&2; exit 2");
    let run = sandbox.run("sh", &recipe.code, &[]);
    assert_eq!(run.code, 2, "the job's own status; stderr:\n{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "build.log: 10485760 bytes kept, 9514273 dropped", "{}", run.stdout);
    assert_eq!(lines.last(), Some(&"make: done"), "{}", run.stdout);
    let log = std::fs::read(sandbox.path().join("build.log")).expect("build.log");
    assert!(log.len() <= (10 << 20) + 100, "{} bytes", log.len());
    assert!(log.starts_with(b"make: start\n"));
}

#[test]
fn crontab_recipe_appends_one_json_line_per_run() {
    let recipe = recipe("crontab-jsonl");
    assert_eq!(recipe.language, "crontab");
    let entries: Vec<&str> =
        recipe.code.lines().filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#')).collect();
    assert_eq!(entries.len(), 1, "one crontab entry: {entries:?}");
    let command = cron_command(entries[0]);

    let mut sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.path().join(".cargo/bin")).expect(".cargo/bin");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pynish"), sandbox.path().join(".cargo/bin/pynish"))
        .expect("pynish where cargo install puts it");
    sandbox.script("bin/backup", "echo backing up; exit ${BACKUP_EXIT:-0}");
    sandbox.path = Some("/usr/bin:/bin".into()); // cron's
    for exit in ["0", "4"] {
        sandbox.env("BACKUP_EXIT", exit);
        // cron runs the command with /bin/sh
        let run = sandbox.run("sh", command, &[]);
        assert_eq!(run.code.to_string(), exit, "stderr:\n{}", run.stderr);
        assert_eq!(run.stdout, "backing up\n");
    }
    let log = std::fs::read_to_string(sandbox.path().join("backup-runs.jsonl")).expect("the log");
    let runs: Vec<serde_json::Value> =
        log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert_eq!(runs.len(), 2, "{log}");
    for (run, exit) in runs.iter().zip([0, 4]) {
        crate::util::check_invariants(exit, run);
        assert_eq!(run["label"], "backup");
        assert_eq!(run["verdict"], "completed");
        assert_eq!(run["command_exit_code"], exit);
        assert_eq!(run["limits"]["wall_time_s"], 7200.0);
    }
}

#[test]
fn jq_recipe_prints_a_table_and_counts_the_verdicts() {
    if !have("jq", "jq") {
        return;
    }
    let recipe = recipe("jq-summary");
    let sandbox = Sandbox::new();
    let run = sandbox.run("bash", &recipe.code, &[]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "sleep 0.1\tcompleted\t0",
            "sleep 0.5\twall_time\t124",
            "sleep 0.9\twall_time\t124",
            "1 completed",
            "2 wall_time"
        ],
        "stderr:\n{}",
        run.stderr
    );
}
