"""Starting one limited call under pynish in the chosen context, and waiting for it.

"fork": the caller starts A; A starts a session of its own, forks B (which will run the function, with the
caller's memory: no pickling) and execs ``pynish --adopt B --adopt-fd W``, holding B on a pipe. pynish, now A,
puts B in its process group, cgroups and rlimits, then releases it by writing one byte on W. A shares the
caller's memory through the native helper (``native``), so that B is the caller's one copy; without it, the
caller forks A from Python.

"spawn": the call is pickled with cloudpickle, and pynish starts a fresh interpreter that reads it from a pipe
(``child.main``). "forkserver": see ``forkserver``. In every context the outcome comes back through a
pipe (``stream``), read while the caller waits.

pynish runs in a session of its own: Ctrl-C at the terminal reaches the caller only, which passes it on to
pynish (SIGINT), and pynish ends the whole tree. Every pynish watches the caller's lifeline (``_os.lifeline``): if
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

from .._os import lifeline as _lifeline
from .._os import owned_fds as _owned_fds
from .._os import poll as _poll
from .._os.interpreter import PACKAGE_PARENT, interpreter_flags
from . import child as _child
from . import mainmodule as _mainmodule
from . import native as _native
from . import stream as _stream
from .binary import binary

#: What the fresh interpreter runs: this very package, even when only the caller's sys.path could find it.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from pynish._call.child import main; "
    "main(*sys.argv[1:5])"
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

    def __init__(
        self,
        pid: int,
        outcome: _stream.Reader,
        popen: Optional[subprocess.Popen] = None,
        ended: Optional[int] = None,
        feeder: Optional[_stream.Feeder] = None,
    ) -> None:
        self.pid = pid
        self.popen = popen
        #: Read end of a pipe only pynish holds (forkserver: pynish is not our child): EOF once it has exited.
        self.ended = ended
        self.status: Optional[int] = None
        #: The function's outcome, read while waiting; and the call, written while the child reads it.
        self.outcome = outcome
        self.feeder = feeder
        outcome.wait = self._readable
        #: The function's outcome once read: ("ok", value), ("err", exception, traceback) or None (none came).
        self.loaded: Optional[tuple] = None
        self._loading = True
        #: Readable once pynish has exited (without reaping it): the "ended" pipe, else a pidfd where there is one.
        self.done: Optional[int] = ended
        self._pidfd: Optional[int] = None
        if ended is None and hasattr(os, "pidfd_open"):
            try:
                self.done = self._pidfd = os.pidfd_open(pid)
            except OSError:
                pass

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """pynish's exit status (negative: killed by that signal), or None if still running after ``timeout``."""
        if self.status is not None:
            return self.status
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._gather(deadline):
            return None
        status = self._status(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if status is not None and self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return status

    def _gather(self, deadline: Optional[float]) -> bool:
        """Reads the outcome (``loaded``), feeding the call meanwhile, until the outcome is whole or pynish has
        ended; False if ``deadline`` came first. Waiting with a deadline (after Ctrl-C) the outcome no longer
        matters: it is read and dropped."""
        outcome = self.outcome
        if outcome.fd is not None:
            if deadline is None and self._loading:
                try:
                    self.loaded = outcome.load()
                finally:
                    self._loading = False
            elif not self._drop(deadline):
                return False
            outcome.close()
            outcome.wait = None  # no cycle: a large outcome is freed as soon as the caller lets it go
        if self.feeder is not None:
            self.feeder.close()
        return True

    def _readable(self, deadline: Optional[float] = None) -> Optional[bool]:
        """Blocks until the outcome's pipe is readable (True) or pynish has ended (False), feeding the call; None
        if ``deadline`` came first."""
        feeder = self.feeder
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.done is None:  # no pidfd: look for pynish's end every few milliseconds
                left = 0.005 if left is None else min(left, 0.005)
            writing = [feeder.fd] if feeder is not None and feeder.fd is not None else []
            watched = [fd for fd in (self.outcome.fd, self.done) if fd is not None]
            readable, writable = _poll.wait(watched, writing, left)
            if writable:
                feeder.pump()  # type: ignore[union-attr]
            if self.outcome.fd in readable:
                return True
            if self.done in readable if self.done is not None else self._status(0) is not None:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _drop(self, deadline: Optional[float]) -> bool:
        """Reads and drops the outcome until pynish has ended; False if ``deadline`` came first."""
        fd = self.outcome.fd
        while True:
            try:
                while os.read(fd, 1 << 16):  # type: ignore[arg-type]
                    pass
                return True  # end of file: every writer is gone
            except BlockingIOError:
                pass
            readable = self._readable(deadline)
            if readable is None:
                return False
            if not readable:
                try:
                    while os.read(fd, 1 << 16):  # type: ignore[arg-type]
                        pass
                except BlockingIOError:
                    pass
                return True

    def _status(self, timeout: Optional[float]) -> Optional[int]:
        if self.status is not None:
            return self.status
        if self.popen is not None:
            try:
                self.status = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            return self.status
        if self.ended is not None:
            readable, _ = _poll.wait([self.ended], (), timeout)
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
    result_read, result_write = _stream.pipe()
    run = functools.partial(_child.execute, func, args, kwargs, opts, directory, result_write)
    try:
        started = _start_native(program, flags, display, prctl, run, lifeline, result_read, announce)
        if started is not None:
            os.close(result_write)
            return Launched(started, _stream.Reader(result_read))
        pid = os.fork()
    except BaseException:
        os.close(result_read)
        os.close(result_write)
        raise
    if pid == 0:
        try:
            os.close(result_read)
            os.setsid()
            _child.hold_and_exec(program, flags, display, prctl, run, inherit=(lifeline,), announce=announce)
        finally:
            os._exit(125)
    os.close(result_write)
    return Launched(pid, _stream.Reader(result_read))


def _start_native(
    program: str,
    flags: list[str],
    display: list[str],
    prctl: Callable[[int, int], int],
    run: Callable[[], None],
    lifeline: int,
    result_read: int,
    announce: Optional[int],
) -> Optional[int]:
    """The fork context through the native helper (``native``): one copy of the caller, B, held as A's child
    while A becomes pynish. pynish's pid, or None where there is no helper (the caller forks twice instead)."""
    hold_read, hold_write = os.pipe()
    argv = [program, "--adopt", "", "--adopt-fd", str(hold_write), *flags, "--", *display]
    try:
        started = _native.start(program, argv, 2, (hold_write, lifeline))
    except BaseException:
        os.close(hold_read)
        os.close(hold_write)
        raise
    if started is None:
        os.close(hold_read)
        os.close(hold_write)
        return None
    pid, parent = started
    if pid == 0:
        try:
            os.close(result_read)
            _child.run_held(hold_read, hold_write, parent, prctl, run, inherit=(lifeline,), announce=announce)
        finally:
            os._exit(125)
    os.close(hold_read)
    os.close(hold_write)
    return pid


def _pickler(f: Any, main_reruns: bool) -> Any:
    """cloudpickle, except that a function or class defined at the top level of the caller's ``__main__`` goes by name
    when the child's re-run main module defines it too, as multiprocessing sends it: the child's own pickling (a
    ``multiprocessing.Pool`` inside the function) then finds the very object it names. By value otherwise
    (defined under ``if __name__ == "__main__":``, or no main module to re-run: ``main_reruns`` false)."""
    import types

    import cloudpickle

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc, name-defined]
        def reducer_override(self, obj: Any) -> Any:
            if main_reruns and isinstance(obj, (types.FunctionType, type)) and obj.__module__ == "__main__":
                name = obj.__qualname__
                if getattr(sys.modules.get("__main__"), name, None) is obj:
                    return _child.main_function, (name, cloudpickle.dumps(obj, protocol=5))
            return super().reducer_override(obj)

    return Pickler(f, protocol=5)


class Pipes:
    """A fresh child's two pipes: the call in (fed from the caller's memory) and the outcome out."""

    def __init__(self, func: Callable, args: tuple, kwargs: dict, opts: Any) -> None:
        call_read, call_write = _stream.pipe()
        self.feeder = _stream.Feeder(call_write)
        self.call = call_read
        self.result, self.result_write = _stream.pipe()
        try:
            caller = _mainmodule.describe()
            pickle.dump(caller, self.feeder, protocol=5)
            _pickler(self.feeder, _mainmodule.reruns(caller)).dump((func, args, kwargs, opts))
        except BaseException:
            self.close()
            raise

    def child_ends(self) -> list[int]:
        return [self.call, self.result_write]

    def launched(self, pid: int, **how: Any) -> Launched:
        """Once the child holds its ends: the caller closes its copies and starts feeding the call."""
        for fd in self.child_ends():
            os.close(fd)
        self.feeder.start()
        return Launched(pid, _stream.Reader(self.result), feeder=self.feeder, **how)

    def close(self) -> None:
        self.feeder.close()
        for fd in (self.call, self.result, self.result_write):
            os.close(fd)


def start_spawn(
    flags: list[str],
    func: Callable,
    args: tuple,
    kwargs: dict,
    opts: Any,
    directory: str,
    announce: Optional[int] = None,
) -> Launched:
    pipes = Pipes(func, args, kwargs, opts)
    interpreter = [sys.executable, *interpreter_flags()]
    lifeline = _lifeline.read_end()
    fd = -1 if announce is None else announce
    ends = [str(fd) for fd in pipes.child_ends()]
    boot = [*interpreter, "-c", _BOOT, PACKAGE_PARENT, directory, *ends, str(fd)]
    argv = [binary(), *_lifeline.flags(lifeline), *flags, "--", *boot]
    passed = [lifeline, *pipes.child_ends(), *(() if announce is None else (announce,))]
    try:
        popen = subprocess.Popen(argv, start_new_session=True, close_fds=True, pass_fds=passed)
    except BaseException:
        pipes.close()
        raise
    return pipes.launched(popen.pid, popen=popen)


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
    """``server``: a ``forkserver._Client`` of the caller's own (``pynish.Executor``'s); else the shared one."""
    from . import forkserver as _forkserver

    pipes = Pipes(func, args, kwargs, opts)
    program = binary()
    ended_read, ended_write = os.pipe()
    _owned_fds.hold(ended_write)  # pynish's alone once sent: a child forked meanwhile would hide pynish's end
    try:
        if server is None:
            server = _forkserver.client(program)
        pid = server.start((directory, [program, *flags], display), [ended_write, *pipes.child_ends()], announce)
    except BaseException:
        os.close(ended_read)
        pipes.close()
        raise
    finally:
        _owned_fds.close(ended_write)
    return pipes.launched(pid, ended=ended_read)


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
