"""pynish.run: a command under limits, returning the JSON schema 1 report as a dataclass."""

from __future__ import annotations

import sys
import time

import pytest

import pynish_testutil as u

pytestmark = pytest.mark.pynish_only

PY = sys.executable


def run(*args, **kwargs):
    import pynish

    return pynish.run(*args, **kwargs)


def test_completed_with_its_exit_code():
    r = run(["sh", "-c", "exit 3"], wall_time=10)
    assert (r.verdict, r.exit_code, r.command_exit_code, r.signal) == ("completed", 3, 3, None)
    assert r.schema == 2
    assert r.command == ("sh", "-c", "exit 3")
    assert r.backend in ("proc", "cgroup1", "cgroup2")


def test_usage_has_the_trees_io(tmp_path):
    out = tmp_path / "big"
    r = run(["dd", "if=/dev/zero", f"of={out}", "bs=1M", "count=4", "conv=fsync", "status=none"], wall_time=60)
    assert r.verdict == "completed"
    assert isinstance(r.usage.io_read_bytes, int)
    # Written bytes count only where they reach storage: not on a tmpfs (the mount holding tmp_path).
    mounts = [line.split()[1:3] for line in open("/proc/mounts")]
    fstype = max((m for m in mounts if str(tmp_path).startswith(m[0])), key=lambda m: len(m[0]))[1]
    if fstype not in ("tmpfs", "ramfs"):
        assert r.usage.io_write_bytes >= 4 << 20, r.usage


def test_wall_time_verdict(piddir):
    started = time.monotonic()
    r = run([PY, "-c", "import sys, time, pynish_testutil as u; u.announce(sys.argv[1]); time.sleep(60)", str(piddir)],
            wall_time=1, env=u.script_env())  # fmt: skip
    assert time.monotonic() - started < 1 + 2 + 0.5
    assert (r.verdict, r.exit_code) == ("wall_time", 124)
    assert r.enforcement.wall_time == "timer"
    assert 1.0 <= r.usage.wall_time_s < 3
    assert r.escalation.first_signal == "SIGTERM"
    assert u.wait_gone(u.pids_in(piddir), timeout=0) == []


def test_cpu_time_verdict():
    r = run([PY, "-c", "while True: pass"], cpu_time="1s", wall_time=30)
    assert (r.verdict, r.exit_code) == ("cpu_time", 123)
    assert 0.9 <= r.usage.cpu_time_s <= 1.1


def test_memory_verdict(cgroup_backend):
    r = run([PY, "-c", "b = bytearray(400 * 2**20); [b.__setitem__(i, 1) for i in range(0, len(b), 4096)]"],
            memory="100MB", wall_time=30)  # fmt: skip
    assert (r.verdict, r.exit_code) == ("memory", 122)
    assert r.limits.memory_bytes == 100_000_000  # the CLI's units: MB is 10**6
    assert r.enforcement.memory == cgroup_backend


def test_processes_verdict():
    r = run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait"], processes=3, wall_time=30)
    assert (r.verdict, r.exit_code) == ("processes", 121)


@pytest.mark.parametrize(
    "limits,expected",
    [
        ({"memory": "500MB", "wall_time": "1.5h"}, {"memory_bytes": 500_000_000, "wall_time_s": 5400.0}),
        ({"memory": "500MiB", "cpu_time": "250ms"}, {"memory_bytes": 500 * 2**20, "cpu_time_s": 0.25}),
        ({"memory": 10**9, "wall_time": 2.5, "cpu_time": 7}, {"memory_bytes": 10**9, "wall_time_s": 2.5, "cpu_time_s": 7.0}),
        ({"wall_time": "1h 30m", "grace": "500ms"}, {"wall_time_s": 5400.0, "grace_s": 0.5}),
        ({"processes": 50}, {"processes": 50}),
    ],
)
def test_limits_take_numbers_and_the_clis_strings(limits, expected):
    r = run(["true"], **limits)
    assert r.verdict == "completed" and r.exit_code == 0
    for key, value in expected.items():
        assert getattr(r.limits, key) == value, (key, r.limits)


def test_no_limits_at_all():
    r = run(["true"])
    assert r.verdict == "completed"
    assert r.limits.wall_time_s is None and r.limits.memory_bytes is None


def test_missing_command_is_a_spawn_error():
    r = run(["/nonexistent/command-for-pynish-test"])
    assert r.verdict == "spawn_error"
    assert r.exit_code == 127
    assert r.error


@pytest.mark.parametrize(
    "kwargs",
    [{"memory": "5 parsecs"}, {"wall_time": "soon"}, {"wall_time": 0}, {"memory": -1}, {"processes": 0}],
)
def test_bad_limits_raise_and_run_nothing(kwargs, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises((ValueError, TypeError)):
        run(["touch", str(marker)], **kwargs)
    assert not marker.exists()


def test_bad_argv():
    with pytest.raises(ValueError):
        run([])
    with pytest.raises(ValueError):
        run("echo hi")


def test_setsid_grandchild_is_gone_after_the_wall_time(piddir):
    code = (
        "import subprocess, sys, time, pynish_testutil as u; u.announce(sys.argv[1]); "
        "subprocess.Popen([sys.executable, '-c', 'import sys, time, pynish_testutil as u; u.announce(sys.argv[1]); "
        "time.sleep(60)', sys.argv[1]], start_new_session=True); u.wait_for_files(sys.argv[1], 2); time.sleep(60)"
    )
    started = time.monotonic()
    r = run([PY, "-c", code, str(piddir)], wall_time=1, env=u.script_env())
    assert time.monotonic() - started < 1.5
    assert r.verdict == "wall_time"
    pids = u.pids_in(piddir)
    assert len(pids) == 2
    assert [p for p in pids if u.alive(p)] == []
