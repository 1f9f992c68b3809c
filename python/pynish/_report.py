"""pynish's JSON report (schema 1, and schema 2 which only adds fields) as typed, frozen dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Tuple

__all__ = ["Report", "Limits", "Usage", "Escalation", "Enforcement", "parse_report"]


@dataclass(frozen=True)
class Limits:
    """What was asked, in base units; ``None`` means unlimited."""

    wall_time_s: Optional[float]
    cpu_time_s: Optional[float]
    memory_bytes: Optional[int]
    memory_kind: str
    processes: Optional[int]
    grace_s: float
    signal: str
    #: the per-process rlimits asked (schema 2): RLIMIT_NOFILE, RLIMIT_FSIZE, RLIMIT_STACK, RLIMIT_CORE
    open_files: Optional[int] = None
    file_size_bytes: Optional[int] = None
    stack_bytes: Optional[int] = None
    core_size_bytes: Optional[int] = None
    #: the CPUs asked, as a CPU list ("0,2-3"), and the CPU quota in cores (schema 2)
    cpus: Optional[str] = None
    cpu_quota: Optional[float] = None


@dataclass(frozen=True)
class Usage:
    """What the whole tree used (ended members included)."""

    wall_time_s: float
    cpu_user_s: float
    cpu_system_s: float
    cpu_time_s: float
    peak_memory_bytes: int
    max_processes: int
    #: bytes the tree read from / sent to storage, ended members included (schema 2; None where not counted)
    io_read_bytes: Optional[int] = None
    io_write_bytes: Optional[int] = None


@dataclass(frozen=True)
class Escalation:
    """What pynish sent to end the tree, and when (seconds since the start)."""

    first_signal: Optional[str]
    first_signal_at_s: Optional[float]
    signalled_processes: int
    sigkill_sent: bool
    sigkill_at_s: Optional[float]
    killed_processes: int


@dataclass(frozen=True)
class Enforcement:
    """Per limit, the mechanism that held it (``timer``, ``proc``, ``rlimit``, ``cgroup1``, ``cgroup2``)."""

    wall_time: Optional[str]
    cpu_time: Optional[str]
    memory: Optional[str]
    processes: Optional[str]
    #: ``rlimit`` when a file size limit was asked (schema 2)
    file_size: Optional[str] = None
    #: how the CPU knobs are held (schema 2): ``affinity`` or ``cpuset`` for cpus, the backend for cpu_quota
    cpus: Optional[str] = None
    cpu_quota: Optional[str] = None


@dataclass(frozen=True)
class Report:
    """One supervised run, as pynish's JSON report (schema 1 or 2) tells it; schema 2's fields are None in a
    schema-1 report."""

    schema: int
    label: Optional[str]
    #: ``completed``, ``signaled``, ``wall_time``, ``cpu_time``, ``memory``, ``processes`` or ``spawn_error``
    verdict: str
    #: pynish's own exit status
    exit_code: int
    command_exit_code: Optional[int]
    signal: Optional[str]
    received_signal: Optional[str]
    limits: Limits
    usage: Usage
    escalation: Escalation
    backend: str
    enforcement: Enforcement
    command: Tuple[str, ...]
    pid: Optional[int]
    error: Optional[str]
    #: when the command was started, RFC 3339 in UTC (schema 2)
    started_at: Optional[str] = None
    #: the machine the run was on (schema 2)
    hostname: Optional[str] = None

    @property
    def limit_hit(self) -> bool:
        """Whether the run ended on a limit."""
        return self.verdict in ("wall_time", "cpu_time", "memory", "processes", "file_size")


def _only(cls: Any, data: dict) -> Any:
    # Fields a later schema adds are ignored rather than refused.
    names = cls.__dataclass_fields__.keys()
    return cls(**{k: v for k, v in data.items() if k in names})


def parse_report(text: str) -> Report:
    """Parses one report line."""
    data = json.loads(text)
    if data.get("schema") not in (1, 2):
        raise ValueError(f"unknown pynish report schema {data.get('schema')!r}")
    data["limits"] = _only(Limits, data["limits"])
    data["usage"] = _only(Usage, data["usage"])
    data["escalation"] = _only(Escalation, data["escalation"])
    data["enforcement"] = _only(Enforcement, data["enforcement"])
    data["command"] = tuple(data["command"])
    return _only(Report, data)
