"""Issue 11's acceptance cases: limits that hold for the whole tree, the limit named truthfully, nothing left behind,
big return values. Where pynisher 1.0.10 gets a case wrong, the test is marked pynisher_weakness."""

from __future__ import annotations

import resource
import sys
import time
import zlib

import pytest

import pynish as pynisher
import pynish_testutil as u
from pynish import limit

MiB = 2**20


def report(lf):
    """pynish's report of the last call (None against pynisher, which has none)."""
    return getattr(lf, "last_run", None)


@pytest.mark.pynisher_weakness  # pynisher: per-process RLIMIT_AS never sees the sum; runs until its wall time
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_together_over_the_memory_limit(context, piddir, heavy_memory, cgroup_backend):
    lf = limit(u.workers_holding, memory=(200, "MB"), wall_time=10, context=context)
    started = time.monotonic()
    with pytest.raises(pynisher.MemoryLimitException):
        lf(4, 100 * MiB, str(piddir))
    took = time.monotonic() - started
    pids = u.pids_in(piddir)
    assert len(pids) >= 3, f"function and at least two workers should have started: {pids}"
    assert [p for p in pids if u.alive(p)] == [], "a worker survived the memory limit"
    assert took < 8, took
    rep = report(lf)
    assert rep is not None, "no report of the call (limit(...).last_run)"
    assert rep.verdict == "memory"
    assert rep.backend == cgroup_backend
    assert rep.enforcement.memory == cgroup_backend
    assert lf.usage.peak_memory_bytes >= 150 * MiB
    print(f"memory: {context} took {took:.2f}s, peak {lf.usage.peak_memory_bytes / MiB:.0f} MiB, backend {rep.backend}")


@pytest.mark.pynish_only
def test_pages_a_fork_pool_shares_count_once(heavy_memory):
    # Issue 19: 300 MB, then a fork Pool(3) whose workers share them copy-on-write, under 800 MB. With
    # terminate_child_processes=False pynish runs on proc, which counted the shared pages once per process
    # (killed at "1,252 MB"); their proportional set sizes count them once.
    lf = limit(u.fill_then_pool, memory=(800, "MB"), wall_time=60, terminate_child_processes=False)
    assert lf(300 * 10**6, 3) == 3
    rep = report(lf)
    assert rep.backend == "proc"
    assert 300e6 <= lf.usage.peak_memory_bytes < 800e6, lf.usage


@pytest.mark.pynisher_weakness  # pynisher: the exception comes after 6-8 s
@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_setsid_grandchild_wall_time(context, piddir):
    # The forkserver's first call starts its server (a fresh interpreter), which is not the limit's to pay for:
    # a first call warms it up, so that the bound below measures the limit and the tree's end only.
    limit(u.identity, wall_time=5, context=context)(1)
    started = time.monotonic()
    with pytest.raises(pynisher.WallTimeoutException):
        limit(u.setsid_grandchild, wall_time=1, context=context)(str(piddir))
    took = time.monotonic() - started
    pids = u.pids_in(piddir)
    assert len(pids) == 2, pids
    # checked at once: pynish reports only after the whole tree is gone
    assert [p for p in pids if u.alive(p)] == [], "the setsid grandchild (or the function) survived"
    assert took < 1.5, took
    print(f"setsid wall_time=1 ({context}): WallTimeoutException after {took:.3f}s")


def test_cpu_time_two_threads():
    lf = limit(u.spin, cpu_time=1, wall_time=30)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with pytest.raises(pynisher.CpuTimeoutException):
        lf(60, 2)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Everything the call started and reaped, pynish's own few ms included: the kernel's count, not pynish's.
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"cpu_time=1, 2 threads: kernel-counted CPU of the call's processes {used:.3f}s")
    assert used <= 1.1 + 0.1, used
    rep = report(lf)
    if rep is not None:
        assert rep.verdict == "cpu_time"
        assert 0.9 <= lf.usage.cpu_time_s <= 1.1, lf.usage
    elif not u.IS_PYNISHER:
        pytest.fail("no report of the call (limit(...).last_run)")


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_500_mb_return_value_arrives_intact(context, tmp_path, heavy_memory):
    n = 500 * MiB
    crc_file = tmp_path / "crc"
    started = time.monotonic()
    data = limit(u.big_bytes, wall_time=120, context=context)(n, str(crc_file))
    took = time.monotonic() - started
    assert type(data) is bytes
    assert len(data) == n
    assert zlib.crc32(data) == int(crc_file.read_text())
    del data
    print(f"500 MB return ({context}): {took:.2f}s")


@pytest.mark.pynisher_weakness  # pynisher: the caller peaks at 1017 MiB (pipe buffer + unpickled copy)
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_500_mb_return_value_costs_the_caller_one_copy(context, tmp_path, heavy_memory):
    """No needless copy through a pipe: the caller's peak memory is about the value itself, not twice it."""
    proc = u.run_script(u.HERE / "scripts" / "big_return.py", context, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    peak_mib = int(proc.stdout.split()[-1])
    print(f"500 MiB return ({context}): caller peak {peak_mib} MiB")
    assert peak_mib < 500 + 200, peak_mib


@pytest.mark.pynish_only
def test_the_limit_named_is_the_one_hit(piddir):
    """All three limits set; only the wall time is reached (a sleeper uses neither CPU nor memory)."""
    lf = limit(u.sleep_for, wall_time=1, cpu_time=30, memory=(500, "MB"))
    with pytest.raises(pynisher.WallTimeoutException):
        lf(60, str(piddir))
    assert report(lf).verdict == "wall_time"
    lf = limit(u.spin, wall_time=30, cpu_time=1, memory=(500, "MB"))
    with pytest.raises(pynisher.CpuTimeoutException):
        lf(60)
    assert report(lf).verdict == "cpu_time"


@pytest.mark.pynish_only
def test_usage_of_the_last_call():
    lf = limit(u.allocate, wall_time=30)
    assert lf.usage is None
    assert lf(100 * MiB, None, 0.2) == 100 * MiB
    usage = lf.usage
    assert usage.peak_memory_bytes >= 100 * MiB, usage
    assert usage.max_processes >= 1
    assert usage.wall_time_s >= 0.2
    assert usage.cpu_user_s >= 0 and usage.cpu_system_s >= 0
    assert abs(usage.cpu_time_s - (usage.cpu_user_s + usage.cpu_system_s)) < 0.01
    assert report(lf).verdict == "completed"
    assert report(lf).backend in ("proc", "cgroup1", "cgroup2")
    # a second call replaces it
    lf(1 * MiB)
    assert lf.usage.peak_memory_bytes < usage.peak_memory_bytes


@pytest.mark.pynish_only
def test_usage_after_a_limit_names_its_enforcement(piddir):
    lf = limit(u.sleep_for, wall_time=1)
    with pytest.raises(pynisher.WallTimeoutException):
        lf(60, str(piddir))
    assert report(lf).enforcement.wall_time == "timer"
    assert report(lf).limits.wall_time_s == 1


def test_python_version_supported():
    assert sys.version_info >= (3, 9)
