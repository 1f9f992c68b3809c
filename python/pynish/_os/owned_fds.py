"""Descriptors that belong to the calling process alone, closed in every child forked through Python
(``os.register_at_fork``): a child another thread forks meanwhile (a multiprocessing worker, a fork-context
call's processes) would otherwise hold them for as long as it lives.

- a call's folder lock (``folder``): held by a child, a dead caller's folder would escape the sweep;
- a forkserver call's "ended" pipe (``_call.launch``): its write end held by a child, the caller would not see pynish
  end, and the call would return only once that child exited.

Close-on-exec is not enough: a forked child that does not exec keeps every descriptor.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not from typing: a fresh child does not pay for importing it
if TYPE_CHECKING:
    from typing import Set

#: Added once open, dropped before closed: a child forked at any moment closes only descriptors of this set.
_held: Set[int] = set()


def hold(fd: int) -> int:
    """Marks ``fd`` as this process's alone; returns it."""
    _held.add(fd)
    return fd


def close(fd: int) -> None:
    """Closes a descriptor that ``hold`` marked."""
    _held.discard(fd)
    os.close(fd)


def _forget_in_child() -> None:
    # Closing a copy does not touch the parent's: its lock stays taken, its pipe end open.
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
