"""One side of the Python benchmark: runs in the venv of one implementation, does what the driver asks, one JSON
line in, one JSON line out. `python worker.py pynisher|pynish`."""

import importlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_funcs  # noqa: E402

impl = importlib.import_module(sys.argv[1])


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def pids(d):
    return [int(n[:-4]) for n in os.listdir(d) if n.endswith(".pid")]


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def limited_call(fn, args, **limits):
    """Call fn under limits; seconds taken, exception name, kernel-counted CPU of the reaped children."""
    lf = impl.limit(fn, warnings=False, **limits)
    cpu0 = cpu_children()
    t0 = time.perf_counter()
    try:
        lf(*args)
        exc = None
    except BaseException as e:  # noqa: BLE001 - the benchmark records whatever came
        exc = type(e).__name__
    took = time.perf_counter() - t0
    usage = getattr(lf, "usage", None)
    return took, exc, cpu_children() - cpu0, usage


def tree_case(fn, **limits):
    d = tempfile.mkdtemp(prefix="pynish-bench-")
    try:
        took, exc, cpu, usage = limited_call(fn, (d,), **limits)
        started = pids(d)
        left = [p for p in started if alive(p)]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out = {"s": took, "exc": exc, "started": len(started), "left": len(left)}
        if usage is not None:
            out["peak_mb"] = usage.peak_memory_bytes / 2**20
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


#: What the caller holds besides itself ("ballast" requests), and a large argument, made once.
BALLAST = bytearray()
ARGUMENT = b""


def resident_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def handle(req):
    global BALLAST, ARGUMENT
    op = req["op"]
    if op == "ballast":
        # Every page touched: a fork copies the page tables of what the caller really holds.
        BALLAST = bytearray(b"\x01") * (req["mb"] * 2**20)
        if req["mb"] == 0:
            ARGUMENT = b""
        return {"rss_mb": resident_mb()}
    if op == "argcost":
        if len(ARGUMENT) != req["mb"] * 2**20:
            ARGUMENT = b"x" * (req["mb"] * 2**20)
        lf = impl.limit(bench_funcs.takes, context=req["ctx"], warnings=False)
        t0 = time.perf_counter()
        lf(ARGUMENT)
        return {"ms": (time.perf_counter() - t0) * 1000}
    if op == "cost":
        fn = getattr(bench_funcs, req["func"])
        lf = impl.limit(fn, context=req["ctx"], warnings=False)
        t0 = time.perf_counter()
        lf()
        return {"ms": (time.perf_counter() - t0) * 1000}
    if op == "wall":
        return tree_case(bench_funcs.sleeper, wall_time=1)
    if op == "setsid":
        return tree_case(bench_funcs.setsid_grandchild, wall_time=1)
    if op == "memory":
        return tree_case(bench_funcs.four_workers, memory=(200, "MB"), wall_time=20)
    if op == "cpu":
        took, exc, cpu, usage = limited_call(bench_funcs.spinner, (req["threads"],), cpu_time=1, wall_time=30)
        out = {"s": took, "exc": exc, "cpu": cpu}
        if usage is not None:
            out["reported_cpu"] = usage.cpu_time_s
        return out
    if op == "bigret":
        n = 500 * 2**20
        lf = impl.limit(bench_funcs.big_return, wall_time=120, warnings=False)
        t0 = time.perf_counter()
        value = lf(n)
        took = time.perf_counter() - t0
        ok = len(value) == n
        del value
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"s": took, "exc": None if ok else "wrong length", "caller_maxrss_mb": maxrss}
    raise ValueError(op)


if __name__ == "__main__":
    for line in sys.stdin:
        reply = handle(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
