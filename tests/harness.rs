//! Helpers for the adversarial tests: pynish as a live child the test can signal, waits on conditions with a
//! deadline, and a census of every process a run started, found by a tag in its environment.
//!
//! Every run started here carries `PYNISH_TEST_TAG=<unique>` in its environment, inherited by the whole tree
//! (fork and exec keep it). After pynish has ended, `survivors(tag)` scans `/proc` for live processes with that
//! tag: a member of the tree that escaped is found even if no workload wrote its pid, and a pid the kernel reused
//! for an unrelated process is not mistaken for one (this machine's pid_max is small). `Cleanup` kills whatever
//! is left of a tag when a test ends, failed or not, so a failing test leaves nothing running behind it.
#![allow(dead_code)]

use serde_json::Value;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that marks every process of one run.
pub const TAG_VAR: &str = "PYNISH_TEST_TAG";

/// How long a test waits for something that should take well under a second on an idle machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A tag no other run (in this test process or another) uses.
pub fn new_tag(name: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// pynish as a plain `std::process::Command` (spawnable, signalable), tagged, with a clean environment for its
/// own settings, and with no descriptor but 0, 1 and 2 (what the test harness holds open stays out of the tree).
pub fn pynish_cmd(tag: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynish"));
    for var in ["PYNISH_GRACE", "PYNISH_SIGNAL", "PYNISH_BACKEND"] {
        cmd.env_remove(var);
    }
    cmd.env(TAG_VAR, tag);
    close_extra_fds(&mut cmd, &[]);
    crate::util::as_caller(&mut cmd);
    cmd
}

/// Marks every descriptor above 2 close-on-exec in the child, except `keep` (ascending), so the exec'd program
/// holds only 0, 1, 2 and `keep`. (Closing them outright would also close std's exec-error pipe.)
pub fn close_extra_fds(cmd: &mut Command, keep: &'static [i32]) {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range is a plain syscall, async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut from = 3u32;
            for &fd in keep {
                if fd as u32 > from {
                    libc::syscall(libc::SYS_close_range, from, fd as u32 - 1, CLOSE_RANGE_CLOEXEC);
                }
                from = from.max(fd as u32 + 1);
            }
            libc::syscall(libc::SYS_close_range, from, u32::MAX, CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
}

/// Polls `cond` until it holds or `timeout` passes; true if it held. A wait for a condition, not a sleep.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a file a workload publishes (atomically) and returns its content.
pub fn wait_file(path: &Path) -> String {
    let mut text = String::new();
    let found = wait_until(PATIENCE, || match std::fs::read_to_string(path) {
        Ok(t) => {
            text = t;
            true
        }
        Err(_) => false,
    });
    assert!(found, "{} did not appear within {PATIENCE:?}", path.display());
    text
}

/// The pids a workload published in a file (whitespace separated).
pub fn wait_pids(path: &Path) -> Vec<i32> {
    wait_file(path).split_whitespace().map(|p| p.parse().expect("a pid")).collect()
}

/// Waits for `child` to end, at most `timeout`; on timeout it is killed (with its tagged tree) and None returned.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Collects a child's stdout and stderr on threads (so a full pipe never blocks it) and waits at most `timeout`.
pub fn output_timeout(mut child: Child, timeout: Duration) -> Option<Output> {
    use std::io::Read;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(out) = out.as_mut() {
            let _ = out.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(err) = err.as_mut() {
            let _ = err.read_to_end(&mut buf);
        }
        buf
    });
    let status = wait_timeout(&mut child, timeout)?;
    Some(Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() })
}

/// pynish's exit status as a shell sees it: the code, or 128+N for a death by signal N.
pub fn shell_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// True if `pid` is alive (not a zombie) and belongs to the run tagged `tag`.
pub fn alive_in_run(pid: i32, tag: &str) -> bool {
    crate::util::pid_alive(pid) && has_tag(pid, tag)
}

fn has_tag(pid: i32, tag: &str) -> bool {
    let needle = format!("{TAG_VAR}={tag}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        .unwrap_or(false)
}

/// Every live process on the machine that belongs to the run tagged `tag`.
pub fn survivors(tag: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
            && pid as u32 != std::process::id()
            && alive_in_run(pid, tag)
        {
            found.push(pid);
        }
    }
    found
}

/// Asserts nothing of the run is alive: neither the pids the workload published nor anything else tagged.
pub fn assert_run_gone(tag: &str, published: &[i32]) {
    for &pid in published {
        assert!(!alive_in_run(pid, tag), "process {pid} of the tree outlived pynish");
    }
    let left = survivors(tag);
    assert!(left.is_empty(), "processes {left:?} of the tree outlived pynish");
}

/// Kills every process of a run when dropped, so a failed assertion leaves nothing behind.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let left = survivors(&self.0);
            if left.is_empty() {
                return;
            }
            for pid in left {
                // SAFETY: kill takes plain integers; the pid carries this run's tag.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A scratch directory and tag for one run, cleaned up (processes first) when dropped.
pub struct Scene {
    pub tag: String,
    pub dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Scene {
    pub fn new(name: &str) -> Scene {
        let tag = new_tag(name);
        Scene { dir: tempfile::tempdir().expect("tempdir"), _cleanup: Cleanup(tag.clone()), tag }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `path(name)` as a string, for workload arguments.
    pub fn file(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// pynish tagged for this scene, `--backend BACKEND --json --report DIR/report.json`.
    pub fn pynish(&self, backend: &str) -> Command {
        let mut cmd = pynish_cmd(&self.tag);
        cmd.args(["--backend", backend, "--json", "--report"]).arg(self.path("report.json"));
        cmd
    }

    /// Runs `cmd` to the end with captured output, failing the test if it takes longer than `timeout`.
    pub fn run(&self, cmd: &mut Command, timeout: Duration) -> (Output, Duration) {
        let start = Instant::now();
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let out = output_timeout(child, timeout).unwrap_or_else(|| panic!("pynish still running after {timeout:?}"));
        (out, start.elapsed())
    }

    /// The report: the `--json` line on stderr, which must be identical to the `--report` file.
    pub fn report(&self, out: &Output) -> Value {
        let from_stderr = crate::util::report(out);
        let text = std::fs::read_to_string(self.path("report.json")).expect("the --report file is written");
        let from_file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad report file ({e}): {text}"));
        assert_eq!(from_file, from_stderr, "the --report file and the --json line differ");
        from_stderr
    }
}

/// Sends `signal` to `pid`.
pub fn send(pid: u32, signal: i32) {
    // SAFETY: kill takes plain integers.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "kill({pid}, {signal})");
}

/// The state letter of `pid` from /proc (R, S, T, Z, ...), if it exists.
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.split_whitespace().next()?.chars().next()
}

/// Lines of a log a workload appends to (empty if it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// Runs `test` on every backend this machine offers, and fails (after trying them all) if any failed, naming them.
pub fn each_backend(test: impl Fn(&str)) {
    let mut failed = Vec::new();
    for backend in crate::util::backends() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(backend))).is_err() {
            failed.push(backend);
        }
    }
    assert!(failed.is_empty(), "failed on backend(s) {failed:?}: see the panic message(s) above");
}
