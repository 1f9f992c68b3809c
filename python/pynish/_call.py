"""Starting one limited call under pynish in the chosen context, and waiting for it.

"fork": the caller forks A; A starts a session of its own, forks B (which will run the function, with the
caller's memory: no pickling) and execs ``pynish --adopt B --adopt-fd W``, holding B on a pipe. pynish, now A,
puts B in its process group, cgroups and rlimits, then releases it by writing one byte on W.

"spawn": the call is pickled with cloudpickle into a private folder, and pynish starts a fresh interpreter that
reads it (``pynish._child.main``). "forkserver": see ``_forkserver``.

pynish runs in a session of its own: Ctrl-C at the terminal reaches the caller only, which passes it on to
pynish (SIGINT), and pynish ends the whole tree. Every pynish watches the caller's lifeline (``_lifeline``): if
the caller dies, pynish ends the whole tree as on a SIGTERM.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Optional

from . import _child, _lifeline, _main
from ._binary import binary
from ._interpreter import PACKAGE_PARENT, interpreter_flags
#: What the fresh interpreter runs: this very package, even when only the caller's sys.path could find it.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from pynish._child import main; "
    "main(sys.argv.pop(1), sys.argv.pop(1))"
)

_prctl: Optional[Callable[[int, int], int]] = None


def _libc_prctl() -> Callable[[int, int], int]:
    # Loaded once in the caller, before any fork, so that the forked child pays nothing for it.
    global _prctl
    if _prctl is None:
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


class Launched:
    """pynish running one call: its pid, and a way to wait for it."""

    def __init__(self, pid: int, popen: Optional[subprocess.Popen] = None, ended: Optional[int] = None) -> None:
        self.pid = pid
        self.popen = popen
        #: Read end of a pipe only pynish holds (forkserver: pynish is not our child): EOF once it has exited.
        self.ended = ended
        self.status: Optional[int] = None

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """pynish's exit status (negative: killed by that signal), or None if still running after ``timeout``."""
        if self.status is not None:
            return self.status
        if self.popen is not None:
            try:
                self.status = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            return self.status
        if self.ended is not None:
            import select

            readable, _, _ = select.select([self.ended], [], [], timeout)
            if not readable:
                return None
            os.close(self.ended)
            self.ended = None
            self.status = 0  # not our child: the report tells how it ended
            return self.status
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                pid, raw = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:
                # The caller ignores SIGCHLD: the kernel reaped pynish (waitpid blocked until then), so its status
                # is lost; the report tells how it ended.
                self.status = 0
                return self.status
            if pid == self.pid:
                self.status = os.waitstatus_to_exitcode(raw) if hasattr(os, "waitstatus_to_exitcode") else raw
                return self.status
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    def signal(self, sig: int) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def start_fork(
    flags: list[str],
    display: list[str],
    func: Callable,
    args: tuple,
    kwargs: dict,
    opts: Any,
    directory: str,
    announce: Optional[int] = None,
) -> Launched:
    prctl = _libc_prctl()
    program = binary()
    lifeline = _lifeline.read_end()
    flags = [*_lifeline.flags(lifeline), *flags]
    # What the caller printed but not yet flushed would otherwise be printed again by the child.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            run = functools.partial(_child.execute, func, args, kwargs, opts, directory)
            _child.hold_and_exec(program, flags, display, prctl, run, inherit=(lifeline,), announce=announce)
        finally:
            os._exit(125)
    return Launched(pid)


def _pickler(f: Any) -> Any:
    """cloudpickle, except that a function or class defined at the top level of the caller's ``__main__`` goes by name
    when the child's re-run main module defines it too, as multiprocessing sends it: the child's own pickling (a
    ``multiprocessing.Pool`` inside the function) then finds the very object it names. By value otherwise
    (defined under ``if __name__ == "__main__":``, or no main module to re-run)."""
    import types

    import cloudpickle

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc, name-defined]
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, (types.FunctionType, type)) and obj.__module__ == "__main__":
                name = obj.__qualname__
                if getattr(sys.modules.get("__main__"), name, None) is obj:
                    return _child.main_function, (name, cloudpickle.dumps(obj, protocol=5))
            return super().reducer_override(obj)

    return Pickler(f, protocol=5)


def write_call(directory: str, func: Callable, args: tuple, kwargs: dict, opts: Any) -> None:
    with open(os.path.join(directory, _child.CALL_FILE), "wb") as f:
        pickle.dump(_main.describe(), f, protocol=5)
        _pickler(f).dump((func, args, kwargs, opts))


def start_spawn(
    flags: list[str],
    func: Callable,
    args: tuple,
    kwargs: dict,
    opts: Any,
    directory: str,
    announce: Optional[int] = None,
) -> Launched:
    write_call(directory, func, args, kwargs, opts)
    interpreter = [sys.executable, *interpreter_flags()]
    lifeline = _lifeline.read_end()
    fd = -1 if announce is None else announce
    argv = [binary(), *_lifeline.flags(lifeline), *flags, "--", *interpreter, "-c", _BOOT, PACKAGE_PARENT, directory]
    argv.append(str(fd))
    passed = (lifeline,) if announce is None else (lifeline, announce)
    popen = subprocess.Popen(argv, start_new_session=True, close_fds=True, pass_fds=passed)
    return Launched(popen.pid, popen)


def start_forkserver(
    flags: list[str],
    display: list[str],
    func: Callable,
    args: tuple,
    kwargs: dict,
    opts: Any,
    directory: str,
    announce: Optional[int] = None,
    server: Any = None,
) -> Launched:
    """``server``: a ``_forkserver._Client`` of the caller's own (``pynish.Executor``'s); else the shared one."""
    from . import _forkserver

    write_call(directory, func, args, kwargs, opts)
    program = binary()
    ended_read, ended_write = os.pipe()
    try:
        if server is None:
            server = _forkserver.client(program)
        pid = server.start((directory, [program, *flags], display), ended_write, announce)
    except BaseException:
        os.close(ended_read)
        raise
    finally:
        os.close(ended_write)
    return Launched(pid, ended=ended_read)


def wait(
    launched: Launched, forceful_keyboard_interrupt: bool, started: Optional[Callable[[], None]] = None
) -> int:
    """Waits for pynish to end, calling ``started`` first (it may block until the function's process exists).
    On KeyboardInterrupt (Ctrl-C in the caller), passes SIGINT on to pynish, which signals the whole tree; with
    ``forceful_keyboard_interrupt`` a second signal a moment later has pynish kill what is left at once. Waits
    until the tree is gone, then re-raises KeyboardInterrupt."""
    try:
        if started is not None:
            started()
        status = launched.wait()
        assert status is not None
        return status
    except KeyboardInterrupt:
        launched.signal(signal.SIGINT)
        _finish_interrupted(launched, forceful_keyboard_interrupt)
        raise


def _finish_interrupted(launched: Launched, forceful: bool) -> None:
    # A second Ctrl-C while waiting must not leave the tree running either.
    patience = 1.0 if forceful else None
    while True:
        try:
            if launched.wait(patience) is not None:
                return
            # Still running a second after SIGINT: a second terminating signal makes pynish kill at once.
            launched.signal(signal.SIGTERM)
            patience = None
        except KeyboardInterrupt:
            launched.signal(signal.SIGTERM)
            patience = None
