"""Helpers shared by the pytest suite: which implementation is under test, process bookkeeping, child workloads.

Workload functions live here (a plain module on sys.path) so that every context can find them by name, spawn and
forkserver included. Processes a workload starts announce themselves with a pid file in a directory the test owns;
the test then asserts that every one of them is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
SHIM_DIR = HERE / "_pynisher_shim"
FAKE_SKLEARN = HERE / "examples" / "fake_sklearn"

#: "pynish" (default) or "pynisher": the real pynisher 1.0.10 behind `import pynish`, to check the tests themselves.
TARGET = os.environ.get("PYNISH_TEST_TARGET", "pynish")
IS_PYNISHER = TARGET == "pynisher"


# ---------------------------------------------------------------- processes


def state(pid: int) -> str | None:
    """The process state letter from /proc, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid: int) -> bool:
    """A zombie is dead: it runs nothing and holds no memory; only its parent's wait is missing."""
    s = state(pid)
    return s is not None and s not in ("Z", "X")


def ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    """Live processes below root (by parent links, so orphans re-parented elsewhere are not found)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = ppid(int(name))
            if p is not None:
                parents[int(name)] = p
    out = []
    for pid in parents:
        p = parents.get(pid)
        seen = 0
        while p and seen < 64:
            if p == root:
                if alive(pid):
                    out.append(pid)
                break
            p = parents.get(p)
            seen += 1
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_gone(pids, timeout: float = 3.0) -> list[int]:
    """Wait until none of pids is alive; return the ones still alive after timeout."""
    deadline = time.monotonic() + timeout
    pids = list(pids)
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def kill_all(pids) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def pids_in(directory) -> list[int]:
    """The pids announced in directory (files named <pid>.pid)."""
    return sorted(int(p.stem) for p in Path(directory).glob("*.pid"))


def announce(directory) -> int:
    """Called inside a workload: write this process's pid file."""
    pid = os.getpid()
    path = Path(directory) / f"{pid}.pid"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(pid))
    os.replace(tmp, path)
    return pid


def wait_for_files(directory, n: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pids_in(directory)
        if len(found) >= n:
            return found
        time.sleep(0.01)
    raise AssertionError(f"only {pids_in(directory)} of {n} pid files appeared in {directory}")


# ---------------------------------------------------------------- subprocess scripts


def script_env(extra_path=()) -> dict:
    """Environment for a caller script run in a subprocess: same pynish (PYNISH_BIN), same import path."""
    env = dict(os.environ)
    path = [str(p) for p in extra_path]
    if IS_PYNISHER:
        path.append(str(SHIM_DIR))
    path.append(str(PYTHON_DIR))
    path.append(str(HERE))
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def run_script(path, *args, cwd=None, timeout=60, extra_path=(), env=None):
    e = script_env(extra_path)
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, str(path), *map(str, args)],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json_line(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{text}")


# ---------------------------------------------------------------- workloads (run inside the limited function)


def identity(x):
    return x


def whoami():
    return os.getpid(), os.getppid()


def sleep_for(seconds, piddir=None):
    if piddir is not None:
        announce(piddir)
    time.sleep(seconds)
    return seconds


def spin(seconds=60.0, threads=1, piddir=None):
    """Busy-loop in `threads` threads for up to `seconds` of wall time; the threads really run in parallel (hashing
    1 MiB releases the GIL), so 2 threads burn about 2 s of CPU per second."""
    import hashlib
    import threading

    if piddir is not None:
        announce(piddir)
    stop = time.monotonic() + seconds
    data = bytes(2**20)

    def loop():
        while time.monotonic() < stop:
            hashlib.sha256(data).digest()

    ts = [threading.Thread(target=loop, daemon=True) for _ in range(threads - 1)]
    for t in ts:
        t.start()
    loop()
    return "spun"


def allocate(nbytes, piddir=None, hold=0.0):
    """Touch nbytes of fresh memory (every page), optionally hold it, return its size."""
    if piddir is not None:
        announce(piddir)
    buf = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        buf[i] = 1
    if hold:
        time.sleep(hold)
    return len(buf)


def _hold_worker(nbytes, piddir):
    allocate(nbytes, piddir)
    time.sleep(60)


def _pause(seconds):
    time.sleep(seconds)
    return seconds


def fill_then_pool(nbytes, workers):
    """Fill nbytes, then run a fork Pool of `workers` that inherit them copy-on-write and hold them a moment."""
    import multiprocessing

    block = b"\x01" * nbytes  # written, so resident; shared, unwritten, by the pool's workers
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done = pool.map(_pause, [0.5] * workers)
    return len(done) if block else 0


def workers_holding(n, nbytes, piddir, start_method="fork"):
    """Start n multiprocessing workers that each touch nbytes and hold it; wait for them."""
    import multiprocessing

    ctx = multiprocessing.get_context(start_method)
    announce(piddir)
    procs = [ctx.Process(target=_hold_worker, args=(nbytes, piddir)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return "workers ended"


def setsid_grandchild(piddir, seconds=60):
    """Start a grandchild in its own session (as a daemonizing tool would), then sleep."""
    announce(piddir)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pynish_testutil as u; u.announce(sys.argv[1]); time.sleep(60)", str(piddir)],
        start_new_session=True,
        env=script_env(),
    )
    wait_for_files(piddir, 2)
    time.sleep(seconds)
    return child.pid


def raise_value_error(msg="bad value"):
    raise ValueError(msg)


def raise_memory_error():
    raise MemoryError("asked for too much")


def raise_named(name):
    """Raise an exception by class name from the builtins (for wrap_errors tests)."""
    import builtins

    raise getattr(builtins, name)(f"raised {name}")


def start_children(kind, piddir, daemon=True):
    """Start one child of the given kind that sleeps; return its pid."""
    import multiprocessing

    if kind == "popen":
        p = subprocess.Popen(
            [sys.executable, "-c", "import sys, time, pynish_testutil as u; u.announce(sys.argv[1]); time.sleep(60)", str(piddir)],
            env=script_env(),
        )
        wait_for_files(piddir, 1)
        return p.pid
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=sleep_for, args=(60, piddir), daemon=daemon)
    p.start()
    wait_for_files(piddir, 1)
    return p.pid


def big_bytes(nbytes, crc_file):
    """Return nbytes of varied content (each 4 KiB page stamped with its number, the first MiB random); write its
    CRC-32 to crc_file, for the caller to compare."""
    import random
    import struct
    import zlib

    buf = bytearray(nbytes)
    head = min(nbytes, 2**20)
    buf[:head] = random.Random(nbytes).randbytes(head)
    for page in range(head // 4096, nbytes // 4096):
        struct.pack_into("<Q", buf, page * 4096, page)
    data = bytes(buf)
    del buf
    Path(crc_file).write_text(str(zlib.crc32(data)))
    return data


def call_limited(fn_name, kwargs, *args):
    """Nested: from inside a limited function, limit another function and report how it went."""
    import pynish

    fn = globals()[fn_name]
    try:
        return ("ok", pynish.limit(fn, **kwargs)(*args))
    except pynish.PynisherException as e:
        return ("raised", type(e).__name__)


def square_in_testutil(x):
    return x * x


def stubborn_tree(piddir, ignore_signals=False):
    """A function with a child; with ignore_signals both ignore SIGINT and SIGTERM (only SIGKILL ends them)."""
    if ignore_signals:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    announce(piddir)
    code = "import sys, time, pynish_testutil as u; u.announce(sys.argv[1]); time.sleep(60)"
    if ignore_signals:
        code = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); " + code
    subprocess.Popen([sys.executable, "-c", code, str(piddir)], env=script_env())
    wait_for_files(piddir, 2)
    Path(piddir, "ready").write_text("")
    time.sleep(60)
    return "not interrupted"


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is sid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.append(int(name))
    return out


def orphaning_tree(piddir):
    """A function with a grandchild in a session of its own that ignores SIGTERM: announces both, writes
    piddir/ready, then sleeps."""
    announce(piddir)
    code = (
        "import signal, sys, time, pynish_testutil as u; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " u.announce(sys.argv[1]); time.sleep(120)"
    )
    subprocess.Popen([sys.executable, "-c", code, str(piddir)], env=script_env(), start_new_session=True)
    wait_for_files(piddir, 2)
    Path(piddir, "ready").write_text("")
    time.sleep(120)
    return "not ended"
