//! `--adopt PID --adopt-fd FD`: a parent forks a child held on a pipe, then execs pynish, which places the child
//! (process group, cgroups, rlimits), releases it, and supervises it like a command it started.
//!
//! The parent is bash: `exec 3> >(...)` forks the held child with the pipe's read end as its stdin and keeps the
//! write end as fd 3; `exec pynish --adopt $! --adopt-fd 3` then makes pynish that child's parent.

use crate::harness::*;
use crate::util::*;
use std::process::Command;
use std::time::Duration;

/// The held child: writes its pid to DIR/pid, waits for the release byte, writes its process group and memory
/// cgroup to DIR/placed (what pynish did before releasing it), then execs the workload ($WORKLOAD, a shell command line). Without the byte it
/// exits unrun.
const HELD: &str = r#"
dir=$1
exec 3> >(
    echo $BASHPID > "$dir/pid"
    IFS= read -r -n1 go || exit 99
    [ "$go" = G ] || exit 99
    read -r _ _ _ _ pgid _ < /proc/$BASHPID/stat
    echo "$BASHPID $pgid $(grep -m1 ':memory:' /proc/$BASHPID/cgroup)" > "$dir/placed"
    eval "exec $WORKLOAD"
)
"#;

/// bash that forks a held child running `workload`, then execs pynish with `flags` adopting it (`fd`: the
/// descriptor pynish is told to release it on; the pipe is 3).
fn adopting(scene: &Scene, fd: i32, flags: &str, workload: &str) -> Command {
    let script = format!("{HELD}\nexec \"$PYNISH\" --adopt $! --adopt-fd {fd} {flags} -- held-workload");
    let mut cmd = Command::new("bash");
    cmd.env(TAG_VAR, &scene.tag).env("PYNISH", env!("CARGO_BIN_EXE_pynish")).env_remove("PYNISH_BACKEND");
    cmd.env("TESTKIT", testkit()).env("WORKLOAD", workload);
    cmd.args(["-c", &script, "bash"]).arg(scene.dir.path());
    close_extra_fds(&mut cmd, &[]);
    cmd
}

#[test]
fn adopted_child_is_placed_before_release_and_its_limit_holds() {
    each_backend(|backend| {
        let scene = Scene::new("adopt-memory");
        let flags = format!("--backend {backend} --json --memory 50MB --grace 200ms");
        let (out, _) = scene.run(&mut adopting(&scene, 3, &flags, "\"$TESTKIT\" alloc 400 10 5"), PATIENCE);
        let r = report(&out);
        assert_eq!(r["verdict"], "memory", "{backend}: {r}");
        assert_eq!(code(&out), 122);
        let pid = read_pid(&scene.path("pid"));
        assert_eq!(r["pid"], pid, "the report names the adopted process");
        let placed = std::fs::read_to_string(scene.path("placed")).expect("the held child was released");
        let fields: Vec<&str> = placed.split_whitespace().collect();
        assert_eq!(fields[1], pid.to_string(), "{backend}: released before it led its own process group: {placed}");
        if backend == "cgroup1" {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            let own = own.lines().find(|l| l.contains(":memory:")).unwrap().to_owned();
            assert_ne!(fields[2], own, "released before it was moved into the run's memory cgroup");
        }
        assert!(!pid_alive(pid));
    });
}

#[test]
fn adopted_child_gets_rlimits_and_wall_time() {
    let scene = Scene::new("adopt-wall");
    let dir = scene.dir.path().to_string_lossy().into_owned();
    let workload = format!("bash -c 'ulimit -v > \"$0/ulimit\"; exec sleep 30' {dir}");
    let flags = "--backend proc --json --wall-time 1s --memory 300MiB --memory-kind virtual --grace 200ms";
    let mut cmd = adopting(&scene, 3, flags, &workload);
    let (out, took) = scene.run(&mut cmd, PATIENCE);
    let r = report(&out);
    assert_eq!(r["verdict"], "wall_time", "{r}");
    assert_eq!(code(&out), 124);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let ulimit = std::fs::read_to_string(scene.path("ulimit")).expect("the workload ran");
    assert_eq!(ulimit.trim(), (300 * 1024).to_string(), "RLIMIT_AS set with prlimit before release");
    assert_run_gone(&scene.tag, &[read_pid(&scene.path("pid"))]);
}

/// What the Python package relies on: an adopted child gets the per-process rlimits and the CPUs before it runs
/// anything of its own (prlimit and sched_setaffinity on the held child, as `spawn` sets them before exec).
#[test]
fn adopted_child_gets_open_files_core_size_and_cpus_before_release() {
    let allowed = pynish::limits::allowed_cpus().unwrap();
    let cpu = *allowed.last().expect("a CPU");
    let scene = Scene::new("adopt-rlimits");
    let dir = scene.dir.path().to_string_lossy().into_owned();
    let probe = "ulimit -n; ulimit -c; grep Cpus_allowed_list /proc/self/status";
    let workload = format!("bash -c '({probe}) > \"$0/seen\"' {dir}");
    let flags = format!("--backend proc --json --open-files 16 --core-size 0 --cpus {cpu}");
    let (out, _) = scene.run(&mut adopting(&scene, 3, &flags, &workload), PATIENCE);
    let r = report(&out);
    assert_eq!(r["verdict"], "completed", "{r}");
    let seen = std::fs::read_to_string(scene.path("seen")).expect("the workload ran");
    assert_eq!(seen, format!("16\n0\nCpus_allowed_list:\t{cpu}\n"), "{r}");
    assert_eq!(r["enforcement"]["cpus"], "affinity");
}

#[test]
fn a_process_that_is_not_a_child_is_refused() {
    let out = pynish().args(["--adopt", "1", "--adopt-fd", "1", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--adopt 1: not a child of this pynish"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = pynish().args(["--adopt", "1", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125, "--adopt needs --adopt-fd");
}

#[test]
fn a_refused_adoption_never_runs_the_held_child() {
    let scene = Scene::new("adopt-refused");
    // fd 0 is /dev/null, open for reading only: refused before anything is set up.
    let marker = scene.file("ran");
    let mut refused = adopting(&scene, 0, "--wall-time 5s", &format!("touch {marker}"));
    let (out, _) = scene.run(&mut refused, PATIENCE);
    assert_eq!(code(&out), 125);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--adopt-fd 0 is open for reading only"));
    let pid = read_pid(&scene.path("pid"));
    assert!(wait_until(PATIENCE, || !pid_alive(pid)), "the held child outlived the refusal");
    assert!(!scene.path("ran").exists(), "the held child ran although pynish refused to adopt it");
    assert!(!scene.path("placed").exists());
}

/// The Python package loads this with ctypes for its one-copy fork (`python/native/pynish_fork.c`).
#[test]
fn fork_helper_writes_the_shared_object_the_python_package_loads() {
    let out = pynish().arg("--fork-helper").output().unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let helper = &out.stdout;
    assert!(helper.starts_with(b"\x7fELF"), "not an ELF object");
    assert_eq!(u16::from_le_bytes([helper[16], helper[17]]), 3, "not a shared object (ET_DYN)");
    assert!(helper.windows(b"pynish_fork".len()).any(|w| w == b"pynish_fork"), "no pynish_fork symbol");
    assert!(out.stderr.is_empty());
}

#[test]
fn fork_helper_with_anything_else_is_refused_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let out = pynish().args(["--fork-helper", "--", "touch"]).arg(&marker).output().unwrap();
    assert_eq!(code(&out), 125);
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert!(!marker.exists(), "the command ran");
}
