"""The CPU knobs per call (issue 26): ``cpus`` (a CPU list, pynish's ``--cpus``) and ``cpu_quota`` (cores,
``--cpu-quota``) on ``pynish.limit``, ``restricted``, ``pynish.Executor`` and ``pynish.run``. ``cpus`` pins the
function's process and every process it starts; ``cpu_quota`` throttles the whole tree together; bad values, and a
quota pynish cannot hold here, are a ``ValueError`` at ``limit()`` time."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time

import pytest

import pynish

pytestmark = pytest.mark.pynish_only

CONTEXTS = ["fork", "forkserver", "spawn"]


def affinity_here_and_in_a_grandchild() -> tuple:
    """The CPUs the function's process may run on, and those a process it starts may."""
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    grandchild = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return sorted(os.sched_getaffinity(0)), json.loads(grandchild.stdout)


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


@pytest.fixture
def two_cpus():
    """CPU 1 to pin to, and another to leave; skips (with the reason) where this process has fewer than two."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or 1 not in allowed:
        pytest.skip(f"needs CPUs 0 and 1 allowed to this process, which may run on {allowed} only")
    return allowed


@pytest.fixture
def cpu_controller():
    """Skips (with pynish check's reason) where pynish has no CPU controller to hold a quota with; else the
    measuring tests take turns across xdist workers, so that they do not take each other's CPU time."""
    binary = os.environ.get("PYNISH_BIN") or "pynish"
    out = subprocess.run([binary, "check", "--json"], capture_output=True, text=True, timeout=30)
    info = json.loads(out.stdout or out.stderr)
    quota = next(h for h in info["harness_limits"] if h["name"] == "cpu_quota")
    if not quota["enforced_by"]:
        pytest.skip(f"no CPU controller for --cpu-quota here: {quota['how']}")
    with open("/tmp/pynish-pytest-cpu-quota.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield quota["enforced_by"]
        fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("cpus", [[1], "1", (1,), range(1, 2)])
def test_cpus_pins_the_function_and_its_grandchild(context, cpus, two_cpus):
    limited = pynish.limit(affinity_here_and_in_a_grandchild, context=context, wall_time=60, cpus=cpus)
    assert limited() == ([1], [1])
    assert limited.cpus == (1,)
    assert limited.last_run.limits.cpus == "1"
    assert limited.last_run.enforcement.cpus in ("affinity", "cpuset")


def test_a_cpu_list_text_names_its_ranges(two_cpus):
    limited = pynish.limit(affinity_here_and_in_a_grandchild, wall_time=60, cpus=" 1 - 1 , 0 ")
    assert limited.cpus == (0, 1)
    assert limited() == ([0, 1], [0, 1])
    assert limited.last_run.limits.cpus == "0-1"


def test_restricted_and_the_executor_take_cpus(two_cpus):
    @pynish.restricted(wall_time=60, context="spawn", cpus=[1])
    def decorated() -> tuple:
        return affinity_here_and_in_a_grandchild()

    assert decorated() == ([1], [1])
    with pynish.Executor(2, wall_time=60, cpus={1}) as executor:
        every = executor.submit(affinity_here_and_in_a_grandchild)
        own = executor.submit(pynish.limit(affinity_here_and_in_a_grandchild, wall_time=60, cpus=[0]))
        assert every.result() == ([1], [1])
        assert own.result() == ([0], [0]), "the task's own limit object decides"


def test_pynish_run_takes_cpus(tmp_path, two_cpus):
    out = tmp_path / "out"
    with open(out, "w") as f:
        report = pynish.run(["sh", "-c", "grep Cpus_allowed_list /proc/self/status"], cpus=[1], stdout=f)
    assert report.verdict == "completed"
    assert out.read_text().split() == ["Cpus_allowed_list:", "1"]
    assert report.limits.cpus == "1"


@pytest.mark.parametrize("context", CONTEXTS)
def test_cpu_quota_holds_a_spinner_to_half_a_cpu(context, cpu_controller):
    limited = pynish.limit(spin, context=context, wall_time=3, cpu_quota=0.5)
    with pytest.raises(pynish.WallTimeoutException):
        limited(60)
    report = limited.last_run
    print(f"cpu_quota=0.5 for 3 s ({context}): {report.usage.cpu_time_s:.3f} s CPU")
    # Half of the 3 s, give or take what a busy machine or the first and last period take: 1.1 to 1.9 s.
    assert 1.1 <= report.usage.cpu_time_s <= 1.9, report.usage
    assert (report.limits.cpu_quota, report.enforcement.cpu_quota) == (0.5, cpu_controller)


def test_the_executor_holds_each_task_to_its_quota(cpu_controller):
    with pynish.Executor(2, wall_time=3, cpu_quota=0.5) as executor:
        futures = [executor.submit(spin, 60) for _ in range(2)]
        for future in futures:
            with pytest.raises(pynish.WallTimeoutException):
                future.result()
    used = [f.report.usage.cpu_time_s for f in futures]
    print(f"Executor cpu_quota=0.5, two tasks for 3 s: {used} s CPU")
    assert all(1.1 <= cpu <= 1.9 for cpu in used), used


def test_pynish_run_takes_cpu_quota(cpu_controller):
    report = pynish.run([sys.executable, "-c", "while True: pass"], wall_time=3, cpu_quota=0.5)
    print(f"pynish.run cpu_quota=0.5 for 3 s: {report.usage.cpu_time_s:.3f} s CPU")
    assert report.verdict == "wall_time"
    assert 1.1 <= report.usage.cpu_time_s <= 1.9, report.usage


def test_a_quota_pynish_cannot_hold_is_refused_at_limit_time(monkeypatch):
    # On the proc backend pynish refuses --cpu-quota (exit 125): never a call run unthrottled.
    monkeypatch.setenv("PYNISH_BACKEND", "proc")
    with pytest.raises(ValueError, match="cpu_quota.*CPU controller"):
        pynish.limit(spin, cpu_quota=0.5)
    with pytest.raises(ValueError, match="cpu_quota.*CPU controller"):
        pynish.Executor(1, cpu_quota=0.5)
    with pytest.raises(ValueError, match="refused"):
        pynish.run(["true"], cpu_quota=0.5)


def test_a_quota_with_terminate_child_processes_false_is_refused():
    with pytest.raises(ValueError, match="terminate_child_processes=False"):
        pynish.limit(spin, cpu_quota=0.5, terminate_child_processes=False)


@pytest.mark.parametrize(
    "bad",
    [
        dict(cpus=""),
        dict(cpus="1-0"),
        dict(cpus="0,a"),
        dict(cpus="-1"),
        dict(cpus=[]),
        dict(cpus=[-1]),
        dict(cpus=[True]),
        dict(cpus=[0.5]),
        dict(cpus=1),
        dict(cpus=b"0"),
        dict(cpus=[4096]),
        dict(cpu_quota=0),
        dict(cpu_quota=-0.5),
        dict(cpu_quota=float("nan")),
        dict(cpu_quota=float("inf")),
        dict(cpu_quota=True),
        dict(cpu_quota="0.5"),
    ],
)
def test_bad_cpu_knobs_are_refused_at_limit_time(bad):
    with pytest.raises(ValueError):
        pynish.limit(spin, **bad)
    with pytest.raises(ValueError):
        pynish.Executor(1, **bad)
    with pytest.raises(ValueError):
        pynish.run(["true"], **bad)


def test_a_cpu_this_process_may_not_use_is_refused_at_limit_time():
    outside = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ValueError, match=f"CPU {outside} is not online or not allowed"):
        pynish.limit(spin, cpus=[0, outside])


def test_supports_says_whether_a_quota_would_be_held(monkeypatch):
    binary = os.environ.get("PYNISH_BIN") or "pynish"
    out = subprocess.run([binary, "check", "--json"], capture_output=True, text=True, timeout=30)
    info = json.loads(out.stdout or out.stderr)
    quota = next(h for h in info["harness_limits"] if h["name"] == "cpu_quota")
    assert pynish.supports("cpus") is True
    assert pynish.supports("CPU_QUOTA") is bool(quota["enforced_by"]), quota
    # Where a call would refuse the quota, supports says so too.
    monkeypatch.setenv("PYNISH_BACKEND", "proc")
    assert pynish.supports("cpu_quota") is False


def test_an_executor_pinned_to_cpus_runs_as_many_tasks_at_once_as_it_has_cpus(two_cpus):
    with pynish.Executor(cpus=[1]) as pinned:
        assert pinned.max_workers == 1
    with pynish.Executor(cpus=two_cpus[:2]) as two:
        assert two.max_workers == 2
    with pynish.Executor(3, cpus="1") as asked:
        assert asked.max_workers == 3
    with pynish.Executor() as unpinned:
        assert unpinned.max_workers == len(os.sched_getaffinity(0))
