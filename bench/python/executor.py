#!/usr/bin/env python3
"""pynish.Executor against process pools, side by side in one run (issue 17).

Every pool runs the same trivial task (``return x``) on 2 workers. Rounds alternate the pools, rotating which goes
first, so drift in machine load hits all alike; each round makes every pool afresh, warms it with 4 uncounted tasks,
then times a batch. Two measures:

- throughput: a batch of ``--tasks`` tasks through ``map`` on 2 workers, in tasks/s;
- overhead per task: ``--serial`` tasks one after another on 1 worker (submit, wait for the result), in ms each;
- CPU per task: during the throughput batch, the CPU time of every process involved (the caller, servers, workers,
  pynish), from a cgroup v1 cpuacct group the benchmark runs in (root only; else not measured).

The pools: ``pynish.Executor`` with a wall-time limit per task (``wall_time=10``), the same with a memory limit too
(``memory=(200, "MB")``: pynish's auto backend gives each task a cgroup), ``ProcessPoolExecutor`` with
``max_tasks_per_child=1`` (forkserver, and spawn, its default then), pebble's ``ProcessPool(max_tasks=1)`` with a
10 s timeout per task (when pebble is installed), and for scale a plain ``ProcessPoolExecutor`` that reuses its
workers (no isolation, no limits).

    PYNISH_BIN=target/release/pynish PYTHONPATH=python python3 bench/python/executor.py --results bench/RESULTS.md

Needs pynish importable (and its binary built); pebble is optional (pip install pebble).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import pynish

START, END = "<!-- executor-bench:start -->", "<!-- executor-bench:end -->"


def trivial(x: int) -> int:
    return x


class Pebble:
    """pebble's ProcessPool behind the two calls the benchmark makes (submit and map), with a timeout per task."""

    def __init__(self, workers: int) -> None:
        import pebble

        self.pool = pebble.ProcessPool(max_workers=workers, max_tasks=1)

    def submit(self, fn: Callable, *args: Any) -> Any:
        return self.pool.schedule(fn, args=args, timeout=10)

    def map(self, fn: Callable, items: Any) -> List[Any]:
        return [f.result() for f in [self.submit(fn, x) for x in items]]

    def __enter__(self) -> "Pebble":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pool.close()
        self.pool.join()


def pools() -> Dict[str, Callable[[int], Any]]:
    found: Dict[str, Callable[[int], Any]] = {
        "pynish.Executor, wall_time=10": lambda n: pynish.Executor(n, wall_time=10),
        'pynish.Executor, wall_time=10, memory=(200, "MB")': lambda n: pynish.Executor(
            n, wall_time=10, memory=(200, "MB")
        ),
        "ProcessPoolExecutor(forkserver, max_tasks_per_child=1)": lambda n: cf.ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("forkserver"), max_tasks_per_child=1
        ),
        "ProcessPoolExecutor(spawn, max_tasks_per_child=1)": lambda n: cf.ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
        ),
    }
    try:
        import pebble  # noqa: F401

        found["pebble ProcessPool(max_tasks=1), timeout=10"] = Pebble
    except ImportError:
        print("pebble is not installed: left out (pip install pebble)", file=sys.stderr)
    found["ProcessPoolExecutor (reuses its workers; no isolation, no limits)"] = lambda n: cf.ProcessPoolExecutor(n)
    return found


class CpuGroup:
    """A cgroup v1 cpuacct group the benchmark runs in (root only): the CPU of every process a pool starts, its
    servers and pynish's own nested groups included, as the kernel counts it. None where it cannot be made."""

    def __init__(self) -> None:
        self.path: Optional[str] = f"/sys/fs/cgroup/cpuacct/pynish-executor-bench-{os.getpid()}"
        try:
            os.mkdir(self.path)
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            self.path = None

    def ns(self) -> Optional[int]:
        if self.path is None:
            return None
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read())

    def remove(self) -> None:
        if self.path is None:
            return
        parent = os.path.dirname(self.path)
        # This process and what is left of the pools' helpers (multiprocessing's forkserver) go back to the parent.
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            try:
                with open(os.path.join(parent, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass
        try:
            os.rmdir(self.path)
        except OSError as e:
            print(f"could not remove {self.path}: {e}", file=sys.stderr)


def throughput(make: Callable[[int], Any], tasks: int, group: CpuGroup) -> Tuple[float, Optional[float]]:
    """Tasks/s, and the CPU ms per task of every process involved (None without a cpuacct group)."""
    with make(2) as pool:
        list(pool.map(trivial, range(4)))
        before = group.ns()
        start = time.perf_counter()
        got = list(pool.map(trivial, range(tasks)))
        took = time.perf_counter() - start
        after = group.ns()
    assert got == list(range(tasks))
    cpu = None if before is None or after is None else (after - before) / 1e6 / tasks
    return tasks / took, cpu


def overhead_ms(make: Callable[[int], Any], tasks: int) -> List[float]:
    times = []
    with make(1) as pool:
        list(pool.map(trivial, range(4)))
        for i in range(tasks):
            start = time.perf_counter()
            assert pool.submit(trivial, i).result() == i
            times.append((time.perf_counter() - start) * 1000)
    return times


def load() -> float:
    return os.getloadavg()[0]


def markdown(raw: Dict[str, Any]) -> str:
    names = list(raw["throughput"])
    target = "ProcessPoolExecutor(forkserver, max_tasks_per_child=1)"
    busy = max(raw["load_before"], raw["load_after"]) > (os.cpu_count() or 1)
    lines = [
        f"Run {raw['date']} ({raw['seconds']:.0f} s): {raw['machine']}; {raw['rounds']} rounds alternating the pools; "
        f"load {raw['load_before']:.2f} before, {raw['load_after']:.2f} after (1-min average"
        + (", above the core count: other work shared the machine" if busy else "")
        + ").",
        "",
        f"| pool (trivial task, 2 workers) | tasks/s, median (min–max) | × {target}: median of the rounds' ratios "
        "(min–max) | overhead per task, ms (1 worker; median, p10–p90) | CPU per task, ms (all its processes; "
        "median) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        rates = raw["throughput"][name]
        # Each round's ratio compares runs made moments apart, under the same load; the load moved between rounds.
        ratios = [a / b for a, b in zip(rates, raw["throughput"][target])]
        ms = sorted(x for r in raw["overhead"][name] for x in r)
        counted = [c for c in raw["cpu_ms"][name] if c is not None]
        cpu = f"{statistics.median(counted):.1f}" if counted else "n/a (needs root and cgroup v1 cpuacct)"
        p10, p90 = ms[len(ms) // 10], ms[(len(ms) * 9) // 10]
        lines.append(
            f"| {name} | {statistics.median(rates):.0f} ({min(rates):.0f}–{max(rates):.0f}) | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | "
            f"{statistics.median(ms):.1f} ({p10:.1f}–{p90:.1f}) | {cpu} |"
        )
    lines.append("")
    lines.append(f"pynish's backend for the memory-limited tasks: {raw['memory_backend']}.")
    return "\n".join(lines) + "\n"


def into_results(path: str, md: str) -> None:
    """Replace the measured part of the section (between the markers), or append the section."""
    with open(path) as f:
        text = f.read()
    block = f"{START}\n{md.rstrip()}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        intro = (
            "\n## Python: pynish.Executor against process pools (issue 17)\n\n"
            "`bench/python/executor.py` (method in its doc string): the same trivial task through each pool, "
            "the pools alternating round by round in one process.\n\n"
        )
        text = text.rstrip("\n") + "\n" + intro + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--tasks", type=int, default=100, help="tasks per throughput batch")
    ap.add_argument("--serial", type=int, default=20, help="tasks per overhead round")
    ap.add_argument("--results", help="put the section into this file (bench/RESULTS.md), between its markers")
    ap.add_argument("--raw", help="write the raw samples (JSON) here")
    args = ap.parse_args()

    found = pools()
    names = list(found)
    raw: Dict[str, Any] = {
        "throughput": {n: [] for n in names},
        "overhead": {n: [] for n in names},
        "cpu_ms": {n: [] for n in names},
        "rounds": args.rounds,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "load_before": load(),
    }
    with pynish.Executor(1, memory=(200, "MB")) as ex:
        f = ex.submit(trivial, 1)
        f.result()
        raw["memory_backend"] = f.report.backend
    started = time.monotonic()
    group = CpuGroup()
    try:
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                rate, cpu = throughput(found[name], args.tasks, group)
                raw["throughput"][name].append(rate)
                raw["cpu_ms"][name].append(cpu)
                raw["overhead"][name].append(overhead_ms(found[name], args.serial))
                print(f"round {r + 1}: {name}: {rate:.0f} tasks/s", file=sys.stderr, flush=True)
    finally:
        group.remove()
    raw["seconds"] = time.monotonic() - started
    raw["load_after"] = load()
    md = markdown(raw)
    print(md)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump(raw, f, indent=1)
    if args.results:
        into_results(args.results, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
