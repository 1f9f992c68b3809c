"""A catchable terminating signal to a caller with calls running: the calls end first, then the signal acts as
it would have without pynish.

While a call runs in the main thread, SIGTERM, SIGHUP and SIGINT (unless the caller ignores them, and SIGINT
only when the caller replaced Python's KeyboardInterrupt, which ``_call.launch.wait`` already handles)
get a handler that passes the signal to every running call's pynish, waits until each call's tree is gone
(through the grace period), and then runs the caller's own handler; or, for a signal at its default action,
removes the calls' folders and makes the caller die of the signal. Only the main thread may set handlers: calls
from other threads are ended too when the main thread has a call running, and otherwise by the lifeline once the
caller has died.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Dict, List, Tuple

from . import poll

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
#: How long the handler waits for the calls' trees at most (pynish ends them within its grace period).
PATIENCE_S = 10.0

_lock = threading.RLock()  # re-entered when the handler runs in the main thread while it holds the lock
_running: Dict[int, Tuple[Any, Any]] = {}


def started(launched: Any, folder: Any) -> None:
    """A call is running: ended by a signal's handler from now on."""
    with _lock:
        _running[id(launched)] = (launched, folder)


def ended(launched: Any) -> None:
    with _lock:
        _running.pop(id(launched), None)


class _Ender:
    """The handler: ends the running calls, then does what ``previous`` would have done."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: Any) -> Any:
        with _lock:
            calls = list(_running.values())
        end_calls([launched for launched, _ in calls], signum)
        if callable(self.previous):
            return self.previous(signum, frame)
        # The default action: the caller dies of the signal, as it would have, its calls' folders removed first.
        for _, folder in calls:
            folder.remove()
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        return None


def end_calls(launched: List[Any], signum: int) -> None:
    """Passes ``signum`` to each call's pynish and waits until each has ended (its whole tree gone)."""
    for call in launched:
        call.signal(signum)
    deadline = time.monotonic() + PATIENCE_S
    for call in launched:
        _await(call, deadline)


def _await(call: Any, deadline: float) -> None:
    # A pidfd, not waitpid: the thread that made the call reaps pynish and reads its status.
    if call.status is not None:
        return
    try:
        fd = os.pidfd_open(call.pid)
    except (OSError, AttributeError):  # already reaped (or no pidfd on this system): nothing to wait for
        return
    try:
        poll.wait([fd], (), max(0.0, deadline - time.monotonic()))
    finally:
        os.close(fd)


def guard() -> List[Tuple[int, _Ender]]:
    """In the main thread: installs the handler for the signals that have one to end calls before; returns what
    to undo."""
    if threading.current_thread() is not threading.main_thread():
        return []
    installed: List[Tuple[int, _Ender]] = []
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if isinstance(current, _Ender) or current in (signal.SIG_IGN, None):
            continue
        if signum == signal.SIGINT and current is signal.default_int_handler:
            continue
        ender = _Ender(current)
        signal.signal(signum, ender)
        installed.append((signum, ender))
    return installed


def unguard(installed: List[Tuple[int, _Ender]]) -> None:
    """Puts back the caller's handlers that ``guard`` replaced (unless the caller has set others since)."""
    for signum, ender in installed:
        previous = ender.previous
        if signal.getsignal(signum) is ender:
            signal.signal(signum, previous)


def _forget_in_child() -> None:
    # A forked child (a fork-context call's function, a multiprocessing worker) has none of these calls, and its
    # signals act as the caller's did before pynish.
    global _lock
    _lock = threading.RLock()
    _running.clear()
    for signum in SIGNALS:
        try:
            current = signal.getsignal(signum)
            if isinstance(current, _Ender):
                signal.signal(signum, current.previous)  # type: ignore[arg-type]
        except (ValueError, OSError):
            pass


os.register_at_fork(after_in_child=_forget_in_child)
