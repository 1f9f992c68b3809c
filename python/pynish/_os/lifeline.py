"""The caller's lifeline: one pipe per calling process, whose read end every pynish of its calls watches
(``--lifeline-fd``). Only the calling process holds the write end; when it dies, however it dies (SIGKILL, the OOM
killer, a signal's default action), the kernel closes it and each pynish ends its call's whole tree as on a
SIGTERM. PR_SET_PDEATHSIG could not do this: it fires when the *thread* that forked ends, and calls come from
threads.

The write end must stay in its owner alone: a forked child (a call's process, a multiprocessing worker) that kept
a copy would keep the calls alive after the caller died. It is close-on-exec, and closed in every child forked
through Python (``os.register_at_fork``).
"""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False  # not from typing: a fresh child does not pay for importing it
if TYPE_CHECKING:
    from typing import Optional

_lock = threading.Lock()
_owner: Optional[int] = None
_read: Optional[int] = None
_write: Optional[int] = None


def read_end() -> int:
    """The read end of this process's lifeline, made on first use (and again in a forked child that calls)."""
    global _owner, _read, _write
    with _lock:
        if _owner != os.getpid() or _read is None:
            _read, _write = os.pipe2(os.O_CLOEXEC)
            _owner = os.getpid()
        return _read


def flags(fd: int) -> list:
    """pynish's flags for a lifeline whose read end pynish holds as ``fd``."""
    return ["--lifeline-fd", str(fd)]


def _forget_in_child() -> None:
    # The write end is the parent's: closed here at once. The read end is left open (close-on-exec) since the
    # fork context's first child passes it on to pynish; this process makes its own lifeline if it calls.
    global _lock, _owner, _read, _write
    _lock = threading.Lock()  # another thread may have held it at the fork
    if _write is not None:
        try:
            os.close(_write)
        except OSError:
            pass
    _owner = _read = _write = None


os.register_at_fork(after_in_child=_forget_in_child)
