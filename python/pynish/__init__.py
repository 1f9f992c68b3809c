"""pynish for Python: pynisher's API on the pynish supervisor, and ``pynish.run`` for commands.

``import pynish as pynisher`` runs a program written for pynisher 1.x unchanged; the limits then hold for the
function's whole process tree (cgroups where available), and the exception names the limit that was hit.
"""

from __future__ import annotations

from ._limit import EMPTY, Pynisher, limit, restricted
from ._report import Enforcement, Escalation, Limits, Report, Usage
from ._run import run
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
    MemoryLimitException,
    PynisherException,
    TimeoutException,
    WallTimeoutException,
)

__all__ = [
    "Pynisher",
    "EMPTY",
    "limit",
    "restricted",
    "CpuTimeoutException",
    "MemoryLimitException",
    "PynisherException",
    "TimeoutException",
    "WallTimeoutException",
    "contexts",
    "supports",
    "supports_walltime",
    "supports_cputime",
    "supports_memory",
    "supports_limit_decorator",
    "run",
    "Report",
    "Limits",
    "Usage",
    "Escalation",
    "Enforcement",
]
