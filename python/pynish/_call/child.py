"""The child side of a limited call: run the function once, write its outcome to a file, exit.

Three ways in: a child forked from the caller and held on a pipe until pynish has adopted it
(``wait_for_release``, context "fork"); the same, forked from a forkserver, which then reads the call from a
pipe (``load_and_execute``, context "forkserver"); or a fresh interpreter that pynish started (``main``, context
"spawn"), which first takes on the caller's ``sys.path``, working directory and main module as
multiprocessing's spawn does, then reads the call. Either way the outcome is one pickle sent through a pipe
(``stream``): ``("ok", value)`` or ``("err", exception, traceback_text)``, ended by a mark that it is whole,
so that the caller takes all of it or none.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback

from ..exceptions import (
    CpuTimeoutException,
    FileSizeLimitException,
    MemoryLimitException,
    PynisherException,
    SoftTimeLimit,
    UnpicklableResult,
    WallTimeoutException,
)
from .stream import Writer

TYPE_CHECKING = False  # not from typing: a fresh child does not pay for importing it
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

#: The byte pynish writes on the hold pipe once the adopted child is in place; EOF without it means "do not run".
GO = b"G"
#: In a limited function's process: its call's folder, where the calls it makes put theirs (``_os.folder``).
running_in: Optional[str] = None


class Options:
    """What the child needs besides the function: pynisher's per-call settings."""

    __slots__ = (
        "name",
        "memory",
        "cpu_time",
        "wall_time",
        "warnings",
        "wrap_errors",
        "terminate_children",
        "soft",
        "file_size",
    )

    def __init__(
        self,
        name: Optional[str],
        memory: Optional[int],
        cpu_time: Optional[float],
        wall_time: Optional[float],
        warnings: bool,
        wrap_errors: Any,
        terminate_children: bool,
        soft: bool = False,
        file_size: Optional[int] = None,
    ) -> None:
        self.name = name
        self.memory = memory
        self.cpu_time = cpu_time
        self.wall_time = wall_time
        self.warnings = warnings
        self.wrap_errors = wrap_errors
        self.terminate_children = terminate_children
        #: A soft time limit was asked: pynish's warning (SIGURG) raises ``SoftTimeLimit`` in the function.
        self.soft = soft
        #: The ``file_size`` limit (bytes): an ``OSError`` EFBIG the function raises becomes
        #: ``FileSizeLimitException``.
        self.file_size = file_size

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)


def _short_repr(value: Any) -> str:
    """A bounded repr: the full repr of a 200 MB bytes argument would cost the call seconds and memory."""
    import reprlib

    limited = reprlib.Repr()
    limited.maxstring = limited.maxother = 80
    if isinstance(value, (bytes, bytearray)) and len(value) > 80:
        return repr(value[:80]) + f"...({len(value)} bytes)"
    return limited.repr(value)


def callstring(func: Callable, args: tuple, kwargs: dict) -> str:
    """``f(1, x=2)``, for messages."""
    import functools

    parts = [_short_repr(a) for a in args] + [f"{k}={_short_repr(v)}" for k, v in kwargs.items()]
    if isinstance(func, functools.partial):
        name = getattr(func.func, "__qualname__", repr(func.func))
    else:
        name = getattr(func, "__qualname__", None) or type(func).__name__
    text = f"{name}({', '.join(parts)})"
    return text if len(text) <= 500 else text[:497] + "..."


def _is(err: BaseException, kind: Any) -> bool:
    # As pynisher: a name matches the exact class name, a class matches the exact class (not subclasses).
    if isinstance(kind, str):
        return type(err).__name__ == kind
    return isinstance(kind, type) and type(err) is kind


def file_too_large(err: BaseException) -> bool:
    """Whether ``err`` is the error of a write past RLIMIT_FSIZE (CPython ignores SIGXFSZ: the write fails with
    EFBIG instead), and not already pynish's."""
    import errno

    return isinstance(err, OSError) and err.errno == errno.EFBIG and not isinstance(err, FileSizeLimitException)


def file_size_exception(limit: int, call: str) -> FileSizeLimitException:
    """The exception of a ``file_size`` hit: an ``OSError`` EFBIG, as the write's own error is."""
    import errno

    return FileSizeLimitException(errno.EFBIG, f"File too large: over the file size limit ({limit}B).\n{call}")


def wrap_error(err: BaseException, opts: Options, call: str) -> BaseException:
    """pynisher's ``wrap_errors``: which errors become pynisher exceptions (done in the child, so that the
    caller never has to import the modules an unwrapped error would drag in)."""
    message = f"Wrapped Exception {type(err).__name__} - {err}"
    if opts.memory and isinstance(err, MemoryError) and not isinstance(err, MemoryLimitException):
        err = MemoryLimitException(f"Not enough memory to run function ({opts.memory}B).\n{call}")
    if opts.file_size is not None and file_too_large(err):
        err = file_size_exception(opts.file_size, call)
    wrap = opts.wrap_errors
    if wrap is False or wrap is None:
        return err
    if wrap is True:
        return PynisherException(message)
    mapping = {"pynisher": wrap} if isinstance(wrap, (list, set, tuple)) else wrap
    if opts.cpu_time is not None and any(_is(err, k) for k in mapping.get("cpu_time", ())):
        return CpuTimeoutException(message)
    if opts.wall_time is not None and any(_is(err, k) for k in mapping.get("wall_time", ())):
        return WallTimeoutException(message)
    if opts.memory is not None:
        for kind in mapping.get("memory", ()):
            if isinstance(kind, tuple):
                # (OSError, errno) or (OSError, errno, winerror): winerror never matches on Linux unless None.
                matches = _is(err, kind[0]) and getattr(err, "errno", None) == kind[1]
                if len(kind) == 3:
                    matches = matches and getattr(err, "winerror", None) == kind[2]
                if matches:
                    return MemoryLimitException(message)
            elif _is(err, kind):
                return MemoryLimitException(message)
    if any(_is(err, k) for k in mapping.get("pynisher", ())):
        return PynisherException(message)
    return err


def _dump(outcome: tuple, out: Writer) -> None:
    try:
        # The plain pickler first: fastest, and protocol 5 writes a large bytes value straight to the pipe.
        pickle.dump(outcome, out, protocol=5)
    except Exception:
        # Lambdas, local classes, classes pickled by value from a __main__ script: cloudpickle can.
        out.reset()
        _no_files_pickler(out).dump(outcome)


def _no_files_pickler(f: Any) -> Any:
    """cloudpickle, except that an open text file stays unpicklable, as for pickle (and so pynisher): cloudpickle
    would send its contents as an io.StringIO, a different object that can neither be written to the file nor
    closed."""
    import io

    import cloudpickle

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc, name-defined]
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is io.TextIOWrapper:
                raise TypeError(f"cannot pickle '{type(obj).__module__}.{type(obj).__qualname__}' object")
            return super().reducer_override(obj)

    return Pickler(f, protocol=5)


def rebuild_exception(cls: Any, args: tuple, state: dict) -> BaseException:
    """Makes an exception again without calling its constructor (see ``_Rebuilt``)."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class _Rebuilt:
    """An exception whose class cannot be made again from its ``args`` (a constructor that takes other
    arguments, which plain pickling calls): sent as class, args and attributes instead, so that the caller still
    gets its type, message and attributes."""

    def __init__(self, err: BaseException) -> None:
        self.err = err

    def __reduce__(self) -> tuple:
        return rebuild_exception, (type(self.err), self.err.args, getattr(self.err, "__dict__", {}))


def _loads_back(err: BaseException) -> bool:
    # False only when pickling works but unpickling does not; a failure to pickle is handled by _dump.
    try:
        data = pickle.dumps(err, protocol=5)
    except Exception:
        try:
            import cloudpickle  # a class sent by value (a lambda's, a -c script's)

            data = cloudpickle.dumps(err, protocol=5)
        except Exception:
            return True
    try:
        pickle.loads(data)
    except Exception:
        return False
    return True


def send_outcome(fd: int, outcome: tuple) -> None:
    """Sends the outcome through the pipe ``fd`` and closes it."""
    if outcome[0] == "err" and not _loads_back(outcome[1]):
        outcome = ("err", _Rebuilt(outcome[1]), outcome[2])
    out = Writer(fd)
    try:
        try:
            _dump(outcome, out)
        except Exception as e:
            out.reset()
            sent = outcome[1].err if isinstance(outcome[1], _Rebuilt) else outcome[1]
            what = "result" if outcome[0] == "ok" else f"exception {type(sent).__name__}"
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            if outcome[0] == "err":
                tb = outcome[2] + "\nWhile sending it back:\n" + tb
            # A TypeError too when pickling said so: pynisher raises that very error.
            kind = UnpicklableResult if isinstance(e, TypeError) else PynisherException
            failure = kind(f"The function's {what} could not be sent back: {e!r}")
            pickle.dump(("err", failure, tb), out, protocol=5)
        out.end()
    except BaseException:
        # Out of memory even for that, or the caller is gone: no whole outcome; the caller says there was none.
        pass
    finally:
        os.close(fd)


def _close_stdin() -> None:
    """As multiprocessing does in its children (so pynisher too): the function reads end-of-file, never the
    caller's input, and its subprocesses get /dev/null on descriptor 0."""
    if sys.stdin is None:
        return
    try:
        sys.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 0:
            os.dup2(fd, 0)
            os.close(fd)
        sys.stdin = open(0, encoding="utf-8", closefd=False)
    except (OSError, ValueError):
        pass


def _identity(fd: int) -> Optional[Tuple[int, int]]:
    """Which pipe ``fd`` is now (device, inode); None once it is closed."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _lost_pipe(fd: int) -> None:
    """The function closed the outcome's pipe (``os.closerange``, a daemonising library), and maybe opened a file
    of its own on the same number: nothing is written there (it would land in that file), the reason is said on
    stderr, as pynisher's child prints its OSError, and the process exits with no outcome. Never returns."""
    message = (
        f"pynish: the function closed descriptor {fd}, through which its outcome goes back to the caller;"
        " no result can be returned (keep it open: os.closerange(3, ...) closes it)\n"
    )
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        os.write(2, message.encode())
    except OSError:
        pass
    os._exit(1)


def _soft_limit(on: bool) -> None:
    """Turns pynish's soft-limit warning (SIGURG, sent to every member of the tree) into ``SoftTimeLimit`` raised
    in this process's main thread while the function runs; off, SIGURG is ignored again (its default), so that a
    late warning cannot break the sending of the outcome. The function's own workers inherit the handler when
    forked and ignore the warning there: only the process that runs the function raises."""
    import signal

    if not on:
        signal.signal(signal.SIGURG, signal.SIG_DFL)
        return
    me = os.getpid()

    def warned(signum: int, frame: Any) -> None:
        if os.getpid() == me:
            raise SoftTimeLimit("the soft time limit was reached")

    signal.signal(signal.SIGURG, warned)


def execute(func: Callable, args: tuple, kwargs: dict, opts: Options, directory: str, result: int) -> None:
    """Runs the call, sends its outcome through the pipe ``result``, and ends this process (never returns)."""
    global running_in
    code = 0
    running_in = directory
    try:
        pipe = _identity(result)
        _close_stdin()
        if opts.name:
            import multiprocessing

            # As multiprocessing.Process(name=...) takes it (so pynisher): any object, unchecked; the setter
            # would refuse a non-string.
            multiprocessing.current_process()._name = opts.name  # type: ignore[attr-defined]
        try:
            _soft_limit(opts.soft)
            try:
                outcome: tuple = ("ok", func(*args, **kwargs))
            finally:
                _soft_limit(False)
        except BaseException as e:  # KeyboardInterrupt and SystemExit too: the caller decides
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            outcome = ("err", wrap_error(e, opts, callstring(func, args, kwargs)), tb)
        if _identity(result) != pipe:
            _lost_pipe(result)
        send_outcome(result, outcome)
        del outcome
    except BaseException:
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _forget_parent_children() -> None:
    # This process was forked from the caller: the caller's multiprocessing children are not ours to join.
    # Only modules the caller imported: one it never imported holds nothing to forget, and importing it here (a
    # millisecond for multiprocessing.util, which pynish's own import of multiprocessing does not load) would be
    # paid by every call.
    process = sys.modules.get("multiprocessing.process")
    util = sys.modules.get("multiprocessing.util")
    try:
        if process is not None:
            process._children = set()  # type: ignore[attr-defined]
        if util is not None:
            util._finalizer_registry.clear()  # type: ignore[attr-defined]
            util._run_after_forkers()  # type: ignore[attr-defined]
    except Exception:
        pass


def wait_for_release(hold_fd: int, parent: int, prctl: Callable[[int, int], int]) -> None:
    """Contexts "fork" and "forkserver": the held child waits on the hold pipe until pynish (its parent, pid
    ``parent``) has adopted it. Returns once released; exits unrun if pynish could not set the run up."""
    try:
        # Die with pynish: armed before checking the parent, so that no moment is left uncovered.
        PR_SET_PDEATHSIG = 1
        prctl(PR_SET_PDEATHSIG, 9)
        if os.getppid() != parent:
            os._exit(125)
        go = os.read(hold_fd, 1)
        os.close(hold_fd)
        if go != GO:
            # pynish could not set the run up (and said why): do not run the function.
            os._exit(125)
        _forget_parent_children()
    except BaseException:
        os._exit(125)


def run_held(
    hold_read: int,
    hold_write: int,
    parent: int,
    prctl: Callable[[int, int], int],
    run: Callable[[], None],
    inherit: Tuple[int, ...] = (),
    announce: Optional[int] = None,
) -> None:
    """In the held child B, forked by ``parent`` (which becomes pynish): drops what is pynish's alone (the hold
    pipe's write end, ``inherit``), says its pid on ``announce``, waits to be released, then calls ``run``."""
    os.close(hold_write)
    for fd in inherit:
        os.close(fd)
    if announce is not None:
        announce_pid(announce)
    wait_for_release(hold_read, parent, prctl)
    run()


def hold_and_exec(
    program: str,
    flags: List[str],
    display: List[str],
    prctl: Callable[[int, int], int],
    run: Callable[[], None],
    inherit: Tuple[int, ...] = (),
    announce: Optional[int] = None,
) -> None:
    """Contexts "fork" and "forkserver", in a freshly forked process A: forks the held child B, which calls
    ``run`` once pynish has adopted it, then execs ``pynish --adopt B`` (A becomes pynish, B's parent). The
    descriptors in ``inherit`` go to pynish only; B writes its pid on ``announce`` (see ``pynish._process``). Never
    returns; if the exec fails the caller exits, and B sees the hold pipe close without the go byte and exits
    unrun."""
    # The calling thread's blocked signals would be inherited by pynish and the function: pynish's SIGTERM then
    # waits for SIGKILL, and pynish misses the SIGINT passed on for Ctrl-C. Both start unblocked, as in spawn.
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    hold_read, hold_write = os.pipe()
    me = os.getpid()
    worker = os.fork()
    if worker == 0:
        run_held(hold_read, hold_write, me, prctl, run, inherit, announce)
    os.close(hold_read)
    if announce is not None:
        os.close(announce)
    for fd in (hold_write, *inherit):
        os.set_inheritable(fd, True)
    try:
        os.execv(program, [program, "--adopt", str(worker), "--adopt-fd", str(hold_write), *flags, "--", *display])
    except OSError as e:
        # Said here, since the caller only sees that no report came: the binary is named.
        message = f"pynish: cannot execute the pynish binary {program}: {e.strerror or e}\n"
        os.write(2, message.encode(errors="replace"))
        raise


def main_function(name: str, by_value: bytes) -> Any:
    """Unpickles a function or class of the caller's ``__main__`` (see ``launch._pickler``): the child's re-run
    main module's own (``__mp_main__``: never the child's own ``-c`` boot code), else the copy sent by value."""
    found = getattr(sys.modules.get("__mp_main__"), name, None)
    if callable(found) and getattr(found, "__qualname__", None) == name:
        return found
    return pickle.loads(by_value)


def load_and_execute(directory: str, whole_main: bool, call: int, result: int) -> None:
    """Reads the call from the pipe ``call`` and runs it, its outcome to the pipe ``result`` (never returns).
    ``whole_main``: a fresh interpreter, which takes on the caller's main module too; else a forkserver's child,
    whose server already did."""
    try:
        with open(call, "rb") as f:
            from .mainmodule import take_on

            take_on(pickle.load(f), whole_main)
            # A function of an importable module comes by reference (imported here), one from __main__, a lambda
            # or a closure by value (cloudpickle is imported only then, by the pickle itself).
            func, args, kwargs, opts = pickle.load(f)
    except BaseException as e:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        send_outcome(result, ("err", e, tb))
        os._exit(0)
    execute(func, args, kwargs, opts, directory, result)


def announce_pid(fd: int) -> None:
    """Tells the caller which process runs the function (``Pynisher._process``), then closes ``fd``."""
    try:
        os.write(fd, b"%d\n" % os.getpid())
        os.close(fd)
    except OSError:
        pass


def main(directory: str, call: str, result: str, announce: str = "-1") -> None:
    """Context "spawn": the entry point of the fresh interpreter, with the call's folder and the pipes' numbers.
    Never returns."""
    if int(announce) >= 0:
        announce_pid(int(announce))
    # Inherited through exec, so inheritable: not to be passed on to the function's own subprocesses.
    for fd in (int(call), int(result)):
        os.set_inheritable(fd, False)
    load_and_execute(directory, True, int(call), int(result))
