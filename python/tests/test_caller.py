"""Where pynisher's users run their calls (issue 18): a caller that dies or is told to stop mid-call, a nested
call ended by its outer limit, a working directory changed after import, a small /dev/shm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pynish_testutil as u

SCRIPT = u.HERE / "scripts" / "dying_caller.py"
CONTEXTS = ["fork", "spawn", "forkserver"]
#: pynish ends a tree within its grace period (0.5 s for calls); the margin is for a loaded machine.
GONE_WITHIN_S = 5.0

pytestmark = pytest.mark.pynish_only


def start_caller(piddir, scratch, context, mode, *extra):
    env = u.script_env()
    env["TMPDIR"] = str(scratch)  # the call's folder goes there, where the test can see it
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(piddir), context, mode, *map(str, extra)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not (piddir / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the limited function never got ready"
        time.sleep(0.01)
    return proc


def tree_of(proc):
    """The caller's descendants now: pynish, the function, its setsid grandchild, the forkserver's server."""
    return [p for p in u.descendants(proc.pid) if p != proc.pid]


def assert_gone(tree, piddir, context):
    announced = u.pids_in(piddir)
    assert len(announced) == 2 and set(announced) <= set(tree), (announced, tree)
    left = u.wait_gone(tree, GONE_WITHIN_S)
    if left:
        desc = {p: u.cmdline(p) for p in left}
        u.kill_all(left)
        pytest.fail(f"{context}: the call's processes outlived their caller by {GONE_WITHIN_S}s: {desc}")


def call_folders(scratch):
    return sorted(p.name for p in Path(scratch).glob("pynish-call*"))


def sweep_by_next_call(scratch):
    """Any caller's next call sweeps the folders whose owner is gone."""
    env = u.script_env()
    env["TMPDIR"] = str(scratch)
    code = "import pynish; print(pynish.limit(abs)(-1))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stderr


@pytest.fixture
def scratch(tmp_path):
    d = tmp_path / "scratch"
    d.mkdir()
    return d


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_the_call_ends_with_its_caller(piddir, scratch, context, sig):
    proc = start_caller(piddir, scratch, context, "default")
    tree = tree_of(proc)
    if context == "forkserver":
        assert any("pynish._call.forkserver" in u.cmdline(p) for p in tree), "no forkserver server in the tree"
    os.kill(proc.pid, sig)
    proc.communicate(timeout=30)
    # Dies of the signal, as it would have without pynish.
    assert proc.returncode == -sig, (proc.returncode, proc.stderr)
    assert_gone(tree, piddir, context)
    if sig != signal.SIGKILL:
        assert call_folders(scratch) == [], "a catchable signal left the call's folder"
    else:
        sweep_by_next_call(scratch)
        assert call_folders(scratch) == [], "the next call did not sweep the dead caller's folder"


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_child_the_caller_forked_mid_call_keeps_neither_the_call_nor_its_folder(piddir, scratch, context):
    # A worker the caller forks while a call runs (os.fork, multiprocessing's fork) outlives the caller: it must
    # hold neither the lifeline (the call would live on) nor the folder's lock (it would never be swept).
    proc = start_caller(piddir, scratch, context, "forks")
    deadline = time.monotonic() + 30
    while not list(piddir.glob("forked.*")):
        assert time.monotonic() < deadline, "the caller never forked"
        time.sleep(0.01)
    forked = int(next(piddir.glob("forked.*")).suffix[1:])
    try:
        tree = [p for p in tree_of(proc) if p != forked]
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert_gone(tree, piddir, context)
        assert u.alive(forked)
        sweep_by_next_call(scratch)
        assert call_folders(scratch) == [], "a child forked by the dead caller kept its call's folder from the sweep"
    finally:
        u.kill_all([forked])
        u.wait_gone([forked])


@pytest.mark.parametrize("context", CONTEXTS)
def test_the_callers_own_handler_runs_once_the_call_has_ended(piddir, scratch, context):
    proc = start_caller(piddir, scratch, context, "handler")
    tree = tree_of(proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, (out, err)
    signum, alive = (piddir / "handler").read_text().split(" ", 1)
    assert int(signum) == signal.SIGTERM
    assert alive == "[]", f"the caller's handler ran while the call's processes {alive} were alive"
    assert_gone(tree, piddir, context)
    assert call_folders(scratch) == []


def memory_cgroup_v1():
    """A fresh memory cgroup (v1) with a 300 MiB limit, or a skip with the reason."""
    try:
        current = next(
            line.split(":", 2)[2].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.split(":")[1] == "memory"
        )
    except (OSError, StopIteration, IndexError):
        pytest.skip("no cgroup v1 memory hierarchy here")
    root = Path("/sys/fs/cgroup/memory") / current.lstrip("/")
    group = root / f"pynish-test-oom-{os.getpid()}-{time.monotonic_ns()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(300 * 2**20))
    except OSError as e:
        pytest.skip(f"cannot make a memory cgroup under {root}: {e}")
    return group


@pytest.mark.parametrize("context", CONTEXTS)
def test_the_call_ends_with_a_caller_the_oom_killer_took(piddir, scratch, context, heavy_memory):
    group = memory_cgroup_v1()
    try:
        proc = start_caller(piddir, scratch, context, "oom", group)
        tree = tree_of(proc)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
        # The caller was the OOM killer's choice (it may take a second process while the caller's memory is freed).
        control = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
        assert int(control["oom_kill"]) >= 1, control
        assert_gone(tree, piddir, context)
    finally:
        for p in (group / "cgroup.procs").read_text().split():
            u.kill_all([int(p)])
        deadline = time.monotonic() + 10
        while True:
            try:
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def nested(piddir):
    """The outer function: waits on an inner limited call until the outer limit ends it."""
    import pynish

    inner = pynish.limit(u.sleep_for, wall_time=60)
    return inner(60, piddir)


@pytest.mark.parametrize("context", CONTEXTS)
def test_an_outer_limit_leaves_no_inner_folder(piddir, scratch, monkeypatch, context):
    import pynish

    monkeypatch.setenv("TMPDIR", str(scratch))
    with pytest.raises(pynish.WallTimeoutException):
        pynish.limit(nested, wall_time=2, context=context)(piddir)
    assert u.pids_in(piddir), "the inner call never ran"
    assert call_folders(scratch) == []


CHDIR_SCRIPT = """
import os, sys
import pynish
import helper_module  # found through sys.path's "" (python -c, Jupyter): the working directory at start
os.chdir(sys.argv[1])
print(pynish.limit(helper_module.triple, context=sys.argv[2])(3), os.path.basename(pynish.limit(os.getcwd)()))
"""


@pytest.mark.parametrize("context", CONTEXTS)
def test_the_working_directory_of_the_first_import_is_kept(tmp_path, context):
    (tmp_path / "helper_module.py").write_text("def triple(x):\n    return 3 * x\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", CHDIR_SCRIPT, str(elsewhere), context],
        cwd=tmp_path,
        env=u.script_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The caller's modules are imported from where it started; the function runs where the caller is now.
    assert out.stdout.split() == ["9", "elsewhere"], out.stderr


SMALL_SHM_SCRIPT = """
import os, sys
import pynish

def big(n):
    return bytes(n)

if __name__ == "__main__":
    results = []
    for context in ("fork", "spawn", "forkserver"):
        got = pynish.limit(big, context=context, wall_time=60)(100 * 2**20)
        results.append(len(got))
        results.append(pynish.limit(len, context=context, wall_time=60)(bytes(100 * 2**20)))
    print(*results)
"""


def test_results_and_arguments_larger_than_dev_shm_and_tmpdir(tmp_path, heavy_memory):
    """In a private mount namespace, /dev/shm and $TMPDIR are 64 MiB tmpfs (Docker's default /dev/shm): a 100 MiB
    result and a 100 MiB argument still travel, in every context."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root and unshare(1) for a private mount namespace with a small /dev/shm")
    small_tmp = tmp_path / "tmp"
    small_tmp.mkdir()
    script = tmp_path / "small_shm.py"
    script.write_text(SMALL_SHM_SCRIPT)
    shell = (
        'mount --make-rprivate / && mount -t tmpfs -o size=64m tmpfs /dev/shm && mount -t tmpfs -o size=64m tmpfs "$1"'
        ' && exec "$2" "$3"'
    )
    for tmpdir in (None, str(small_tmp)):
        env = u.script_env()
        env.pop("TMPDIR", None)
        if tmpdir:
            env["TMPDIR"] = tmpdir
        out = subprocess.run(
            ["unshare", "-m", "sh", "-c", shell, "sh", str(small_tmp), sys.executable, str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [str(100 * 2**20)] * 6, out.stderr


def big_return(n):
    return b"x" * n  # every page touched (bytes(n) would be untouched zero pages)


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_large_result_is_not_charged_to_the_memory_limit(context, cgroup_backend, heavy_memory):
    """A 300 MiB result under a 500 MiB limit held by a cgroup: the result's travel costs the function nothing
    (through a tmpfs file it was charged twice: 602 MB)."""
    import pynish

    limited = pynish.limit(big_return, memory=(500, "MB"), context=context, wall_time=120)
    got = limited(300 * 2**20)
    assert len(got) == 300 * 2**20
    peak = limited.usage.peak_memory_bytes
    assert peak < 450 * 2**20, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_caller_holding_more_than_a_thousand_descriptors(context):
    """A server or a data loader holds many files: the call's pipes and pidfd then come past 1024, which
    select.select refused ("filedescriptor out of range in select()"), whatever the context."""
    import resource

    from pynish import WallTimeoutException, limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted + 100:
        pytest.skip(f"RLIMIT_NOFILE's hard limit ({hard}) leaves no room for {wanted} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted + 100), hard))
    held = []
    try:
        while not held or held[-1] < wanted:
            held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        assert limit(u.identity, context=context, wall_time=30)(7) == 7
        with pytest.raises(WallTimeoutException):
            limit(u.sleep_for, context=context, wall_time=1)(30)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
