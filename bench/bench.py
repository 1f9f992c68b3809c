#!/usr/bin/env python3
"""pynish's benchmark against its peers (GNU timeout, prlimit, runlim), measured side by side in one run.

Started by bench/run.sh, which installs the peers, builds pynish and the C helpers, and runs this under
`harness guard` (nothing started here outlives the run). Timing and kernel counters come from the C harness
(bench/src/harness.c): a child subreaper that times start -> "no process of the tree left", and reads CPU and
peak memory from the kernel (getrusage of everything reaped, ru_maxrss, a cgroup v1 memory group of its own),
never from pynish's report, which is shown beside them only as a cross-check.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))

# Workload parameters (fixed by issue 5).
WALL_LIMIT = 0.5
GRACE = 0.2
CPU_LIMIT = 1.0
MEM_LIMIT = 200_000_000  # 200MB as pynish reads it
RUNLIM_MEM_MIB = 191  # runlim takes whole MiB: 191 MiB = 200,278,016 bytes, the nearest to 200 MB
ALLOC_MBPS = 1000  # ~1 GB/s
ALLOC_STEP_MB = 1
MIN_SAMPLE_S = 0.001  # pynish's closest sampling period (src/monitor.rs MIN_SAMPLE)
ISOLATION_GAP_MS = 50  # idle time before each "isolated" overhead run
APART_GAP_MS = 300  # idle time before each run of the default-path measurement "0.3 s apart" (issue 10)

FULL = dict(default=300, default_apart=60,
            overhead=200, isolated=60, warmup=10, wall=30, cpu=10, mem=10, supervise_s=10.0, supervise_reps=2,
            scale_overhead=200, scale_cpu=5, tree_overhead=50, idle=2000, tree=200, hyperfine=200,
            sweeps=20, figures_s=5.0)
QUICK = dict(default=40, default_apart=10,
             overhead=30, isolated=10, warmup=3, wall=5, cpu=3, mem=3, supervise_s=2.0, supervise_reps=1,
             scale_overhead=20, scale_cpu=2, tree_overhead=10, idle=2000, tree=200, hyperfine=30,
             sweeps=5, figures_s=2.0)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, math.ceil(p / 100 * len(s)) - 1)
    return s[k]


def med(values):
    return statistics.median(values) if values else float("nan")


def ms(x, digits=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x * 1e3:+.{digits}f}" if x < 0 else f"{x * 1e3:.{digits}f}"


def mb(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x / 1e6:+.2f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


class Bench:
    def __init__(self, args):
        self.args = args
        self.p = QUICK if args.quick else FULL
        self.harness = args.harness
        self.load = args.load
        self.pynish = args.pynish
        self.work = tempfile.mkdtemp(prefix="pynish-bench-")
        self.raw = {}
        self.md = []  # markdown sections
        self.targets = []  # (target, measured, met)
        self.notes = []
        self.idle_proc = None
        self.mem_root = None
        self.which = {t: shutil.which(t) for t in ("true", "sleep", "timeout", "prlimit", "runlim", "hyperfine")}
        self.backends = []
        self.sections = set(args.sections.split(",")) if args.sections else None

    # ---- plumbing ------------------------------------------------------------------------------------

    def run(self, argv, *, cgroups=(), hwm=False, deadline=60.0, linger=0.5, want_err=False):
        err = os.path.join(self.work, "stderr.txt")
        cmd = [self.harness, "run", "--err", err, "--deadline", str(deadline), "--linger", str(linger)]
        for c in cgroups:
            cmd += ["--cgroup", c]
        if hwm:
            cmd.append("--hwm")
        out = subprocess.run(cmd + ["--"] + [str(a) for a in argv], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"harness failed on {argv}: {out.stderr}")
        d = json.loads(out.stdout)
        if want_err:
            with open(err, errors="replace") as f:
                d["stderr"] = f.read()
        return d

    def pynish_json(self, d):
        for line in reversed(d.get("stderr", "").splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    pass
        return None

    def report_value(self, path):
        return self.report_values(path, 1)[0]

    def report_values(self, path, n):
        """The workload's shared report slots (8-byte integers), or Nones."""
        try:
            with open(path, "rb") as f:
                return list(struct.unpack(f"{n}q", f.read(8 * n)))
        except (OSError, struct.error):
            return [None] * n

    def py(self, backend, *opts):
        return [self.pynish, "--backend", backend, *opts, "--"]

    def want(self, name):
        return self.sections is None or name in self.sections

    # ---- setup ---------------------------------------------------------------------------------------

    def detect_backends(self):
        for b in ("proc", "cgroup1", "cgroup2"):
            d = self.run(self.py(b, "--json") + [self.which["true"]], want_err=True)
            rep = self.pynish_json(d)
            ok = d["code"] == 0 and rep is not None and rep.get("backend") == b
            if ok:
                self.backends.append(b)
            else:
                why = (d.get("stderr") or "").strip().splitlines()
                self.notes.append(f"backend `{b}` not usable here: {why[0] if why else 'exit ' + str(d['code'])}")
        picks = []
        for limits in ([], ["--memory", "1GB"]):
            d = self.run([self.pynish, "--json", *limits, "--", self.which["true"]], want_err=True)
            rep = self.pynish_json(d)
            picks.append(rep.get("backend") if rep else "?")
        self.auto_backend = f"{picks[0]} without a memory or process limit, {picks[1]} with one"
        self.auto_group = picks[1]
        log(f"pynish backends usable: {self.backends} (auto picks {self.auto_backend})")

    def setup_mem_group(self):
        """A cgroup v1 memory group of the benchmark's own, below its current one, with no limit: every tool
        runs inside a fresh child of it, whose memory.max_usage_in_bytes is the tree's real peak charge
        (hierarchical: it includes any group the tool makes below it)."""
        mount = None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                fstype, opts = parts[sep + 1], parts[sep + 3]
                if fstype == "cgroup" and "memory" in opts.split(","):
                    mount = parts[4]
        if not mount:
            self.notes.append("no cgroup v1 memory hierarchy: the group-peak column is n/a")
            return
        current = "/"
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if "memory" in ctrls.split(","):
                    current = path
        root = os.path.join(mount + current, f"bench-pynish-{os.getpid()}")
        try:
            os.mkdir(root)
        except OSError as e:
            self.notes.append(f"cannot make a cgroup v1 memory group ({e}): the group-peak column is n/a")
            return
        self.mem_root = root
        self.mem_n = 0
        self.leaked_groups = 0

    def new_mem_group(self):
        if not self.mem_root:
            return None
        self.mem_n += 1
        g = os.path.join(self.mem_root, f"run-{self.mem_n}")
        os.mkdir(g)
        return g

    def drop_mem_group(self, g):
        """Reads the group's peak, then removes it (and whatever a tool left below it)."""
        if not g:
            return None
        with open(os.path.join(g, "memory.max_usage_in_bytes")) as f:
            peak = int(f.read())
        self.leaked_groups += self.rmtree_cgroup(g)
        return peak

    def rmtree_cgroup(self, g):
        leaked = 0
        for dirpath, dirnames, _ in os.walk(g, topdown=False):
            for d in dirnames:
                try:
                    os.rmdir(os.path.join(dirpath, d))
                    leaked += 1
                except OSError:
                    pass
        try:
            os.rmdir(g)
        except OSError:
            pass
        return leaked

    def cleanup(self):
        if self.idle_proc:
            self.stop_idle()
        if self.mem_root:
            self.rmtree_cgroup(self.mem_root)
        shutil.rmtree(self.work, ignore_errors=True)

    # ---- 0. the default path ---------------------------------------------------------------------------

    def section_default(self):
        """What a user who installed with `cargo install --path .` and never picks a backend pays on a short
        command: `pynish -- true` against `timeout 100 true`, alternated, back to back and 0.3 s apart."""
        n, apart = self.p["default"], self.p["default_apart"]
        log(f"0. default path: {n} rounds back to back, {apart} rounds {APART_GAP_MS} ms apart; alternated")
        true = self.which["true"]
        group = self.auto_group  # what auto takes with a memory limit
        runs = [("pynish", [self.pynish, "--", true], True),
                (f"pynish --memory 1GB (auto: {group})", [self.pynish, "--memory", "1GB", "--", true], False)]
        cases = [("back to back", n, 0, 1.1), (f"{APART_GAP_MS / 1000:g} s apart", apart, APART_GAP_MS, 1.5)]
        rows, raw = [], {}
        for label, argv, target in runs:
            tools = [("timeout 100", [self.which["timeout"], "100", true]), (label, argv)]
            for name, rounds, gap, bound in cases:
                res = self.overhead(tools, rounds, self.p["warmup"] if gap == 0 else 2, gap)
                raw[f"{label}, {name}"] = res
                base, base10 = med(res["timeout 100"]), pct(res["timeout 100"], 10)
                for tool, t in res.items():
                    rows.append([name, f"`{tool}`", ms(med(t), 3), f"{med(t) / base:.2f}×", ms(pct(t, 10), 3),
                                 f"{pct(t, 10) / base10:.2f}×", ms(pct(t, 95), 3)])
                r = med(res[label]) / base
                if target:
                    self.targets.append((f"default binary, `pynish -- true`, {name}: ≤ {bound}× timeout (median)",
                                         f"{r:.2f}× ({ms(med(res[label]), 3)} vs {ms(base, 3)} ms)", r <= bound))
        self.raw["default"] = raw
        text = [f"The binary as built by `cargo build --release` (what `cargo install --path .` installs; "
                f"{self.linkage()}), with no flag but the command: `--backend auto`, which takes `proc` when no "
                "memory or process limit is asked. Wall time from spawn until no process is left, the two tools "
                f"alternated in every round: {n} rounds back to back, and {apart} rounds with {APART_GAP_MS} ms of "
                "idling before each run (a script or a person running one command at a time). Ratios to `timeout` "
                "in the same case; the p10 column shows the same comparison with the scheduling noise of a busy "
                "machine mostly removed. Then the same with a memory limit, for which auto makes a group (no "
                "target: the cost of a group where a limit needs one).", "",
                table(["case", "tool", "median ms", "ratio", "p10 ms", "p10 ratio", "p95 ms"], rows)]
        self.md.append(("0. The default path", "\n".join(text)))

    # ---- 1. overhead -----------------------------------------------------------------------------------

    def overhead_tools(self, cmd, with_prlimit=True, bare=True):
        tools = []
        if bare:
            tools.append(("(no tool)", cmd))
        tools.append(("timeout 100", [self.which["timeout"], "100"] + cmd))
        if with_prlimit:
            tools.append(("prlimit --cpu=100", [self.which["prlimit"], "--cpu=100"] + cmd))
        tools.append(("runlim -t 100", [self.which["runlim"], "-t", "100"] + cmd))
        for b in self.backends:
            tools.append((f"pynish {b}", self.py(b, "--wall-time", "100s") + cmd))
        return tools

    def overhead(self, tools, rounds, warmup, gap_ms=0):
        out = os.path.join(self.work, "overhead.tsv")
        argv = [self.harness, "overhead", str(rounds), str(warmup), out, "--gap-ms", str(gap_ms), "--"]
        for i, (label, cmd) in enumerate(tools):
            if i:
                argv.append(":::")
            argv += [label] + cmd
        subprocess.run(argv, check=True)
        samples = {label: [] for label, _ in tools}
        with open(out) as f:
            for line in f:
                label, ns = line.rstrip("\n").split("\t")
                samples[label].append(int(ns) / 1e9)
        return samples

    def section_overhead(self):
        n, iso = self.p["overhead"], self.p["isolated"]
        log(f"1. overhead: {n} rounds back to back, {iso} rounds {ISOLATION_GAP_MS} ms apart; tools alternated")
        true, sleep = [self.which["true"]], [self.which["sleep"], "0.01"]
        cases = [("`true`", true, n, 0), (f"`true`, runs {ISOLATION_GAP_MS} ms apart", true, iso, ISOLATION_GAP_MS),
                 ("`sleep 0.01`", sleep, n, 0)]
        results = {name: self.overhead(self.overhead_tools(cmd), rounds, self.p["warmup"], gap)
                   for name, cmd, rounds, gap in cases}
        self.raw["overhead"] = results
        base = {name: med(results[name]["timeout 100"]) for name in results}
        header, rows = ["tool"], []
        for name, _, rounds, _ in cases:
            header += [f"{name}: median ms", "ratio", "p95 ms"]
        for label in results["`true`"]:
            row = [f"`{label}`"]
            for name, _, _, _ in cases:
                t = results[name][label]
                row += [ms(med(t), 3), f"{med(t) / base[name]:.2f}×", ms(pct(t, 95), 3)]
            rows.append(row)
        text = ["Wall time from spawn until no process is left; every tool runs once per round, the order rotating "
                f"every round; {n} rounds back to back, and {iso} rounds with {ISOLATION_GAP_MS} ms of idling before "
                "each run (as a person or a script running one command at a time would: nothing stays warm in "
                "the kernel from the run before). Ratios are to `timeout` in the same case.", "",
                table(header, rows)]
        if "proc" in self.backends:
            r = med(results["`true`"]["pynish proc"]) / base["`true`"]
            r_iso = med(results[cases[1][0]]["pynish proc"]) / base[cases[1][0]]
            self.targets.append(("overhead on `true`, proc backend ≤ 1.1× timeout",
                                 f"{r:.2f}× ({r_iso:.2f}× isolated)", max(r, r_iso) <= 1.1))
            for b in self.backends:
                if not b.startswith("cgroup"):
                    continue
                extra = {name: med(results[name][f"pynish {b}"]) - med(results[name]["pynish proc"])
                         for name, _, _, _ in cases}
                desc = ", ".join(f"{ms(v, 2)} ms on {k}" for k, v in extra.items())
                text.append(f"\n{b} backend's extra cost over proc: {desc}.")
                self.targets.append((f"{b} backend's extra cost stated", desc, True))
        if not any(b.startswith("cgroup") for b in self.backends):
            self.targets.append(("cgroup backend's extra cost stated", "n/a: no cgroup backend usable", None))
        if self.which["hyperfine"] and "proc" in self.backends:
            text.append(self.hyperfine_check())
        self.md.append(("1. Overhead", "\n".join(text)))

    def hyperfine_check(self):
        out = os.path.join(self.work, "hyperfine.json")
        cmds = [f"{self.which['timeout']} 100 {self.which['true']}",
                f"{self.pynish} --backend proc --wall-time 100s -- {self.which['true']}"]
        r = subprocess.run([self.which["hyperfine"], "-N", "--runs", str(self.p["hyperfine"]), "--warmup", "10",
                            "--export-json", out, "--style", "none"] + cmds, capture_output=True, text=True)
        if r.returncode != 0:
            return f"\n(hyperfine cross-check failed: {r.stderr.strip()[:200]})"
        with open(out) as f:
            res = json.load(f)["results"]
        t, p = res[0]["median"], res[1]["median"]
        self.raw["hyperfine"] = res
        return (f"\nCross-check with hyperfine (`-N --runs {self.p['hyperfine']}`, not alternated): `timeout` "
                f"{t * 1e3:.3f} ms, `pynish proc` {p * 1e3:.3f} ms median, ratio {p / t:.2f}×.")

    # ---- 2. wall-time limit ----------------------------------------------------------------------------

    def section_wall(self):
        n = self.p["wall"]
        log(f"2. wall-time precision: {n} rounds")
        g = f"{GRACE}"
        cases = [("`sleep 10`", [self.which["sleep"], "10"], False),
                 ("TERM-ignoring (2 processes)", [self.load, "ignore-term"], True)]
        rows, raw = [], {}
        for cname, cmd, ignores in cases:
            tools = [("timeout -k 0.2 0.5", [self.which["timeout"], "-k", g, str(WALL_LIMIT)] + cmd, WALL_LIMIT),
                     ("runlim -r 1", [self.which["runlim"], "-r", "1"] + cmd, 1.0)]
            for b in self.backends:
                tools.append((f"pynish {b}", self.py(b, "-q", "--wall-time", f"{int(WALL_LIMIT * 1000)}ms",
                                                     "--grace", f"{int(GRACE * 1000)}ms") + cmd, WALL_LIMIT))
            res = {label: [] for label, _, _ in tools}
            for r in range(n):
                for k in range(len(tools)):
                    label, argv, _ = tools[(r + k) % len(tools)]
                    res[label].append(self.run(argv, deadline=10, linger=0.3))
            raw[cname] = res
            for label, _, limit in tools:
                ds = res[label]
                expected = limit + (GRACE if ignores and not label.startswith("runlim") else 0)
                over = [d["dead_s"] - expected for d in ds if d["survivors"] == 0 and not d["timed_out"]]
                surv = sum(d["survivors"] for d in ds)
                rows.append([cname, f"`{label}`", f"{expected:.1f}", ms(med(over)), ms(pct(over, 95)),
                             ms(min(over) if over else None), ms(max(over) if over else None),
                             f"{surv} in {sum(1 for d in ds if d['survivors'])} runs" if surv else "0"])
                if label.startswith("pynish"):
                    m, p95 = med(over), pct(over, 95)
                    what = "sleep" if not ignores else "TERM-ignoring, after limit+grace"
                    self.targets.append((f"wall ({label}, {what}): tree dead ≤ 5 ms after (median)",
                                         f"{ms(m)} ms", m <= 0.005 and surv == 0))
                    self.targets.append((f"wall ({label}, {what}): ≤ 20 ms p95", f"{ms(p95)} ms", p95 <= 0.020))
        self.raw["wall"] = raw
        text = [f"Limit {WALL_LIMIT} s (runlim takes whole seconds only: 1 s), grace {GRACE} s; {n} runs per tool, "
                "alternated. Measured from spawn to the moment the harness (a child subreaper, so orphans come "
                "to it) has no process of the tree left, minus the expected end (limit, plus grace when the "
                "command ignores SIGTERM). 'Survivors': processes still alive 0.3 s after the tool itself "
                "exited (killed by the harness; such runs are left out of the statistics).", "",
                table(["command", "tool", "expected end s", "median ms", "p95 ms", "min ms", "max ms", "survivors"],
                      rows)]
        self.md.append(("2. Wall-time limit precision", "\n".join(text)))

    # ---- 3. CPU-time limit -----------------------------------------------------------------------------

    def cpu_tools(self, cmd_for, with_prlimit=True):
        tools = []
        if with_prlimit:
            tools.append(("prlimit --cpu=1", lambda rep: [self.which["prlimit"], "--cpu=1"] + cmd_for(rep), True))
        tools.append(("runlim -t 1", lambda rep: [self.which["runlim"], "-t", "1"] + cmd_for(rep), False))
        for b in self.backends:
            tools.append((f"pynish {b}", lambda rep, b=b: self.py(b, "--json", "--cpu-time", "1s", "--grace",
                                                                   f"{int(GRACE * 1000)}ms") + cmd_for(rep), False))
        return tools

    def cpu_runs(self, tools, n):
        """Runs every tool n times, alternated; returns {label: [row dicts]}."""
        res = {label: [] for label, _, _ in tools}
        rep = os.path.join(self.work, "cpu.bin")
        for r in range(n):
            for k in range(len(tools)):
                label, make, execs = tools[(r + k) % len(tools)]
                if os.path.exists(rep):
                    os.unlink(rep)
                d = self.run(make(rep), deadline=20, want_err=True)
                # The tree's CPU from the kernel: everything reaped, less the supervisor's own (prlimit execs the
                # workload, so there the "tool" is the workload itself).
                tree = d["children_cpu_s"] - (0 if execs else max(d["tool_cpu_s"], 0))
                js = self.pynish_json(d) if label.startswith("pynish") else None
                res[label].append(dict(tree_cpu=tree, self_cpu=(self.report_value(rep) or 0) / 1e9,
                                       pynish_cpu=js["usage"]["cpu_time_s"] if js else None,
                                       verdict=js["verdict"] if js else d["code"],
                                       tool_cpu=None if execs else d["tool_cpu_s"],
                                       wall=d["dead_s"], survivors=d["survivors"]))
        return res

    def cpu_rows(self, name, res, limit=CPU_LIMIT):
        rows = []
        for label, ds in res.items():
            over = [d["tree_cpu"] - limit for d in ds]
            selfo = [d["self_cpu"] - limit for d in ds]
            pyo = [d["pynish_cpu"] - limit for d in ds if d["pynish_cpu"] is not None]
            surv = sum(d["survivors"] for d in ds)
            tc = [d["tool_cpu"] for d in ds if d["tool_cpu"] is not None]
            sup = f"{med(tc) * 1e3:.1f}" if tc else "— (execs the command)"
            rows.append([name, f"`{label}`", ms(med(over)), ms(max(over)), ms(min(over)), ms(med(selfo)),
                         ms(med(pyo)) if pyo else "—", sup,
                         f"{med([d['wall'] for d in ds]):.2f}", str(surv)])
        return rows

    CPU_HEADER = ["workload", "tool", "median over ms", "max ms", "min ms", "self-count median ms",
                  "pynish JSON median ms", "supervisor CPU ms", "wall s", "survivors"]

    def section_cpu(self):
        n = self.p["cpu"]
        log(f"3. CPU-time precision: {n} rounds")
        rows = []
        self.raw["cpu"] = {}
        for threads in (1, 2):
            res = self.cpu_runs(self.cpu_tools(lambda rep, t=threads: [self.load, "spin", str(t), rep]), n)
            self.raw["cpu"][threads] = res
            rows += self.cpu_rows(f"busy loop, {threads} thread{'s' if threads > 1 else ''}", res)
            bound = 0.020 if threads == 1 else 0.050
            for b in self.backends:
                over = [d["tree_cpu"] - CPU_LIMIT for d in res[f"pynish {b}"]]
                self.targets.append((f"CPU overshoot ({b}, {threads} thread{'s' if threads > 1 else ''}) ≤ "
                                     f"{bound * 1e3:.0f} ms median", f"{ms(med(over))} ms", med(over) <= bound))
        text = [f"Limit {CPU_LIMIT} s of CPU, {n} runs per tool, alternated. 'over' is the tree's CPU time as the "
                "kernel counted it (getrusage of everything reaped, less the supervisor's own CPU from "
                "/proc/PID/schedstat) minus the limit. 'self-count' is the workload's own "
                "CLOCK_PROCESS_CPUTIME_ID, stored every ~50 µs (a lower bound). pynish's JSON is shown only as a "
                "cross-check. prlimit's RLIMIT_CPU is per process and in whole seconds.", "",
                table(self.CPU_HEADER, rows)]
        self.md.append(("3. CPU-time limit precision", "\n".join(text)))

    # ---- 4. memory limit -------------------------------------------------------------------------------

    def section_memory(self):
        n = self.p["mem"]
        log(f"4. memory precision: {n} rounds")
        rep = os.path.join(self.work, "mem.bin")

        def alloc(ignore=False):
            a = [self.load, "alloc", str(ALLOC_MBPS), str(ALLOC_STEP_MB), "2000", rep]
            return a + (["ignore-term"] if ignore else [])

        runlim_limit = RUNLIM_MEM_MIB * 2 ** 20
        tools = [("prlimit --as=200000000", [self.which["prlimit"], f"--as={MEM_LIMIT}"] + alloc(), MEM_LIMIT),
                 (f"runlim -s {RUNLIM_MEM_MIB}", [self.which["runlim"], "-s", str(RUNLIM_MEM_MIB)] + alloc(),
                  runlim_limit)]
        for b in self.backends:
            tools.append((f"pynish {b}", self.py(b, "--json", "--memory", "200MB", "--grace",
                                                 f"{int(GRACE * 1000)}ms") + alloc(), MEM_LIMIT))
            tools.append((f"pynish {b}, TERM-ignoring allocator",
                          self.py(b, "--json", "--memory", "200MB", "--grace", f"{int(GRACE * 1000)}ms")
                          + alloc(True), MEM_LIMIT))
        res = {label: [] for label, _, _ in tools}
        for r in range(n):
            for k in range(len(tools)):
                label, argv, limit = tools[(r + k) % len(tools)]
                if os.path.exists(rep):
                    os.unlink(rep)
                g = self.new_mem_group()
                d = self.run(argv, cgroups=[g] if g else [], deadline=20, want_err=True)
                peak_group = self.drop_mem_group(g)
                js = self.pynish_json(d) if label.startswith("pynish") else None
                self_bytes, file_bytes = self.report_values(rep, 2)
                rss = max(d["maxrss_kb"] * 1024, self_bytes or 0)
                res[label].append(dict(rss=rss, anon=rss - (file_bytes or 0), group=peak_group,
                                       pynish_peak=js["usage"]["peak_memory_bytes"] if js else None,
                                       verdict=js["verdict"] if js else f"exit {d['code']}/sig {d['signal']}",
                                       wall=d["dead_s"], limit=limit, survivors=d["survivors"],
                                       self=self_bytes or 0))
        self.raw["memory"] = res
        rows = []
        runlim_rss = [d["rss"] - runlim_limit for d in res[f"runlim -s {RUNLIM_MEM_MIB}"]]
        for label, _, limit in tools:
            ds = res[label]
            rss = [d["rss"] - limit for d in ds]
            anon = [d["anon"] - limit for d in ds]
            grp = [d["group"] - limit for d in ds if d["group"] is not None]
            rate = med([d["self"] / d["wall"] for d in ds if d["wall"] > 0])
            verdicts = sorted({str(d["verdict"]) for d in ds})
            pyo = [d["pynish_peak"] - limit for d in ds if d["pynish_peak"] is not None]
            rows.append([f"`{label}`", f"{limit:,}", mb(med(rss)), mb(max(rss)), mb(med(anon)), mb(max(anon)),
                         mb(med(grp)) if grp else "n/a", mb(max(grp)) if grp else "n/a",
                         mb(med(pyo)) if pyo else "—", f"{rate / 1e6:.0f}", ", ".join(verdicts)])
            if label.startswith("pynish"):
                b = label.split()[1].rstrip(",")
                if b.startswith("cgroup"):
                    # The group's limit holds the kernel's charge: anonymous memory (file pages are charged to
                    # whoever read them first), so compare the anonymous peak.
                    extra = "extra stress case, beyond the issue: " if "TERM-ignoring" in label else ""
                    self.targets.append((f"{extra}memory overshoot 0 ({label}; anonymous peak, what the group is charged)",
                                         f"{mb(max(anon))} MB max", max(anon) <= 0))
                else:
                    # The proc backend limits the resident set (anonymous + file pages), so compare that.
                    bound = max(ALLOC_STEP_MB * 1e6, rate * MIN_SAMPLE_S)
                    extra = "extra stress case, beyond the issue: " if "TERM-ignoring" in label else ""
                    self.targets.append((f"{extra}memory overshoot ({label}; resident peak) ≤ one sampling period's "
                                         f"allocation ({bound / 1e6:.1f} MB) and better than runlim "
                                         f"({mb(med(runlim_rss))} MB)",
                                         f"{mb(med(rss))} MB median, {mb(max(rss))} MB max",
                                         med(rss) <= bound and med(rss) < med(runlim_rss)))
        text = [f"An allocator mapping and touching {ALLOC_STEP_MB} MB steps paced at {ALLOC_MBPS} MB/s (the page-fault "
                "cost of this machine caps the real rate: see 'rate') under a 200 MB limit; "
                f"{n} runs per tool, alternated. All columns are peaks minus the limit, from the kernel: "
                "'resident' is the allocator's peak resident set (ru_maxrss of the reaped tree, the counter behind "
                "VmHWM; or its own count of touched pages, if larger); 'anonymous' is that less the file-backed "
                "pages it had mapped from the start (binary, libc: charged to whichever group first read them), "
                "i.e. what a memory cgroup charges it; 'group' is memory.max_usage_in_bytes of a cgroup v1 group the "
                "benchmark made around the tool for the run (no limit): the tree's charge plus the supervisor's "
                "own. The proc backend limits the resident set, the cgroup backends the charge: each target "
                "compares the matching column. runlim takes whole MiB; prlimit limits address space.", "",
                table(["tool", "limit bytes", "resident over MB (median)", "max", "anonymous over MB (median)",
                       "max", "group over MB (median)", "max", "pynish JSON over MB", "rate MB/s", "ended as"],
                      rows)]
        if self.mem_root:
            text.append(f"\nGroups left behind below the benchmark's groups after the tool ended: {self.leaked_groups}.")
        self.md.append(("4. Memory limit precision", "\n".join(text)))

    # ---- 5. supervisor cost ----------------------------------------------------------------------------

    def section_supervise(self):
        s = self.p["supervise_s"]
        reps = self.p["supervise_reps"]
        log(f"5. supervisor cost: sleep {s:g}, {reps} rep(s) of every tool at once")
        sleep = [self.which["sleep"], f"{s:g}"]
        tools = [("timeout 100", [self.which["timeout"], "100"] + sleep),
                 ("runlim -t 100 -s 1000", [self.which["runlim"], "-t", "100", "-s", "1000"] + sleep)]
        for b in self.backends:
            tools.append((f"pynish {b}", self.py(b, "--memory", "1GB", "--cpu-time", "100s") + sleep))
        procs = []
        for rep in range(reps):
            for label, argv in tools:
                cmd = [self.harness, "run", "--hwm", "--deadline", str(s + 30), "--"] + argv
                procs.append((label, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)))
        res = {label: [] for label, _ in tools}
        for label, pr in procs:
            out, _ = pr.communicate()
            res[label].append(json.loads(out))
        self.raw["supervise"] = res
        rows = []
        for label, _ in tools:
            ds = res[label]
            cpu = med([d["tool_cpu_s"] for d in ds])
            wall = med([d["dead_s"] for d in ds])
            hwm = med([d["tool_hwm_kb"] for d in ds])
            share = cpu / wall * 100
            rows.append([f"`{label}`", f"{wall:.2f}", f"{cpu * 1e3:.2f}", f"{share:.3f} %", f"{hwm / 1024:.1f}"])
            if label.startswith("pynish"):
                self.targets.append((f"supervisor CPU ({label}) ≤ 0.2 % of a core during `sleep {s:g}`",
                                     f"{share:.3f} %", share <= 0.2))
        text = [f"Each tool supervises `sleep {s:g}` (pynish and runlim with a memory and a CPU limit set); "
                f"{reps} run(s) of every tool side by side. 'own CPU' is the supervisor's own CPU time from "
                "/proc/PID/schedstat of its zombie (start-up included); 'peak RSS' its VmHWM.", "",
                table(["tool", "wall s", "own CPU ms", "share of a core", "peak RSS MiB"], rows)]
        self.md.append(("5. Supervisor cost", "\n".join(text)))

    # ---- 6. scale --------------------------------------------------------------------------------------

    def start_idle(self, n):
        self.idle_proc = subprocess.Popen([self.load, "idle", str(n)], stdout=subprocess.PIPE,
                                          stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        line = self.idle_proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("idle processes did not start")
        time.sleep(2)  # let the fork storm's after-effects (reclaim, stats flushing) settle

    def stop_idle(self):
        try:
            os.killpg(self.idle_proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.idle_proc.wait()
        self.idle_proc = None
        # The children die of PR_SET_PDEATHSIG and go to the guard (a subreaper), which reaps them.
        deadline = time.time() + 10
        while time.time() < deadline and self.count_procs() > self.baseline_procs + 50:
            time.sleep(0.05)

    def count_procs(self):
        return sum(1 for e in os.listdir("/proc") if e.isdigit())

    def overhead_rows(self, name, samples):
        base = med(samples["timeout 100"])
        return [[name, f"`{label}`", ms(med(t), 3), f"{med(t) / base:.2f}×", ms(pct(t, 95), 3)]
                for label, t in samples.items()]

    def section_scale(self):
        self.raw["scale"] = {}
        self.baseline_procs = self.count_procs()
        n_idle, n_tree = self.p["idle"], self.p["tree"]
        log(f"6a. scale: {n_idle} unrelated idle processes")
        self.start_idle(n_idle)
        try:
            total = self.count_procs()
            ov = self.overhead(self.overhead_tools([self.which["true"]], with_prlimit=False, bare=False),
                               self.p["scale_overhead"], 3)
            cpu = self.cpu_runs(self.cpu_tools(lambda rep: [self.load, "spin", "1", rep]), self.p["scale_cpu"])
        finally:
            self.stop_idle()
        self.raw["scale"]["idle"] = dict(overhead=ov, cpu=cpu, processes=total)
        log(f"6b. scale: a tree of {n_tree} processes under supervision")
        tree_exit = [self.load, "tree", str(n_tree), "exit"]
        ov_tree = self.overhead(self.overhead_tools(tree_exit, with_prlimit=False), self.p["tree_overhead"], 2)
        cpu_tree = self.cpu_runs(self.cpu_tools(lambda rep: [self.load, "tree", str(n_tree), "spin", rep],
                                                with_prlimit=False), self.p["scale_cpu"])
        self.raw["scale"]["tree"] = dict(overhead=ov_tree, cpu=cpu_tree)
        o_rows = self.overhead_rows(f"`true`, {total} processes on the machine", ov)
        o_rows += self.overhead_rows(f"tree of {n_tree} that exits at once", ov_tree)
        c_rows = self.cpu_rows(f"1 thread, {total} processes on the machine", cpu)
        c_rows += self.cpu_rows(f"1 spinning + {n_tree - 1} sleeping processes", cpu_tree)
        if "proc" in self.backends:
            r = med(ov["pynish proc"]) / med(ov["timeout 100"])
            self.targets.append((f"overhead on `true` with {total} processes (proc) ≤ 1.1× timeout", f"{r:.2f}×",
                                 r <= 1.1))
        for b in self.backends:
            for nm, res in ((f"{total} processes on the machine", cpu), (f"tree of {n_tree}", cpu_tree)):
                over = med([d["tree_cpu"] - CPU_LIMIT for d in res[f"pynish {b}"]])
                self.targets.append((f"CPU overshoot ({b}, 1 thread, {nm}) ≤ 20 ms median", f"{ms(over)} ms",
                                     over <= 0.020))
        text = [f"(a) {n_idle} unrelated idle processes started by the benchmark ({total} on the machine in all); "
                f"(b) the supervised command is a tree of {n_tree} processes. Same measurements as 1 and 3 "
                f"({self.p['scale_overhead']} / {self.p['tree_overhead']} overhead rounds, {self.p['scale_cpu']} CPU "
                "runs per tool).", "", table(["case", "tool", "median ms", "ratio to timeout", "p95 ms"], o_rows),
                "", table(self.CPU_HEADER, c_rows)]
        self.md.append(("6. Scale", "\n".join(text)))

    # ---- 7. true figures on proc ---------------------------------------------------------------------------

    def members(self, root):
        """Every process of the tree below and including `root`, through the `children` files."""
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
        return found

    def sweep(self, pids, name):
        t = time.perf_counter()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    f.read()
            except OSError:
                pass
        return time.perf_counter() - t

    def section_figures(self):
        """Issue 19: what reading proportional set sizes costs on big trees, and proc's figures against a
        cgroup's on the same shared-memory trees."""
        n, sweeps, secs = self.p["tree"], self.p["sweeps"], self.p["figures_s"]
        trees = [(5, 100), (n, 10), (n, 100)]
        log(f"7. true figures: stat vs smaps_rollup sweeps ({sweeps} each, alternated), then pynish on each tree")
        cost_rows, raw = [], {}
        for members, mb in trees:
            p = subprocess.Popen([self.load, "share", str(members), str(mb)], stdin=subprocess.DEVNULL,
                                 start_new_session=True)
            try:
                deadline = time.time() + 60
                while len(self.members(p.pid)) < members and time.time() < deadline:
                    time.sleep(0.05)
                pids = self.members(p.pid)
                stat, pss = [], []
                for _ in range(sweeps):
                    stat.append(self.sweep(pids, "stat"))
                    pss.append(self.sweep(pids, "smaps_rollup"))
            finally:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            raw[f"sweep {members}x{mb}"] = dict(stat=stat, pss=pss)
            cost_rows.append([f"{len(pids)} processes sharing {mb} MB", ms(med(stat), 2), ms(med(pss), 2),
                              f"{med(pss) / med(stat):.0f}×"])
        run_rows = []
        for members, mb in trees:
            limit = "300MB" if members <= 5 else "1GB"
            peaks = {}
            for b in self.backends:
                d = self.run(self.py(b, "--json", "--memory", limit, "--wall-time", f"{secs:g}s") +
                             [self.load, "share", members, mb], hwm=True, deadline=secs + 60, want_err=True)
                rep_ = self.pynish_json(d) or {}
                usage = rep_.get("usage", {})
                peaks[b] = usage.get("peak_memory_bytes")
                raw[f"run {members}x{mb} {b}"] = dict(harness=d, report=rep_)
                share = d["tool_cpu_s"] / max(d["dead_s"], 1e-9) * 100
                run_rows.append([f"{members} × {mb} MB shared, `--memory {limit}`", f"`pynish {b}`",
                                 f"`{rep_.get('verdict')}`", mb_or_na(peaks[b]), f"{d['tool_cpu_s'] * 1e3:.0f}",
                                 f"{share:.1f} %"])
            if peaks.get("proc") and peaks.get("cgroup1") and members <= 5:
                r = peaks["proc"] / peaks["cgroup1"]
                self.targets.append((f"proc's peak on {members} × {mb} MB shared within 15 % of cgroup1's", f"{r:.2f}×",
                                     abs(r - 1) <= 0.15))
        self.raw["figures"] = raw
        text = [f"(a) The reads of one proc sample on a tree whose pages are shared copy-on-write: `/proc/PID/stat` "
                "of every member (the resident sum, read at every sample) against `/proc/PID/smaps_rollup` (the "
                f"proportional set sizes, a \"sweep\"), {sweeps} of each, alternated; median per sweep of the "
                "whole tree. A sweep walks the page tables, so its cost grows with the memory mapped: pynish reads "
                "one only to confirm a limit crossed, for a new peak, or once a second, and rations them by their "
                "own cost (at most 1/20 of its time, 1/2 to confirm a verdict).", "",
                table(["tree", "stat sweep ms", "smaps_rollup sweep ms", "ratio"], cost_rows), "",
                f"(b) pynish on the same trees for {secs:g} s (`--wall-time`), proc against the cgroup backends: the "
                "verdict, the peak each reports, and pynish's own CPU (start, tree creation and kill included). "
                "A memory group is also charged the kernel's memory for each process (page tables, kernel stack: "
                "0.1 to 0.3 MB each, more for a larger mapping), which no proportional set size shows: on 200 processes "
                "the two peaks part by that much. The peak target is set on the 5-process tree, where the shared "
                "pages dominate.", "",
                table(["tree", "tool", "verdict", "peak MB", "own CPU ms", "share of a core"], run_rows)]
        self.md.append(("7. True figures on proc", "\n".join(text)))

    # ---- report ------------------------------------------------------------------------------------------

    def version(self, argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "n/a"

    def machine(self):
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
        git = subprocess.run(["git", "-C", BENCH, "describe", "--always", "--dirty"], capture_output=True, text=True)
        revision = git.stdout.strip() or os.environ.get("BENCH_REVISION", "?")  # e.g. from an exported tree
        rows = [("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
                ("kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
                ("CPU", f"{cpu}, {os.cpu_count()} cores"), ("memory", f"{mem / 2 ** 30:.1f} GiB"),
                ("cgroups", self.cgroup_desc()),
                ("pynish", f"{self.version([self.pynish, '--version'])} (git {revision}), "
                           f"release build, {self.linkage()}; backends measured: {', '.join(self.backends)}; auto picks "
                           f"{self.auto_backend}"),
                ("timeout", self.version([self.which["timeout"], "--version"])),
                ("prlimit", self.version([self.which["prlimit"], "--version"])),
                ("runlim", self.version([self.which["runlim"], "--version"])),
                ("hyperfine", self.version([self.which["hyperfine"], "--version"]) if self.which["hyperfine"]
                 else "n/a"),
                ("gcc (helpers)", self.version(["gcc", "--version"])),
                ("load average", f"{self.load_start} (1, 5, 15 min) at start; 1-min load at each section's "
                                 f"start and at the end: {', '.join(f'{x:.1f}' for x in self.loads)}"),
                ("mode", "quick (smoke run: few samples, not for conclusions)" if self.args.quick else "full")]
        return table(["", ""], rows)

    def linkage(self):
        """'static' or 'dynamic' (an ELF with a PT_INTERP program header is loaded by ld.so)."""
        try:
            with open(self.pynish, "rb") as f:
                head = f.read(64)
                phoff, = struct.unpack_from("<Q", head, 0x20)
                phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
                f.seek(phoff)
                table = f.read(phentsize * phnum)
            kinds = {struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum)}
            return "dynamically linked" if 3 in kinds else "statically linked"
        except (OSError, struct.error):
            return "linkage unknown"

    def cgroup_desc(self):
        kinds = set()
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                fstype = parts[parts.index("-") + 1]
                if fstype in ("cgroup", "cgroup2"):
                    kinds.add("v1" if fstype == "cgroup" else "v2")
        return " + ".join(sorted(kinds)) or "none"

    def loadavg(self):
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])

    def render(self, elapsed):
        out = [f"# pynish benchmark results", "",
               "Produced by `bench/run.sh`" + (" --quick" if self.args.quick else "") +
               f" in {elapsed:.0f} s. Re-run it to reproduce; every number below comes from the same run.", "",
               "## Machine", "", self.machine(), ""]
        out += ["## Targets", "", table(["target", "measured", "met"],
                                        [[t, m, "n/a" if ok is None else ("yes" if ok else "**NO**")]
                                         for t, m, ok in self.targets]), ""]
        for title, body in self.md:
            out += [f"## {title}", "", body, ""]
        busy = max(self.loads + [float(self.load_start.split()[0])])
        if busy > (os.cpu_count() or 1):
            self.notes.insert(0, f"The machine was busy with other work during this run (1-minute load average up to "
                                 f"{busy:.1f} on {os.cpu_count()} cores): medians hold up, tails (p95, max) are "
                                 "inflated for every tool alike. Re-run on a quiet machine for clean tails.")
        if self.notes:
            out += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(out)

    def kept_sections(self):
        """What other benchmarks wrote at the end of the results file, so that a rerun of this one keeps it."""
        return _kept(self.args.output)

    def main(self):
        t0 = time.time()
        self.load_start = self.loadavg()
        self.loads = []
        self.detect_backends()
        self.setup_mem_group()
        for name, fn in (("default", self.section_default), ("overhead", self.section_overhead), ("wall", self.section_wall),
                         ("cpu", self.section_cpu), ("memory", self.section_memory),
                         ("supervise", self.section_supervise), ("scale", self.section_scale),
                         ("figures", self.section_figures)):
            if self.want(name):
                self.loads.append(float(self.loadavg().split()[0]))
                fn()
        self.loads.append(float(self.loadavg().split()[0]))
        text = self.render(time.time() - t0) + self.kept_sections()
        with open(self.args.output, "w") as f:
            f.write(text)
        os.makedirs(os.path.dirname(self.args.raw), exist_ok=True)
        with open(self.args.raw, "w") as f:
            json.dump(self.raw, f, default=str)
        print(text)
        log(f"wrote {self.args.output} and {self.args.raw} in {time.time() - t0:.0f} s")


#: Sections of RESULTS.md that other benchmarks write (bench/python/bench.py): kept as they are on a rewrite.
KEPT_SECTIONS = ("## Python API",)


def _kept(path):
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        return ""
    starts = [old.find("\n" + h) for h in KEPT_SECTIONS if old.find("\n" + h) >= 0]
    return "\n" + old[min(starts) + 1:] if starts else ""


def mb_or_na(x):
    return "n/a" if x is None else f"{x / 1e6:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", help="comma-separated subset: default,overhead,wall,cpu,memory,supervise,scale,figures")
    ap.add_argument("--harness", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--pynish", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--raw", required=True)
    args = ap.parse_args()
    bench = Bench(args)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        bench.main()
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
