"""The CPU knobs of a call or a command: ``cpus`` (the CPUs the tree may run on, pynish's ``--cpus LIST``) and
``cpu_quota`` (the cores' worth of time per second the tree may use together, ``--cpu-quota CORES``), checked as
pynish checks them and turned into its flags. ``pynish.limit`` checks them when it is made, so that a value pynish
would refuse at every call is a ``ValueError`` at once."""

from __future__ import annotations

import math
import os
import re
import subprocess
from functools import lru_cache
from typing import Iterable, Optional, Tuple, Union

from ._call.binary import binary

__all__ = ["Cpus", "cpu_list", "cpu_quota_value", "cpu_args", "format_cpu_list", "check_allowed", "check_quota"]

#: What ``cpus`` takes: a CPU list as taskset -c and pynish's ``--cpus`` read it ("0,2-3"), or the CPUs' numbers.
Cpus = Union[str, Iterable[int]]

_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def cpu_list(value: Cpus, name: str = "cpus") -> Tuple[int, ...]:
    """``value`` as the sorted CPU numbers it names, without repeats: ``"0,2-3"`` or ``[0, 2, 3]`` is
    ``(0, 2, 3)``. An empty list, a negative or non-whole number, a reversed range is a ``ValueError``."""
    if isinstance(value, str):
        cpus: set = set()
        for part in value.split(","):
            match = _PART.match(part)
            first, last = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (1, 0)
            if first > last:
                raise ValueError(f"`{name}` {value!r} is not a CPU list such as '0,2-3'")
            cpus.update(range(first, last + 1))
        return tuple(sorted(cpus))
    if isinstance(value, (bytes, bytearray)) or not hasattr(value, "__iter__"):
        raise ValueError(f"`{name}` {value!r} must be a CPU list such as '0,2-3' or CPU numbers such as [0, 2, 3]")
    numbers = list(value)
    for cpu in numbers:
        if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
            raise ValueError(f"`{name}` {value!r}: {cpu!r} is not a CPU number (a whole number >= 0)")
    if not numbers:
        raise ValueError(f"`{name}` {value!r} names no CPU")
    return tuple(sorted(set(numbers)))


def format_cpu_list(cpus: Iterable[int]) -> str:
    """Sorted CPU numbers as taskset and pynish print them: ``(0, 1, 3)`` is ``"0-1,3"``."""
    parts = []
    run: list = []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [cpu]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def cpu_quota_value(value: Union[float, int], name: str = "cpu_quota") -> float:
    """``value`` as cores (``0.5``: half of one CPU's time each second); not a positive finite number is a
    ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` {value!r} must be a number of CPUs such as 0.5 or 2")
    cores = float(value)
    if not (math.isfinite(cores) and cores > 0):
        raise ValueError(f"`{name}` {value!r} must be a positive number of CPUs such as 0.5 or 2")
    return cores


def cpu_args(cpus: Optional[Tuple[int, ...]], cpu_quota: Optional[float]) -> list:
    """pynish's flags for checked values: ``--cpus LIST``, ``--cpu-quota CORES``."""
    args: list = []
    if cpus is not None:
        args += ["--cpus", format_cpu_list(cpus)]
    if cpu_quota is not None:
        args += ["--cpu-quota", repr(cpu_quota)]
    return args


def check_allowed(cpus: Tuple[int, ...]) -> None:
    """A CPU this process may not run on (offline, outside its cpuset or affinity) is a ``ValueError``: pynish,
    which runs with this process's CPUs, would refuse it at every call (exit 125)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is None:
        return
    allowed = getaffinity(0)
    outside = [cpu for cpu in cpus if cpu not in allowed]
    if outside:
        raise ValueError(
            f"`cpus`: CPU {outside[0]} is not online or not allowed to this process (allowed here:"
            f" {format_cpu_list(allowed)})"
        )


def check_quota(cpu_quota: float, backend: Optional[str]) -> None:
    """Asks pynish, once per process and backend, whether it can throttle a tree here (a CPU controller in a cgroup
    it may write, ``pynish check``'s ``cpu_quota`` line): if not, a ``ValueError`` with pynish's reason, since it
    would refuse every call (exit 125) rather than run it unthrottled."""
    refusal = _quota_refusal(binary(), cpu_quota, backend, os.environ.get("PYNISH_BACKEND"))
    if refusal is not None:
        raise ValueError(f"`cpu_quota` {cpu_quota!r} cannot be held here: {refusal}")


@lru_cache(maxsize=None)
def _quota_refusal(
    program: str, cpu_quota: float, backend: Optional[str], env_backend: Optional[str]
) -> Optional[str]:
    """pynish's one-line reason for refusing ``--cpu-quota`` on this backend, or None when it holds it. A run of
    ``true`` under the quota: the same checks and the same group set-up as a call, a few milliseconds once."""
    cmd = [program, "--quiet", "--cpu-quota", repr(cpu_quota)]
    if backend is not None:
        cmd += ["--backend", backend]
    cmd += ["--", "true"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 125:
        return None
    reason = proc.stderr.decode("utf-8", "replace").strip()
    return reason.removeprefix("pynish: ") or f"pynish refused --cpu-quota (exit 125) with {' '.join(cmd)}"
