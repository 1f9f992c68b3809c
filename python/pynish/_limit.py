"""pynisher 1.x's API: ``Pynisher`` (``limit``), ``restricted`` and ``EMPTY``, carried out by pynish."""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import threading
from multiprocessing.context import BaseContext
from typing import Any, Callable, Dict, Generic, List, Optional, Tuple, Type, TypeVar, Union

from . import _cpus, _process, exceptions
from ._call import child as _child
from ._call import launch as _launch
from ._call import mainmodule as _mainmodule
from ._call.binary import binary
from ._os import folder as _folder
from ._os import signals as _signals
from ._report import Report, Usage, parse_report
from ._run import limit_args, rlimit_args
from ._support import contexts as valid_contexts
from ._support import nearest_start_method, supports

__all__ = ["EMPTY", "Pynisher", "limit", "restricted"]

T = TypeVar("T")
Self = TypeVar("Self", bound="Pynisher")

#: Time between the first signal (SIGTERM) and SIGKILL when a call's tree is ended.
GRACE_S = 0.5

_MEMORY_UNITS = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}
_TIME_UNITS = {"s": 1, "m": 60, "h": 60 * 60}


class _EMPTY:
    """The result of a call that gave none, with ``raises=False``."""

    def __repr__(self) -> str:
        return "EMPTY"

    def __reduce__(self) -> str:
        return "EMPTY"


EMPTY = _EMPTY()

WrapErrors = Union[bool, List[Union[str, Type[BaseException]]], Dict[str, Any]]


def _time(value: Any) -> Any:
    # (x, unit) is converted and rounded to whole seconds as pynisher does; a bare number is kept as given.
    if isinstance(value, tuple):
        x, unit = value
        return round(x * _TIME_UNITS[unit.lower()])
    if isinstance(value, bool):
        return int(value)  # pynisher takes True as 1 second
    return value


def _memory(value: Any) -> Any:
    if isinstance(value, tuple):
        x, unit = value
        return round(x * _MEMORY_UNITS[unit.upper()])
    return value


def _label(name: Any) -> Optional[str]:
    """``name`` as the report's label: any object pynisher takes as a process name, as text an argument can
    carry (no NUL, valid UTF-8). The function's process gets ``name`` itself."""
    if name is None:
        return None
    text = name if isinstance(name, str) else str(name)
    return text.replace("\0", "\\0").encode("utf-8", "replace").decode("utf-8")


_BOOTSTRAPPING = """
        An attempt has been made to start a new process before the
        current process has finished its bootstrapping phase.

        This probably means that you are not using fork to start your
        child processes and you have forgotten to use the proper idiom
        in the main module:

            if __name__ == '__main__':
                ...

        (pynish re-runs the main module in a new process, as multiprocessing does; see the "Safe importing of
        main module" section in https://docs.python.org/3/library/multiprocessing.html)"""


#: What a fresh interpreter holds before it runs anything (spawn, forkserver): about 11 MB measured here.
_FRESH_INTERPRETER_BYTES = 10 * 2**20


def _warn_memory(limit: int, method: str) -> None:
    """pynisher's warning when the limit is below what the new process starts with. Said here, by the caller: a
    child under such a limit may be killed before it could print anything. The caller's resident memory is
    measured only for fork, where the new process starts from it; a fresh interpreter (spawn, forkserver) starts
    from its own few megabytes, whatever the caller holds."""
    if method != "fork":
        if limit < _FRESH_INTERPRETER_BYTES:
            print(
                f"pynish: the memory limit {limit}B is below the {_FRESH_INTERPRETER_BYTES}B a fresh interpreter"
                " holds; the new process is likely to fail, try increasing the memory limit",
                file=sys.stderr,
            )
        return
    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return
    if resident >= limit:
        print(
            f"pynish: the memory limit {limit}B is below the {resident}B the calling process holds; the new"
            " process is likely to fail, try increasing the memory limit",
            file=sys.stderr,
        )


#: The per-process rlimits: (resource, the smallest value it takes).
_RLIMITS = {
    "open_files": ("RLIMIT_NOFILE", 1),
    "file_size": ("RLIMIT_FSIZE", 0),
    "stack": ("RLIMIT_STACK", 1),
    "core_size": ("RLIMIT_CORE", 0),
}


def _check_rlimits(**values: Any) -> Dict[str, Optional[int]]:
    """The per-process rlimits checked as pynish checks them, at ``limit()`` time: whole numbers, and, unless this
    process is root (which may raise a hard limit), not above the hard limit it inherited, which pynish would
    refuse (never cap) at every call."""
    import resource

    checked: Dict[str, Optional[int]] = {}
    for name, value in values.items():
        rlimit, least = _RLIMITS[name]
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                unit = "" if name == "open_files" else " Bytes"
                raise ValueError(f"`{name}` {value!r} must be a whole number >= {least}{unit}")
            hard = resource.getrlimit(getattr(resource, rlimit))[1]
            if hard != resource.RLIM_INFINITY and value > hard and os.geteuid() != 0:
                raise ValueError(
                    f"`{name}` {value} is above the hard limit {hard} ({rlimit}) this process inherited (ulimit -H)"
                )
        checked[name] = value
    return checked


class _RemoteTraceback(Exception):
    """The child's traceback text, when the exception's own class cannot carry it."""


def _raise_with(err: BaseException, tb: Optional[str]) -> Any:
    if tb is None:
        raise err
    try:
        cause: BaseException = type(err)(tb)
    except Exception:
        cause = _RemoteTraceback(tb)
    raise err from cause


class Pynisher(Generic[T]):
    """Runs ``func`` in a child process whose whole process tree pynish holds to the limits.

    ``limit(func, wall_time=..., cpu_time=..., memory=...)(*args)`` runs one call and returns its result, or
    raises what it raised, or the exception of the limit it hit. After each call, ``last_run`` is pynish's report
    of it (a ``pynish.Report``: verdict, usage of the whole tree, escalation, backend, enforcement) and ``usage``
    its ``Usage``.

    ``soft_wall_time``, ``soft_cpu_time``: seconds after which ``SoftTimeLimit`` is raised inside the function.

    ``open_files`` (descriptors), ``file_size``, ``stack``, ``core_size`` (bytes, or ``(x, "MB")`` as ``memory``):
    the kernel's per-process rlimits (RLIMIT_NOFILE, RLIMIT_FSIZE, RLIMIT_STACK, RLIMIT_CORE; pynish's
    ``--open-files``, ``--file-size``, ``--stack``, ``--core-size``), soft and hard, in the function's process and
    every process it starts. ``open_files`` counts the call's own descriptors too (stdin, stdout, stderr and
    the call's pipes; a fresh interpreter, context ``"spawn"``, needs 5 to start). ``file_size=0`` forbids
    writing to any file, ``core_size=0`` core dumps. A write past ``file_size`` raises ``FileSizeLimitException``
    (an ``OSError`` EFBIG, what the write raises in Python) in the caller, as does a member of the tree killed by
    SIGXFSZ (verdict ``file_size``). A value above the hard limit this process inherited is a ``ValueError``
    (unless it is root): pynish would refuse it, never cap it.

    ``cpus`` (a CPU list ``"0,2-3"`` as taskset's, or CPU numbers ``[0, 2, 3]``): the CPUs the function's
    process and every process it starts run on (pynish's ``--cpus``: their affinity, and on the cgroup1 backend a
    cpuset group too); a CPU this process may not run on is a ``ValueError``. ``cpu_quota`` (cores, ``0.5``):
    the CPU time per second the whole tree may use together, throttled by the kernel's CPU controller
    (``--cpu-quota``, cgroup backends only); where pynish has no CPU controller to use (asked once, when the first
    ``limit`` with a quota is made) it is a ``ValueError`` naming pynish's reason, never a call run unthrottled.
    """

    WallTimeoutException = exceptions.WallTimeoutException
    CpuTimeoutException = exceptions.CpuTimeoutException
    MemoryLimitException = exceptions.MemoryLimitException
    FileSizeLimitException = exceptions.FileSizeLimitException
    PynisherException = exceptions.PynisherException
    TimeoutException = exceptions.TimeoutException

    def __init__(
        self,
        func: Callable[..., T],
        *,
        name: Optional[str] = None,
        memory: Union[int, Tuple[int, str], None] = None,
        cpu_time: Union[int, Tuple[float, str], None] = None,
        wall_time: Union[int, Tuple[float, str], None] = None,
        soft_wall_time: Union[float, Tuple[float, str], None] = None,
        soft_cpu_time: Union[float, Tuple[float, str], None] = None,
        open_files: Optional[int] = None,
        file_size: Union[int, Tuple[float, str], None] = None,
        stack: Union[int, Tuple[float, str], None] = None,
        core_size: Union[int, Tuple[float, str], None] = None,
        cpus: Optional[_cpus.Cpus] = None,
        cpu_quota: Optional[float] = None,
        context: Union[str, BaseContext, None] = None,
        raises: bool = True,
        warnings: bool = True,
        wrap_errors: WrapErrors = False,
        terminate_child_processes: bool = True,
        forceful_keyboard_interrupt: bool = True,
    ) -> None:
        _cpu_time = _time(cpu_time)
        _wall_time = _time(wall_time)
        _mem = _memory(memory)
        if not callable(func):
            raise ValueError(f"`func` ({func}) must be callable")
        if _cpu_time is not None and not _cpu_time >= 1:
            raise ValueError(f"`cpu_time` {cpu_time} must be >= 1 seconds")
        if _wall_time is not None and not _wall_time >= 1:
            raise ValueError(f"`wall_time` {wall_time} must be >= 1 second")
        _soft_wall = _time(soft_wall_time)
        _soft_cpu = _time(soft_cpu_time)
        for soft_name, soft, hard_name, hard in (
            ("soft_wall_time", _soft_wall, "wall_time", _wall_time),
            ("soft_cpu_time", _soft_cpu, "cpu_time", _cpu_time),
        ):
            if soft is not None and not soft > 0:
                raise ValueError(f"`{soft_name}` {soft} must be > 0 seconds")
            if soft is not None and hard is not None and not soft < hard:
                raise ValueError(f"`{soft_name}` {soft} must be below `{hard_name}` {hard}")
        if _mem is not None and not _mem >= 1:
            raise ValueError(f"`memory` {memory} must be >= 1 Byte")
        _rlimits = _check_rlimits(
            open_files=open_files, file_size=_memory(file_size), stack=_memory(stack), core_size=_memory(core_size)
        )
        _cpu_list = None if cpus is None else _cpus.cpu_list(cpus)
        if _cpu_list is not None:
            _cpus.check_allowed(_cpu_list)
        _cpu_quota = None if cpu_quota is None else _cpus.cpu_quota_value(cpu_quota)
        if isinstance(context, str) and context not in valid_contexts:
            raise ValueError(f"`context` {context} must be in {valid_contexts}")
        has_start_method = callable(getattr(context, "get_start_method", None))
        if context is not None and not isinstance(context, str) and not has_start_method:
            raise ValueError(f"`context` {context} must be in {valid_contexts} or a multiprocessing context")
        if isinstance(wrap_errors, dict):
            valid_keys = {"memory", "wall_time", "cpu_time", "pynisher"}
            keys = list(wrap_errors.keys())
            if not all(key in valid_keys for key in keys):
                raise ValueError(f"`wrap_errors` has unknown key in {keys}, each must be in {valid_keys} ")
        elif not isinstance(wrap_errors, (bool, list, tuple, set)):
            raise ValueError(f"Arg `wrap_errors` is ill formatted {wrap_errors}")

        self.func = func
        self.name = name
        self.cpu_time = _cpu_time
        self.memory = _mem
        self.wall_time = _wall_time
        #: Seconds after which ``SoftTimeLimit`` is raised inside the function (None: no soft limit).
        self.soft_wall_time = _soft_wall
        self.soft_cpu_time = _soft_cpu
        #: Per-process rlimits (descriptors; bytes) that the kernel holds in every process of the tree.
        self.open_files: Optional[int] = _rlimits["open_files"]
        self.file_size: Optional[int] = _rlimits["file_size"]
        self.stack: Optional[int] = _rlimits["stack"]
        self.core_size: Optional[int] = _rlimits["core_size"]
        #: The CPUs every process of the tree runs on (sorted), and the cores' worth of time per second the tree
        #: may use together.
        self.cpus: Optional[Tuple[int, ...]] = _cpu_list
        self.cpu_quota: Optional[float] = _cpu_quota
        self.raises = raises
        self.context = context
        self.warnings = warnings
        self.wrap_errors = wrap_errors
        self.terminate_child_processes = terminate_child_processes
        self.forceful_keyboard_interrupt = forceful_keyboard_interrupt
        if _cpu_quota is not None:
            if self._backend() == "proc":
                raise ValueError(
                    "`cpu_quota` needs a cgroup backend's CPU controller, and `terminate_child_processes=False`"
                    " runs the call on the proc backend (its leftovers must outlive the call's groups)"
                )
            _cpus.check_quota(_cpu_quota, self._backend())
        # Per calling thread: what ``last_run`` holds (threads calling at once each see their own report).
        self._local = threading.local()
        #: pynisher 1.x's ``_process``: the process that runs (ran) the last call's function, a psutil.Process
        #: (or ``pynish._process.Handle`` without psutil); None before the first call.
        self._process: Any = None
        functools.update_wrapper(self, func, updated=())  # type: ignore[arg-type]

    @property
    def last_run(self) -> Optional[Report]:
        """pynish's report of the last call made from this thread; None before it, or when it could not start."""
        return getattr(self._local, "last_run", None)

    @last_run.setter
    def last_run(self, report: Optional[Report]) -> None:
        self._local.last_run = report

    def __getstate__(self) -> Dict[str, Any]:
        # Sent to another process (a pool's worker), it carries its settings, not this process's calls.
        state = dict(self.__dict__)
        state.pop("_local", None)
        state["_process"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # -- pynisher's interface -------------------------------------------------------------------------------

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    @staticmethod
    def supports(limit: str) -> bool:
        """Whether ``limit`` ("wall_time", "cpu_time", "memory" or "decorator") is supported on this system."""
        return supports(limit)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The same as calling: runs the function once under the limits."""
        return self(*args, **kwargs)

    @property
    def usage(self) -> Optional[Usage]:
        """What the last call's whole tree used: wall time, CPU user/system, peak memory, most processes."""
        return None if self.last_run is None else self.last_run.usage

    @property
    def start_method(self) -> str:
        """The context a call uses: the one given (a name, or any library's context object by its start method),
        else the running multiprocessing's default; a start method pynish does not have (loky's) is taken as the
        nearest of fork, forkserver and spawn (``nearest_start_method``)."""
        if self.context is None:
            name = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
        elif isinstance(self.context, str):
            name = self.context
        else:
            name = self.context.get_start_method()
        return nearest_start_method(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the function once with these arguments under the limits, and blocks until it is done."""
        self.last_run = None
        if _mainmodule.bootstrapping:
            # This process is a new one re-running the caller's unguarded main module, which reached this call.
            raise RuntimeError(_BOOTSTRAPPING)
        method = self.start_method
        opts = _child.Options(
            self.name,
            self.memory,
            self.cpu_time,
            self.wall_time,
            self.warnings,
            self.wrap_errors,
            self.terminate_child_processes,
            self.soft_wall_time is not None or self.soft_cpu_time is not None,
            self.file_size,
        )
        if self.warnings and self.memory is not None:
            _warn_memory(self.memory, method)
        folder = _folder.Folder(inside=_child.running_in)
        directory = folder.path
        guarded = _signals.guard()
        try:
            report_path = os.path.join(directory, "report.json")
            flags = [
                "--quiet",
                "--report",
                report_path,
                *limit_args(
                    wall_time=self.wall_time,
                    cpu_time=self.cpu_time,
                    memory=None if self.memory is None else int(self.memory),
                    grace=GRACE_S,
                    label=_label(self.name),
                    backend=self._backend(),
                ),
            ]
            # pynish sends SIGURG (its default soft signal) to every member at each; the function's process
            # turns it into SoftTimeLimit (``_call.child``).
            if self.soft_wall_time is not None:
                flags += ["--soft-wall-time", f"{self.soft_wall_time!r}s"]
            if self.soft_cpu_time is not None:
                flags += ["--soft-cpu-time", f"{self.soft_cpu_time!r}s"]
            flags += rlimit_args(self.open_files, self.file_size, self.stack, self.core_size)
            flags += _cpus.cpu_args(self.cpus, self.cpu_quota)
            if not self.terminate_child_processes:
                # pynish ends when the function's process does and leaves its children running, as pynisher.
                flags.append("--leave-leftovers")
            display = ["python", f"<{method}>", _child.callstring(self.func, (), {})[:-2]]
            # The function's process writes its pid here as soon as it exists (``_process``).
            _process.prepare()
            announce_read, announce = os.pipe()
            try:
                launched = self._start(method, flags, display, args, kwargs, opts, directory, announce)
            except BaseException:
                os.close(announce_read)
                raise
            finally:
                os.close(announce)

            def started() -> None:
                self._process = _process.handle(_process.read_pid(announce_read))

            _signals.started(launched, folder)
            _folder.sweep()
            try:
                status = self._wait(launched, started)
            finally:
                _signals.ended(launched)
            report = self._read_report(report_path, status)
            self.last_run = report
            loaded, launched.loaded = launched.loaded, None
            return self._outcome(report, loaded, args, kwargs)
        finally:
            folder.remove()
            _signals.unguard(guarded)

    def _start(
        self,
        method: str,
        flags: list,
        display: list,
        args: tuple,
        kwargs: dict,
        opts: Any,
        directory: str,
        announce: int,
    ) -> _launch.Launched:
        """Starts pynish on the call (a hook: ``pynish.Executor`` starts its tasks from its own server)."""
        if method == "fork":
            return _launch.start_fork(flags, display, self.func, args, kwargs, opts, directory, announce)
        if method == "forkserver":
            return _launch.start_forkserver(flags, display, self.func, args, kwargs, opts, directory, announce)
        return _launch.start_spawn(flags, self.func, args, kwargs, opts, directory, announce)

    def _wait(self, launched: _launch.Launched, started: Callable[[], None]) -> int:
        """Waits for pynish to end (a hook: ``pynish.Executor`` ends a cancelled task's tree through it)."""
        return _launch.wait(launched, self.forceful_keyboard_interrupt, started)

    def _backend(self) -> Optional[str]:
        """``proc`` with ``terminate_child_processes=False``, whose leftovers must outlive the run's cgroups; else
        pynish's own choice (``auto``: a cgroup only where a memory limit needs one, since making one costs
        milliseconds per call; $PYNISH_BACKEND overrides)."""
        return None if self.terminate_child_processes else "proc"

    # -- deciding what a call gives back ---------------------------------------------------------------------

    def _read_report(self, path: str, status: int) -> Report:
        try:
            with open(path) as f:
                return parse_report(f.read())
        except FileNotFoundError:
            raise exceptions.PynisherException(
                f"pynish ({binary()}) ended with status {status} and wrote no report (its message, if any, is on"
                " stderr)"
            ) from None

    def _outcome(self, report: Report, loaded: Optional[tuple], args: tuple, kwargs: dict) -> Any:
        call = _child.callstring(self.func, args, kwargs)
        err: Optional[BaseException] = None
        tb: Optional[str] = None
        result: Any = EMPTY
        if loaded is not None:
            if loaded[0] == "ok":
                result = loaded[1]
            else:
                err, tb = loaded[1], loaded[2]
        verdict = report.verdict
        # The report names the limit that was hit: it decides over whatever the function left behind.
        if verdict == "wall_time":
            err = exceptions.WallTimeoutException(
                f"Your function took longer than {self.wall_time} seconds to run.\n{call}"
            )
        elif verdict == "cpu_time":
            err = exceptions.CpuTimeoutException(f"Did not finish in cpu time ({self.cpu_time}s)\n{call}")
        elif verdict == "memory":
            err = exceptions.MemoryLimitException(f"Not enough memory to run function ({self.memory}B).\n{call}")
        elif verdict == "processes":
            err = exceptions.PynisherException(f"Too many processes.\n{call}")
        elif verdict == "file_size":
            # A member of the tree was killed by SIGXFSZ (one that does not ignore it, as Python does).
            err, tb = _child.file_size_exception(int(self.file_size or 0), call), None
        elif verdict == "spawn_error":
            err, tb = exceptions.PynisherException(f"pynish could not start the function: {report.error}"), None
        elif loaded is None:
            tb = None
            if report.signal == "SIGSEGV" and self.memory is not None:
                err = exceptions.MemoryLimitException(
                    "The function exited with a segmentation error (SIGSEGV) and a memory limit was set."
                    f" We presume this is due to the memory limit.\n{call}"
                )
            elif report.command_exit_code == 0:
                err = exceptions.PynisherException(
                    f"Function ended properly but no result was received. Got exitcode 0 from subprocess"
                    f" that ran:\n{call}"
                )
            else:
                how = report.signal or f"exit code {report.command_exit_code}"
                err = exceptions.PynisherException(
                    f"Unknown reason for {how}, no result or error received and killed process\n{call}"
                )
        if err is None:
            return result
        if not self.raises:
            return EMPTY
        if isinstance(err, MemoryError) and not isinstance(err, exceptions.MemoryLimitException) and self.memory:
            err = exceptions.MemoryLimitException(f"MemoryError raised with limit {self.memory}B")
        if self.file_size is not None and _child.file_too_large(err):
            err = _child.file_size_exception(self.file_size, call)
        return _raise_with(err, tb)


limit = Pynisher


def restricted(
    name: Optional[str] = None,
    *,
    memory: Union[int, Tuple[int, str], None] = None,
    cpu_time: Union[int, Tuple[float, str], None] = None,
    wall_time: Union[int, Tuple[float, str], None] = None,
    soft_wall_time: Union[float, Tuple[float, str], None] = None,
    soft_cpu_time: Union[float, Tuple[float, str], None] = None,
    open_files: Optional[int] = None,
    file_size: Union[int, Tuple[float, str], None] = None,
    stack: Union[int, Tuple[float, str], None] = None,
    core_size: Union[int, Tuple[float, str], None] = None,
    cpus: Optional[_cpus.Cpus] = None,
    cpu_quota: Optional[float] = None,
    context: Union[str, BaseContext, None] = None,
    raises: bool = True,
    warnings: bool = True,
    wrap_errors: WrapErrors = False,
    terminate_child_processes: bool = True,
    forceful_keyboard_interrupt: bool = True,
) -> Callable[[Callable[..., T]], Callable[..., Any]]:
    """Limits every call of the decorated function: ``@restricted(wall_time=1)``.

    Unlike pynisher, every context works (the spawn contexts ship the undecorated function by value) and every
    argument is honoured. The arguments are ``limit``'s.
    """
    if not supports("decorator"):
        raise ValueError("`@restricted(...)` is not supported on this platform, please use `limit`")
    if callable(name):
        raise ValueError("Please pass arguments to decorator `@restricted`")
    settings: Dict[str, Any] = dict(
        name=name,
        memory=memory,
        cpu_time=cpu_time,
        wall_time=wall_time,
        soft_wall_time=soft_wall_time,
        soft_cpu_time=soft_cpu_time,
        open_files=open_files,
        file_size=file_size,
        stack=stack,
        core_size=core_size,
        cpus=cpus,
        cpu_quota=cpu_quota,
        context=context,
        raises=raises,
        warnings=warnings,
        wrap_errors=wrap_errors,
        terminate_child_processes=terminate_child_processes,
        forceful_keyboard_interrupt=forceful_keyboard_interrupt,
    )

    def decorator(func: Callable[..., T]) -> Callable[..., Any]:
        limited = Pynisher(func, **settings)  # bad arguments are refused here, at decoration

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return limited(*args, **kwargs)

        return wrapper

    return decorator
