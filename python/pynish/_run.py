"""``pynish.run``: a command under limits, with the report as a typed result."""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from typing import Any, Mapping, Optional, Sequence, Union

from ._call.binary import binary
from ._cpus import Cpus, cpu_args, cpu_list, cpu_quota_value
from ._report import Report, parse_report

__all__ = ["run", "Duration", "Size"]

#: Seconds, or the CLI's text ("250ms", "1.5h").
Duration = Union[int, float, str]
#: Bytes, or the CLI's text ("500MB" is 500×10⁶ bytes, "500MiB" 500×2²⁰).
Size = Union[int, str]


def cli_duration(value: Duration, name: str) -> str:
    """A duration as the CLI takes it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"`{name}` must be seconds (a number) or a duration text like '1.5h', not {value!r}")
    if isinstance(value, str):
        return value
    if not value > 0:
        raise ValueError(f"`{name}` {value!r} must be greater than zero")
    return f"{value:.9f}"


def cli_size(value: Size, name: str, zero: bool = False) -> str:
    """A size as the CLI takes it (``zero``: 0 is a limit too, as ``file_size=0`` or ``core_size=0``)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"`{name}` must be bytes (an int) or a size text like '500MB', not {value!r}")
    if isinstance(value, str):
        return value
    if zero and value < 0:
        raise ValueError(f"`{name}` {value!r} must be zero or more")
    if not zero and not value > 0:
        raise ValueError(f"`{name}` {value!r} must be greater than zero")
    return str(value)


def rlimit_args(
    open_files: Optional[int] = None,
    file_size: Optional[Size] = None,
    stack: Optional[Size] = None,
    core_size: Optional[Size] = None,
) -> list[str]:
    """The pynish flags for the per-process rlimits, which the kernel holds in every process of the tree:
    ``--open-files`` (RLIMIT_NOFILE), ``--file-size`` (RLIMIT_FSIZE), ``--stack`` (RLIMIT_STACK), ``--core-size``
    (RLIMIT_CORE)."""
    args: list[str] = []
    if open_files is not None:
        if isinstance(open_files, bool) or not isinstance(open_files, int) or open_files < 1:
            raise ValueError(f"`open_files` {open_files!r} must be an int >= 1")
        args += ["--open-files", str(open_files)]
    if file_size is not None:
        args += ["--file-size", cli_size(file_size, "file_size", zero=True)]
    if stack is not None:
        args += ["--stack", cli_size(stack, "stack")]
    if core_size is not None:
        args += ["--core-size", cli_size(core_size, "core_size", zero=True)]
    return args


def limit_args(
    wall_time: Optional[Duration] = None,
    cpu_time: Optional[Duration] = None,
    memory: Optional[Size] = None,
    processes: Optional[int] = None,
    grace: Optional[Duration] = None,
    signal: Optional[Union[str, int]] = None,
    memory_kind: Optional[str] = None,
    backend: Optional[str] = None,
    label: Optional[str] = None,
) -> list[str]:
    """The pynish flags for these limits."""
    args: list[str] = []
    # An infinite time is no limit (pynisher runs wall_time=math.inf unlimited; the CLI has no word for it).
    if wall_time is not None and wall_time != math.inf:
        args += ["--wall-time", cli_duration(wall_time, "wall_time")]
    if cpu_time is not None and cpu_time != math.inf:
        args += ["--cpu-time", cli_duration(cpu_time, "cpu_time")]
    if memory is not None:
        args += ["--memory", cli_size(memory, "memory")]
    if processes is not None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"`processes` {processes!r} must be an int >= 1")
        args += ["--processes", str(processes)]
    if grace is not None:
        args += ["--grace", cli_duration(grace, "grace") if grace != 0 else "0s"]
    if signal is not None:
        args += ["--signal", str(signal)]
    if memory_kind is not None:
        args += ["--memory-kind", memory_kind]
    if backend is not None:
        args += ["--backend", backend]
    if label is not None:
        args.append(f"--label={label}")  # one argument: a label that starts with "-" is data, not a flag
    return args


def run(
    argv: Sequence[str],
    *,
    wall_time: Optional[Duration] = None,
    cpu_time: Optional[Duration] = None,
    memory: Optional[Size] = None,
    processes: Optional[int] = None,
    grace: Optional[Duration] = None,
    signal: Optional[Union[str, int]] = None,
    memory_kind: Optional[str] = None,
    backend: Optional[str] = None,
    label: Optional[str] = None,
    open_files: Optional[int] = None,
    file_size: Optional[Size] = None,
    stack: Optional[Size] = None,
    core_size: Optional[Size] = None,
    cpus: Optional[Cpus] = None,
    cpu_quota: Optional[float] = None,
    preserve_status: bool = False,
    cwd: Optional[Union[str, "os.PathLike[str]"]] = None,
    env: Optional[Mapping[str, str]] = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
) -> Report:
    """Runs ``argv`` under pynish with these limits for its whole process tree, and returns the report.

    ``stdin``/``stdout``/``stderr`` are passed to ``subprocess.run`` (a file, a descriptor, ``subprocess.DEVNULL``).

    Limits take numbers (seconds, bytes) or the CLI's text (``"1.5h"``, ``"500MB"``). ``open_files``,
    ``file_size``, ``stack`` and ``core_size`` are the CLI's per-process rlimits (``--open-files``, ...), set in
    every process of the tree; a member killed by SIGXFSZ past ``file_size`` is verdict ``"file_size"``. ``cpus``
    (``"0,2-3"`` or ``[0, 2, 3]``) and ``cpu_quota`` (cores) are ``--cpus`` and ``--cpu-quota``. The
    command's output goes where ``stdout``/``stderr`` say (inherited by default). Bad limits raise
    ``ValueError``/``TypeError`` before anything runs; a command that cannot be started gives a report with
    ``verdict == "spawn_error"``.
    """
    if isinstance(argv, (str, bytes)) or not argv:
        raise ValueError("`argv` must be a non-empty sequence of arguments, e.g. ['make', 'test']")
    flags = limit_args(wall_time, cpu_time, memory, processes, grace, signal, memory_kind, backend, label)
    flags += rlimit_args(open_files, file_size, stack, core_size)
    flags += cpu_args(
        None if cpus is None else cpu_list(cpus), None if cpu_quota is None else cpu_quota_value(cpu_quota)
    )
    if preserve_status:
        flags.append("--preserve-status")
    with tempfile.TemporaryDirectory(prefix="pynish-run-") as private:
        path = os.path.join(private, "report.json")
        cmd = [binary(), "--quiet", "--report", path, *flags, "--", *map(os.fspath, argv)]
        proc = subprocess.run(
            cmd, cwd=cwd, env=None if env is None else dict(env), stdin=stdin, stdout=stdout, stderr=stderr
        )
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            raise ValueError(
                f"pynish refused these arguments (exit {proc.returncode}); its one-line reason is on stderr"
            ) from None
        return parse_report(text)
