"""pynish for Python: pynisher's API on the pynish supervisor, and ``pynish.run`` for commands.

``import pynish as pynisher`` runs a program written for pynisher 1.x unchanged; the limits then hold for the
function's whole process tree (cgroups where available), and the exception names the limit that was hit.

Layers, top to bottom; a module imports only from its own layer or one below (``python/tests/test_layers.py``):

- the public face, ``pynish/*.py``: ``limit``, ``Pynisher``, ``restricted`` (``_limit``), ``Executor``
  (``_executor``, its tasks and threads in ``_tasks``), ``run`` (``_run``), the report (``_report``), ``supports``
  (``_support``), ``Pynisher._process`` (``_process``), the CPU knobs ``cpus`` and ``cpu_quota`` (``_cpus``);
- the call, ``pynish/_call/``: one call launched in its context (``launch``), the child's side (``child``), the
  forkserver, the caller's main module (``mainmodule``), the pipes (``stream``), the native fork helper
  (``native``), the binary (``binary``);
- the OS plumbing, ``pynish/_os/``: a call's folder, the caller's lifeline, terminating signals (``signals``), the
  descriptors the caller alone owns (``owned_fds``), ``poll``, a fresh interpreter's flags (``interpreter``), the
  working directory at import (``startdir``).

``pynish.exceptions`` stands below all three: it imports nothing of pynish, so every layer raises its classes, and
pickled exceptions name it.
"""

from __future__ import annotations

# Taken now, before the caller may change directory (see ``_os.startdir``).
from ._os import startdir as _startdir  # noqa: F401
from ._support import (
    contexts,
    supports,
    supports_cputime,
    supports_limit_decorator,
    supports_memory,
    supports_walltime,
)
from .exceptions import (
    CpuTimeoutException,
    FileSizeLimitException,
    MemoryLimitException,
    PynisherException,
    SoftTimeLimit,
    TimeoutException,
    WallTimeoutException,
)

# Not from typing: importing it costs a fresh child interpreter milliseconds on every call; type checkers know
# the name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._executor import Executor, Future
    from ._limit import EMPTY, Pynisher, limit, restricted
    from ._report import Enforcement, Escalation, Limits, Report, Usage
    from ._run import run

__all__ = [
    "Pynisher",
    "EMPTY",
    "limit",
    "restricted",
    "CpuTimeoutException",
    "FileSizeLimitException",
    "MemoryLimitException",
    "PynisherException",
    "SoftTimeLimit",
    "TimeoutException",
    "WallTimeoutException",
    "contexts",
    "supports",
    "supports_walltime",
    "supports_cputime",
    "supports_memory",
    "supports_limit_decorator",
    "run",
    "Executor",
    "Future",
    "Report",
    "Limits",
    "Usage",
    "Escalation",
    "Enforcement",
]

# The rest loads on first use: a fresh child that runs a limited function imports this package too, and every
# millisecond of its start is paid on every call.
_LAZY = {
    "EMPTY": "_limit",
    "Pynisher": "_limit",
    "limit": "_limit",
    "restricted": "_limit",
    "run": "_run",
    "Executor": "_executor",
    "Future": "_executor",
    "Report": "_report",
    "Limits": "_report",
    "Usage": "_report",
    "Escalation": "_report",
    "Enforcement": "_report",
}


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pynish' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
