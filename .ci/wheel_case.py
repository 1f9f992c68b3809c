"""The installed package's case, run by .ci/test-wheel with the interpreter it installed pynish into.

Checks, as a user would meet them: the `pynish` command of the package ends a command at its wall-time limit
(exit 124, a JSON report saying so), and `pynish.limit` gives the function's result, a MemoryLimitException and a
WallTimeoutException in each of fork, forkserver and spawn. One line per context on stdout: ``CONTEXT ok``.

    python wheel_case.py --helper {loads,absent}

``--helper loads``: the fork helper the binary carries must load here (where the wheel's glibc promise holds).
``--helper absent``: it must not (PYNISH_BIN names a pynish whose helper cannot load or is missing), and every
context must still work: the fork context then takes the Python path (two forks).
``--helper any``: either (a platform where the helper is not tested yet: musl); every context must work.
Exits 1 with the reason on the first failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import pynish
from pynish._call import binary, native

CONTEXTS = ("fork", "forkserver", "spawn")
#: A limit the function passes by far, and one it crosses by far: no timing is close.
WALL_LIMIT = 1
WALL_SLEEP = 30
MEMORY_LIMIT = (200, "MB")
MEMORY_ALLOC = 2 << 30


def double(x: int) -> int:
    return 2 * x


def sleep_long() -> None:
    time.sleep(WALL_SLEEP)


def allocate() -> int:
    block = bytearray(MEMORY_ALLOC)
    return len(block)


def fail(message: str) -> None:
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def check_cli(program: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [program, "--wall-time", "1s", "--json", "--", "sleep", "5"], stderr=subprocess.PIPE, check=False
    )
    took = time.monotonic() - started
    if done.returncode != 124:
        fail(f"pynish --wall-time 1s -- sleep 5 exited {done.returncode}, not 124")
    # --json: the report is stderr's last line (stdout is the command's).
    report = json.loads(done.stderr.decode().splitlines()[-1])
    if report.get("verdict") != "wall_time":
        fail(f"the report's verdict is {report.get('verdict')!r}, not 'wall_time': {report}")
    if took >= 5:
        fail(f"pynish --wall-time 1s took {took:.1f} s: sleep 5 was not ended")
    print(f"cli ok: exit 124, verdict wall_time, {took:.1f} s")


def check_context(context: str) -> None:
    got = pynish.limit(double, context=context, wall_time=60)(21)
    if got != 42:
        fail(f"{context}: the function returned {got!r}, not 42")
    try:
        pynish.limit(allocate, context=context, memory=MEMORY_LIMIT, wall_time=60)()
    except pynish.MemoryLimitException:
        pass
    else:
        fail(f"{context}: allocating {MEMORY_ALLOC} bytes under {MEMORY_LIMIT} raised no MemoryLimitException")
    started = time.monotonic()
    try:
        pynish.limit(sleep_long, context=context, wall_time=WALL_LIMIT)()
    except pynish.WallTimeoutException:
        pass
    else:
        fail(f"{context}: sleeping {WALL_SLEEP} s under wall_time={WALL_LIMIT} raised no WallTimeoutException")
    took = time.monotonic() - started
    if took >= WALL_SLEEP:
        fail(f"{context}: the wall-time limit took {took:.1f} s to end the function")
    print(f"{context} ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--helper", choices=("loads", "absent", "any"), required=True)
    expect = parser.parse_args().helper
    program = binary.binary()
    print(f"python {sys.version.split()[0]}, pynish {pynish.__file__}, binary {program}")
    loaded = native.helper(program) is not None
    if expect != "any" and loaded != (expect == "loads"):
        fail(f"the fork helper {'loaded' if loaded else 'did not load'} (expected: {expect})")
    print(f"fork helper: {'loaded' if loaded else 'not loaded, the Python path'}")
    check_cli(program)
    for context in CONTEXTS:
        check_context(context)


if __name__ == "__main__":
    main()
