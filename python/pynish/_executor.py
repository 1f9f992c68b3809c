"""``pynish.Executor``: a ``concurrent.futures.Executor`` whose every task is one limited call, its own tree.

Theory of operation. ``max_workers`` threads in the caller take tasks in submission order (``_tasks``); each runs
one task as a ``pynish.limit`` call does (``_limit.Pynisher``, here a per-task copy) and blocks until pynish has
ended it, then settles the task's Future with the value, the function's exception, or the exception of the limit
it hit, and its report. A task that hits a limit, raises, segfaults or is OOM-killed therefore touches nothing but
its own Future: no worker process is shared, so none can break the executor.

Tasks start from the executor's own warm forkserver (``_call.forkserver``), started at construction with the modules of
``preload`` imported once; ``context="fork"`` or ``"spawn"`` start them as ``limit`` does instead.

``memory_budget``: a task leaves the queue only while the memory limits of the running tasks plus its own stay
within the budget; the queue stays in order (the head waits), so no large task starves.

Ending running work: ``Future.cancel()`` of a running task, leaving the ``with`` block on an exception (Ctrl-C
included), an interrupted ``shutdown`` and a caller ended by Ctrl-C send SIGTERM to the task's pynish, which ends
its whole tree (first signal, grace, SIGKILL). The worker thread waits until pynish is gone, so a slot frees only
with its tree. If the caller dies, every pynish sees the caller's lifeline close (``_os.lifeline``) and does the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import os
import threading
import weakref
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, RUNNING
from multiprocessing.context import BaseContext
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple, Union

from . import _tasks
from ._call import forkserver as _forkserver
from ._call.binary import binary
from ._cpus import Cpus, cpu_list
from ._limit import Pynisher, _memory
from ._report import Report
from ._support import contexts as valid_contexts

__all__ = ["Executor", "Future"]


class Future(cf.Future):
    """A ``concurrent.futures.Future`` with the task's pynish report, whose ``cancel()`` also ends a running task."""

    def __init__(self) -> None:
        super().__init__()
        #: pynish's report of the task (verdict, usage of its whole tree, ...); None until the task is done.
        self.report: Optional[Report] = None
        self._task: Optional[_tasks.Task] = None
        self._pool: Optional[_tasks.Pool] = None

    def cancel(self) -> bool:
        """Cancels the task. Beyond the standard (as pebble does): a running task is cancelled too, and True is
        returned; its whole tree is then ended (SIGTERM, grace, SIGKILL), and its worker is free once it is gone."""
        with self._condition:
            running = self._state == RUNNING
            if running:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                self._condition.notify_all()
        if running:
            self._invoke_callbacks()  # type: ignore[attr-defined]
            if self._task is not None:
                self._task.end()
            return True
        cancelled = super().cancel()
        if cancelled and self._pool is not None:
            self._pool.wake()  # a cancelled head of the queue no longer holds back the ones behind it
        return cancelled


def _placeholder() -> None:
    """Stands for the function while the executor's settings are checked."""


class Executor(cf.Executor):
    """Runs every task as its own limited, supervised process tree, at most ``max_workers`` at once: by default as
    many as the CPUs this process may use, or as ``cpus`` names when every task is pinned to those.

    ``wall_time``, ``cpu_time``, ``memory``, the soft time limits, the per-process rlimits (``open_files``,
    ``file_size``, ``stack``, ``core_size``), the CPU knobs (``cpus``, ``cpu_quota``: each task's tree on its own)
    and the other keyword arguments are those of ``pynish.limit`` and apply to every task; a
    ``pynish.limit(...)`` object submitted as the function runs under its own instead.
    ``memory_budget`` (bytes, or ``(x, "MB")``): tasks start only while the memory limits of the running ones sum
    to no more than it. ``preload``: modules the warm server imports once (context ``"forkserver"``, the default).
    """

    def __init__(
        self,
        max_workers: Optional[int] = None,
        *,
        wall_time: Union[int, Tuple[float, str], None] = None,
        cpu_time: Union[int, Tuple[float, str], None] = None,
        memory: Union[int, Tuple[int, str], None] = None,
        soft_wall_time: Union[float, Tuple[float, str], None] = None,
        soft_cpu_time: Union[float, Tuple[float, str], None] = None,
        open_files: Optional[int] = None,
        file_size: Union[int, Tuple[float, str], None] = None,
        stack: Union[int, Tuple[float, str], None] = None,
        core_size: Union[int, Tuple[float, str], None] = None,
        cpus: Optional[Cpus] = None,
        cpu_quota: Optional[float] = None,
        context: Union[str, BaseContext, None] = None,
        memory_budget: Union[int, Tuple[float, str], None] = None,
        preload: Iterable[str] = (),
        **options: Any,
    ) -> None:
        if max_workers is None and cpus is not None:
            # Every task's tree is pinned to these CPUs: more tasks at once would only take turns on them.
            max_workers = len(cpu_list(cpus))
        elif max_workers is None:
            max_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if not isinstance(max_workers, int) or isinstance(max_workers, bool):
            raise TypeError(f"max_workers must be an int, not {type(max_workers).__name__}")
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if isinstance(context, BaseContext):
            context = context.get_start_method()
        context = "forkserver" if context is None else context
        if context not in valid_contexts:
            raise ValueError(f"`context` {context} must be in {valid_contexts}")
        budget = _memory(memory_budget)
        if budget is not None and not (isinstance(budget, int) and budget >= 1):
            raise ValueError(f"`memory_budget` {memory_budget} must be >= 1 Byte")
        modules = (preload,) if isinstance(preload, str) else tuple(preload)
        if modules and context != "forkserver":
            raise ValueError(f"`preload` needs context 'forkserver', not {context!r}")
        import importlib.util

        for name in modules:
            if importlib.util.find_spec(name) is None:
                raise ModuleNotFoundError(f"`preload`: no module named {name!r}", name=name)
        # Bad limits and options get pynisher's errors here, at once.
        self._template = Pynisher(
            _placeholder,
            wall_time=wall_time,
            cpu_time=cpu_time,
            memory=memory,
            soft_wall_time=soft_wall_time,
            soft_cpu_time=soft_cpu_time,
            open_files=open_files,
            file_size=file_size,
            stack=stack,
            core_size=core_size,
            cpus=cpus,
            cpu_quota=cpu_quota,
            context=context,
            **options,
        )
        if budget is not None and self._template.memory is not None and self._template.memory > budget:
            raise ValueError(f"`memory` {memory} is over the `memory_budget` {memory_budget}")
        self._context = context
        self._budget = budget
        self._pool = _tasks.Pool(max_workers, budget)
        _tasks.open_pools.add(self._pool)
        # Dropped without shutdown: its idle workers end (the tasks already queued still run).
        weakref.finalize(self, self._pool.close)
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._preload = modules
        self._server: Optional[_forkserver._Client] = None
        if context == "forkserver":
            self._server = self._start_server()

    @property
    def max_workers(self) -> int:
        return self._pool.max_workers

    def _task(self, fn: Callable[..., Any]) -> _tasks.Task:
        if isinstance(fn, Pynisher):
            template = fn
            if fn.context is None:
                template = copy.copy(fn)
                template.context = self._context
        else:
            template = copy.copy(self._template)
            template.func = fn
            template.__dict__.pop("__wrapped__", None)
        return _tasks.Task(template, self._server)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        """Starts ``fn(*args, **kwargs)`` as its own limited tree when a worker (and the budget) allows."""
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        task = self._task(fn)
        memory = 0
        if self._budget is not None:
            if task.memory is None:
                raise ValueError("a task under a `memory_budget` needs a memory limit (the executor's or its own)")
            if task.memory > self._budget:
                raise ValueError(f"the task's memory limit {task.memory}B is over the memory_budget {self._budget}B")
            memory = int(task.memory)
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._server is not None and not self._server.alive():
                # The warm server died (killed from outside): a new one, so that the executor never breaks.
                self._server = self._start_server()
            task.server = self._server
            future = Future()
            future._task = task
            future._pool = self._pool
            self._pool.put(_tasks.Item(future, task, args, kwargs, memory))
        return future

    def _start_server(self) -> _forkserver._Client:
        # A forked child (a fork-context task, a multiprocessing worker) closes its copy of the server's socket
        # (``_call.forkserver``), so the server ends with the caller.
        return _forkserver._Client(binary(), self._preload)

    def map(  # type: ignore[override]
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: Optional[float] = None, chunksize: int = 1
    ) -> Iterator[Any]:
        """As the standard's; every item is its own task (and tree), so ``chunksize`` only has to be >= 1."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        return super().map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As the standard's. Interrupted while waiting (Ctrl-C), it ends every running tree before re-raising."""
        with self._shutdown_lock:
            self._shutdown = True
        if cancel_futures:
            self._pool.cancel_pending()
        self._pool.close()
        if not wait:
            return
        try:
            self._pool.join()
        except BaseException:
            self.terminate()
            raise
        self._stop_server()

    def terminate(self) -> None:
        """Cancels every pending task and ends every running one's tree; waits until they are gone."""
        with self._shutdown_lock:
            self._shutdown = True
        self._pool.cancel_pending()
        self._pool.end_running()
        self._pool.close()
        while True:
            try:
                self._pool.join()
                break
            except KeyboardInterrupt:
                self._pool.end_running()  # again: the trees go within their grace period anyway
        self._stop_server()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leaving the block normally waits for every task (the standard's ``shutdown(wait=True)``); leaving it on
        an exception (Ctrl-C included) ends every running tree and cancels the queue first."""
        if exc_type is not None:
            self.terminate()
        else:
            self.shutdown(wait=True)
