#!/usr/bin/env python3
"""Python API benchmark: pynish against pynisher 1.0.10, side by side in one run (issue 11, item 6).

Each implementation lives in its own venv; one long-lived worker per venv (worker.py) does one limited call per
request. The driver alternates between the two workers call by call, rotating which goes first each round, so
drift in machine load hits both alike. Standard library only.

    bench/python/bench.py --pynisher /tmp/pynisher-venv/bin/python --pynish /tmp/pynish-venv/bin/python

Writes a markdown section to stdout (and --markdown FILE) and the raw samples to --raw FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONTEXTS = ["fork", "forkserver", "spawn"]
FUNCS = ["trivial", "uses_numpy"]
IMPLS = ["pynisher", "pynish"]


class Worker:
    def __init__(self, python: str, impl: str):
        self.impl = impl
        self.python = python
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "worker.py"), impl],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=False,
        )

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.impl} worker died")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def version(python: str, module: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip() or "?"


def startup_ms(python: str, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pynisher", required=True, help="python of a venv with pynisher==1.0.10 and numpy")
    ap.add_argument("--pynish", required=True, help="python of a venv with pynish (pip install .) and numpy")
    ap.add_argument("--rounds", type=int, default=40, help="calls per implementation, context and function")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each precision case")
    ap.add_argument("--sections", default="cost,precision", help="cost, precision, callers (cost by caller size)")
    ap.add_argument("--markdown", help="also write the markdown section here")
    ap.add_argument("--results", help="put the section into this file (bench/RESULTS.md), between its markers")
    ap.add_argument("--raw", help="write the raw samples (JSON) here")
    ap.add_argument("--runs", type=int, default=1, help="callers: runs, each with fresh workers (see callers())")
    args = ap.parse_args()
    sections = set(args.sections.split(","))

    pythons = {"pynisher": args.pynisher, "pynish": args.pynish}
    workers = {i: Worker(pythons[i], i) for i in IMPLS}
    raw: dict = {"cost": {}, "precision": {}}
    load_before = os.getloadavg()
    started = time.time()
    try:
        if "cost" in sections:
            # one warm-up call each (imports, forkserver start), not counted
            for ctx in CONTEXTS:
                for fn in FUNCS:
                    for i in IMPLS:
                        workers[i].ask(op="cost", ctx=ctx, func=fn)
            cost = {f"{i}/{ctx}/{fn}": [] for i in IMPLS for ctx in CONTEXTS for fn in FUNCS}
            for r in range(args.rounds):
                order = IMPLS if r % 2 == 0 else IMPLS[::-1]
                for ctx in CONTEXTS:
                    for fn in FUNCS:
                        for i in order:
                            cost[f"{i}/{ctx}/{fn}"].append(workers[i].ask(op="cost", ctx=ctx, func=fn)["ms"])
            raw["cost"] = cost
            raw["startup"] = {i: startup_ms(pythons[i], args.rounds) for i in IMPLS}
        if "precision" in sections:
            prec = {}
            cases = [("wall", {}), ("setsid", {}), ("cpu1", {"op": "cpu", "threads": 1}),
                     ("cpu2", {"op": "cpu", "threads": 2}), ("memory", {}), ("bigret", {})]  # fmt: skip
            for name, req in cases:
                req = req or {"op": name}
                reps = max(1, args.reps // 2) if name in ("memory", "setsid", "bigret") else args.reps
                for r in range(reps):
                    order = IMPLS if r % 2 == 0 else IMPLS[::-1]
                    for i in order:
                        prec.setdefault(f"{i}/{name}", []).append(workers[i].ask(**req))
            raw["precision"] = prec
    finally:
        for w in workers.values():
            w.close()
    if "callers" in sections:
        raw["callers"] = [callers(pythons, args.rounds) for _ in range(args.runs)]
    load_after = os.getloadavg()

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "duration_s": round(time.time() - started),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}",
        "python": platform.python_version(),
        "pynisher": version(args.pynisher, "pynisher"),
        "pynish": version(args.pynish, "pynish"),
        "numpy": version(args.pynish, "numpy"),
        "load": f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1-min average)",
        "rounds": args.rounds,
        "reps": args.reps,
        "runs": args.runs,
    }
    raw["meta"] = meta
    if args.raw:
        with open(args.raw, "w") as fh:
            json.dump(raw, fh, indent=1)
    md = markdown(raw, meta) if raw.get("cost") or raw.get("precision") else ""
    if raw.get("callers"):
        md_callers = callers_markdown(raw["callers"], meta)
        print(md_callers)
        if args.results:
            into_results(args.results, md_callers, CALLERS_START, CALLERS_END, "Python API: cost by caller size")
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(md)
    if args.results and md:
        into_results(args.results, md)
    return 0


START, END = "<!-- python-bench:start -->", "<!-- python-bench:end -->"
CALLERS_START, CALLERS_END = "<!-- python-callers:start -->", "<!-- python-callers:end -->"
#: Caller sizes (MiB of touched ballast on top of the worker itself, about 20 MB) and argument sizes measured.
BALLASTS = [0, 1024]
ARGUMENT_MB = 200


def callers(pythons: dict, rounds: int) -> dict:
    """Cost of a trivial call per context, from a small caller and from one holding 1 GiB, and of a call with a
    200 MiB argument from the small caller; the implementations alternate call by call.

    One run, with workers of its own: how fast a fork copies a caller's page tables, and tears the copy down, varies
    from one process to the next (where its memory landed) by more than the implementations differ, steadily
    within a run, so a comparison needs several runs (``--runs``), each with fresh workers."""
    workers = {i: Worker(pythons[i], i) for i in IMPLS}
    try:
        return _callers(workers, rounds)
    finally:
        for w in workers.values():
            w.close()


def _callers(workers, rounds: int) -> dict:
    out: dict = {"rss": {}, "cost": {}}
    trivial = [("trivial", ctx, {"op": "cost", "ctx": ctx, "func": "trivial"}) for ctx in CONTEXTS]
    argument = [(f"arg{ARGUMENT_MB}", ctx, {"op": "argcost", "ctx": ctx, "mb": ARGUMENT_MB}) for ctx in CONTEXTS]
    # The argument last: the caller holds it from then on (its RSS is then the small caller's plus the argument).
    for ballast, cases in [(BALLASTS[1], trivial), (BALLASTS[0], trivial), (BALLASTS[0], argument)]:
        for i in IMPLS:
            out["rss"][f"{i}/{ballast}"] = workers[i].ask(op="ballast", mb=ballast)["rss_mb"]
        for _, _, req in cases:  # warm-up, not counted
            for i in IMPLS:
                workers[i].ask(**req)
        for r in range(rounds):
            order = IMPLS if r % 2 == 0 else IMPLS[::-1]
            for name, ctx, req in cases:
                for i in order:
                    key = f"{i}/{ballast}/{name}/{ctx}"
                    out["cost"].setdefault(key, []).append(workers[i].ask(**req)["ms"])
    for i in IMPLS:
        workers[i].ask(op="ballast", mb=0)
    return out


def callers_markdown(runs: list, meta: dict) -> str:
    """Per case: the median over the runs of each run's median, the range of those, and the runs pynish won."""
    n = len(runs)
    out = [
        f"Run {meta['date']} ({meta['duration_s']} s): {meta['machine']}, Python {meta['python']}, pynisher "
        f"{meta['pynisher']}, pynish {meta['pynish']}; load {meta['load']}.",
        "",
        f"**Cost per call by caller size** (ms; {n} run(s) with fresh workers, {meta['rounds']} calls per case and "
        "implementation in each, alternating; the median over the runs of each run's median, with the range of "
        "those medians):",
        "",
        "| caller | call | context | pynisher 1.0.10 | pynish | pynish − pynisher | runs with pynish ≤ pynisher |",
        "|---|---|---|---|---|---|---|",
    ]
    first = runs[0]
    for key in sorted({k.split("/", 1)[1] for k in first["cost"]}, key=lambda k: (int(k.split("/")[0]), k)):
        ballast, name, ctx = key.split("/")
        a = [statistics.median(run["cost"][f"pynisher/{key}"]) for run in runs]
        b = [statistics.median(run["cost"][f"pynish/{key}"]) for run in runs]
        ma, mb = statistics.median(a), statistics.median(b)
        won = sum(1 for x, y in zip(a, b) if y <= x)
        rss = "/".join(f"{first['rss'][f'{i}/{ballast}']:.0f}" for i in IMPLS)
        call = "`return 1`" if name == "trivial" else f"`len` of a {ARGUMENT_MB} MiB `bytes` argument"
        out.append(
            f"| {rss} MiB | {call} | {ctx} | {ma:.1f} ({min(a):.1f}–{max(a):.1f}) | {mb:.1f} "
            f"({min(b):.1f}–{max(b):.1f}) | {mb - ma:+.1f} ({(mb / ma - 1) * 100:+.0f} %) | {won} of {n} |"
        )
    out.append("")
    return "\n".join(out)


def into_results(
    path: str, md: str, start: str = START, end: str = END, title: str = "Python API: pynish against pynisher 1.0.10"
) -> None:
    """Replace the measured part of the Python section (between the markers), or append the section."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    block = f"{start}\n{md.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n" + block + "\n"
    with open(path, "w") as fh:
        fh.write(text)


def markdown(raw, meta) -> str:
    out = []
    w = out.append
    w(f"Run {meta['date']} ({meta['duration_s']} s): {meta['machine']}, Python {meta['python']}, pynisher "
      f"{meta['pynisher']}, pynish {meta['pynish']}, numpy {meta['numpy']}; load {meta['load']}.")  # fmt: skip
    w("")
    if raw.get("cost"):
        cost = raw["cost"]
        w(f"**Cost per call** (ms; median, with p10–p90; {meta['rounds']} calls each, alternating):")
        w("")
        w("| context | function | pynisher 1.0.10 | pynish | pynish − pynisher |")
        w("|---|---|---|---|---|")
        for ctx in CONTEXTS:
            for fn in FUNCS:
                a, b = cost[f"pynisher/{ctx}/{fn}"], cost[f"pynish/{ctx}/{fn}"]
                ma, mb = statistics.median(a), statistics.median(b)
                w(f"| {ctx} | {fn} | {ma:.1f} ({q(a, .1):.1f}–{q(a, .9):.1f}) | {mb:.1f} ({q(b, .1):.1f}–{q(b, .9):.1f}) "
                  f"| {mb - ma:+.1f} ({(mb / ma - 1) * 100:+.0f} %) |")  # fmt: skip
        s = raw["startup"]
        w("")
        w(f"For scale: `python -c pass` takes {statistics.median(s['pynisher']):.1f} ms (pynisher's venv) and "
          f"{statistics.median(s['pynish']):.1f} ms (pynish's venv), median of {meta['rounds']}.")  # fmt: skip
        w("")
    if raw.get("precision"):
        p = raw["precision"]

        def summary(key, field="s"):
            xs = [r[field] for r in p[key] if r.get(field) is not None]
            return (statistics.median(xs), min(xs), max(xs)) if xs else (float("nan"),) * 3

        def excs(key):
            names = sorted({str(r["exc"]) for r in p[key]})
            return ", ".join(names)

        def left(key):
            return sum(r.get("left", 0) for r in p[key]), sum(r.get("started", 0) for r in p[key])

        w("**Precision** (median, min–max over the repetitions):")
        w("")
        w("| case | measure | pynisher 1.0.10 | pynish |")
        w("|---|---|---|---|")
        for case, label in [("wall", "`wall_time=1`, function sleeps"), ("setsid", "`wall_time=1`, setsid grandchild")]:
            cells = []
            for i in IMPLS:
                m, lo, hi = summary(f"{i}/{case}")
                lft, st = left(f"{i}/{case}")
                cells.append(f"{m:.2f} s ({lo:.2f}–{hi:.2f}); {excs(f'{i}/{case}')}; {lft} of {st} processes left")
            w(f"| {label} | time to the exception | {cells[0]} | {cells[1]} |")
        for case, label in [("cpu1", "`cpu_time=1`, 1 spinning thread"), ("cpu2", "`cpu_time=1`, 2 spinning threads")]:
            cells = []
            for i in IMPLS:
                m, lo, hi = summary(f"{i}/{case}", "cpu")
                t, _, _ = summary(f"{i}/{case}")
                cells.append(f"{m:.3f} s CPU ({lo:.3f}–{hi:.3f}), after {t:.2f} s; {excs(f'{i}/{case}')}")
            w(f"| {label} | CPU the kernel counted | {cells[0]} | {cells[1]} |")
        cells = []
        for i in IMPLS:
            m, lo, hi = summary(f"{i}/memory")
            lft, st = left(f"{i}/memory")
            peak = [r["peak_mb"] for r in p[f"{i}/memory"] if "peak_mb" in r]
            extra = f"; peak {statistics.median(peak):.0f} MiB (pynish's usage)" if peak else ""
            cells.append(f"{excs(f'{i}/memory')} after {m:.2f} s ({lo:.2f}–{hi:.2f}); {lft} of {st} left{extra}")
        w(f"| `memory=(200, \"MB\")`, 4 workers × 100 MB, `wall_time=20` | outcome | {cells[0]} | {cells[1]} |")
        cells = []
        for i in IMPLS:
            m, lo, hi = summary(f"{i}/bigret")
            rss = max(r["caller_maxrss_mb"] for r in p[f"{i}/bigret"])
            cells.append(f"{m:.2f} s ({lo:.2f}–{hi:.2f}); caller's peak RSS {rss:.0f} MiB")
        w(f"| a 500 MiB `bytes` return value | time of the call; caller's memory | {cells[0]} | {cells[1]} |")
        w("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
