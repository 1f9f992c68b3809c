"""``Pynisher._process``: the process that runs a call's function, as pynisher 1.x keeps it.

A ``psutil.Process`` when psutil can be imported (pynisher's own type), else ``Handle``, a small stand-in with
what code that watches a call reads: ``pid``, ``is_running()`` and ``children(recursive=True)``. The function's
process announces its pid on a pipe as soon as it exists (before it runs anything), so the handle is made
while the process lives, and ``is_running()`` is false once the call has returned.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

__all__ = ["Handle", "handle", "prepare", "read_pid"]


def read_pid(fd: int) -> Optional[int]:
    """The pid written (with a newline) on ``fd`` by the function's process, or None if every writer closed it
    without one (the call never got that far). Closes ``fd``."""
    data = b""
    try:
        # Up to the newline, not EOF: in the spawn context pynish holds a copy of the write end until it exits.
        while not data.endswith(b"\n"):
            more = os.read(fd, 32)
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    try:
        return int(data)
    except ValueError:
        return None


def _stat(pid: int) -> Optional[List[str]]:
    # Fields after the command name (which may hold spaces and parentheses).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


class Handle:
    """A process known by pid and start time (so that a reused pid is not taken for it), read from /proc."""

    def __init__(self, pid: int, started: Optional[str] = None) -> None:
        self.pid = pid
        fields = _stat(pid)
        self._started = started if started is not None else (fields[19] if fields else None)

    def is_running(self) -> bool:
        fields = _stat(self.pid)
        return fields is not None and fields[0] not in ("Z", "X") and fields[19] == self._started

    def children(self, recursive: bool = False) -> List["Handle"]:
        if not self.is_running():
            return []
        parents = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                fields = _stat(int(name))
                if fields is not None and fields[0] not in ("Z", "X"):
                    parents[int(name)] = (int(fields[1]), fields[19])
        found: List[Handle] = []
        below = [self.pid]
        while below:
            parent = below.pop()
            for pid, (ppid, started) in parents.items():
                if ppid == parent:
                    found.append(Handle(pid, started))
                    if recursive:
                        below.append(pid)
        return found

    def __repr__(self) -> str:
        return f"pynish.Handle(pid={self.pid}, running={self.is_running()})"


_psutil: Any = None


def prepare() -> None:
    """Imports psutil, if it is there, before a call starts: a short function's process may be gone by the time a
    first import (milliseconds) would have finished."""
    global _psutil
    if _psutil is None:
        try:
            import psutil

            _psutil = psutil
        except ImportError:
            _psutil = False


def handle(pid: Optional[int]) -> Any:
    """A psutil.Process for ``pid`` when psutil imports and the process still exists, else a ``Handle``."""
    if pid is None:
        return None
    prepare()
    if not _psutil:
        return Handle(pid)
    try:
        return _psutil.Process(pid)
    except _psutil.Error:
        return Handle(pid)
