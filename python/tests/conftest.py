"""pytest setup: which implementation `import pynish` gives, markers, and the per-test process check.

PYNISH_TEST_TARGET=pynisher runs the suite against the real pynisher 1.0.10 (through a shim package), to check the
tests themselves; tests of pynisher's known weaknesses are then expected to fail and pynish's extras are skipped.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

import pytest

import pynish_testutil as u

if u.IS_PYNISHER:
    sys.path.insert(0, str(u.SHIM_DIR))
    collect_ignore = ["test_smoke.py"]  # the package's own smoke tests use pynish's extras throughout


def pytest_configure(config):
    config.addinivalue_line("markers", "pynish_only: uses pynish's extras (run, usage); skipped against pynisher")
    config.addinivalue_line(
        "markers", "pynisher_weakness: a case pynisher 1.0.10 gets wrong (issue 11, item 5); xfail against pynisher"
    )


def pytest_report_header(config):
    import pynish

    return f"pynish under test: {u.TARGET} from {os.path.dirname(pynish.__file__)}; PYNISH_BIN={os.environ.get('PYNISH_BIN')}"


def pytest_collection_modifyitems(config, items):
    if not u.IS_PYNISHER:
        return
    for item in items:
        if item.get_closest_marker("pynish_only"):
            item.add_marker(pytest.mark.skip(reason="pynish extra; not in pynisher"))
        if item.get_closest_marker("pynisher_weakness"):
            item.add_marker(pytest.mark.xfail(reason="pynisher 1.0.10 weakness", strict=False))


def _ignorable(pid: int) -> bool:
    # multiprocessing's own long-lived helpers (started once per test process, by design)
    cmd = u.cmdline(pid)
    return "forkserver" in cmd or "resource_tracker" in cmd


@pytest.fixture(autouse=True)
def no_process_left():
    """Every test: no process below this test process is alive when it ends (helpers excepted)."""
    before = {p for p in u.descendants(os.getpid())}
    yield
    deadline = time.monotonic() + 3
    left = []
    while time.monotonic() < deadline:
        left = [p for p in u.descendants(os.getpid()) if p not in before and not _ignorable(p)]
        if not left:
            break
        time.sleep(0.02)
    if left:
        desc = {p: u.cmdline(p) for p in left}
        u.kill_all(left)
        pytest.fail(f"processes left behind by the test: {desc}")


@pytest.fixture
def piddir(tmp_path):
    """A directory for pid files; whatever announced itself there is killed at the end (the test asserts first)."""
    d = tmp_path / "pids"
    d.mkdir()
    yield d
    u.kill_all([p for p in u.pids_in(d) if u.alive(p)])


@pytest.fixture
def heavy_memory():
    """Tests that hold hundreds of MB take turns across xdist workers (one at a time per machine)."""
    with open("/tmp/pynish-pytest-heavy-memory.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
        fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture
def cgroup_backend():
    """Name of the cgroup backend pynish uses here; skips (with the reason) when none is usable."""
    import json
    import subprocess

    binary = os.environ.get("PYNISH_BIN") or "pynish"
    out = subprocess.run([binary, "check", "--json"], capture_output=True, text=True, timeout=30)
    info = json.loads(out.stdout or out.stderr)
    usable = [b["name"] for b in info["backends"] if b["usable"] and b["name"].startswith("cgroup")]
    if not usable:
        reasons = "; ".join(f"{b['name']}: {b['detail']}" for b in info["backends"])
        print(f"SKIP: no cgroup backend usable here ({reasons})", file=sys.stderr)
        pytest.skip(f"no cgroup backend usable here ({reasons})")
    return info.get("auto", usable[0])
