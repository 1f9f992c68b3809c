"""What this platform can enforce: pynisher's ``supports`` family, answered for pynish."""

from __future__ import annotations

import sys

__all__ = [
    "contexts",
    "supports",
    "supports_walltime",
    "supports_cputime",
    "supports_memory",
    "supports_limit_decorator",
]

#: The start methods a limited function can be run with.
contexts: list[str] = ["fork", "spawn", "forkserver"] if not sys.platform.startswith("win") else ["spawn"]


def _linux() -> bool:
    # The pynish binary supervises Linux process trees only.
    return sys.platform.startswith("linux")


def supports_walltime() -> bool:
    """Whether a wall-time limit is enforced here."""
    return _linux()


def supports_cputime() -> bool:
    """Whether a CPU-time limit is enforced here."""
    return _linux()


def supports_memory() -> bool:
    """Whether a memory limit is enforced here."""
    return _linux()


def supports_limit_decorator() -> bool:
    """Whether ``@restricted`` works here."""
    return _linux()


def supports(limit: str) -> bool:
    """Whether ``limit`` ("wall_time", "cpu_time", "memory", "decorator", and pynish's "cpus" and "cpu_quota") is
    supported on this system. "cpu_quota" asks pynish once (it needs a cgroup with a CPU controller it may write,
    on the backend ``PYNISH_BACKEND`` names, else the one it would take): the answer ``limit(cpu_quota=...)``
    would get, which refuses a quota pynish cannot hold rather than run the call unthrottled."""
    mapping = {
        "wall_time": supports_walltime,
        "cpu_time": supports_cputime,
        "memory": supports_memory,
        "decorator": supports_limit_decorator,
        "cpus": _supports_cpus,
        "cpu_quota": _supports_cpu_quota,
    }
    check = mapping.get(limit.lower())
    if check is None:
        raise ValueError(f"Not a known feature, must be one of {list(mapping.keys())}")
    return check()


def _supports_cpus() -> bool:
    return _linux()


def _supports_cpu_quota() -> bool:
    from . import _cpus

    if not _linux():
        return False
    try:
        _cpus.check_quota(1.0, None)
    except ValueError:
        return False
    return True


def nearest_start_method(name: str) -> str:
    """The start method pynish uses for multiprocessing's start method ``name``: the same for fork, forkserver
    and spawn; for another library's (loky's "loky" and "loky_init_main", any other), the nearest of them:
    forkserver for a name that says so, fork for one that starts with "fork", else spawn, a fresh interpreter,
    which is what such methods start (loky's) and works wherever the caller runs."""
    if name in contexts:
        return name
    if "forkserver" in name:
        return "forkserver"
    if name.startswith("fork"):
        return "fork"
    return "spawn"
