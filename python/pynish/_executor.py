"""``pynish.Executor``: a ``concurrent.futures.Executor`` whose every task is one limited call, its own tree.

Theory of operation. ``max_workers`` threads in the caller take tasks in submission order; each runs one task as a
``pynish.limit`` call does (``_limit.Pynisher``, here a per-task copy ``_Task``) and blocks until pynish has ended
it, then settles the task's Future with the value, the function's exception, or the exception of the limit it hit,
and its report. A task that hits a limit, raises, segfaults or is OOM-killed therefore touches nothing but its own
Future: no worker process is shared, so none can break the executor.

Tasks start from the executor's own warm forkserver (``_forkserver``), started at construction with the modules of
``preload`` imported once; ``context="fork"`` or ``"spawn"`` start them as ``limit`` does instead.

``memory_budget``: a task leaves the queue only while the memory limits of the running tasks plus its own stay
within the budget; the queue stays in order (the head waits), so no large task starves.

Ending running work: ``Future.cancel()`` of a running task, leaving the ``with`` block on an exception (Ctrl-C
included), an interrupted ``shutdown`` and a caller ended by Ctrl-C send SIGTERM to the task's pynish, which ends
its whole tree (first signal, grace, SIGKILL). The worker thread waits until pynish is gone, so a slot frees only
with its tree. If the caller dies, every pynish sees the caller's lifeline close (``_lifeline``) and does the same.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import copy
import os
import signal
import sys
import threading
import weakref
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, RUNNING
from multiprocessing.context import BaseContext
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Set, Tuple, Union

from . import _call, _forkserver
from ._binary import binary
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
        self._task: Optional[_Task] = None
        self._pool: Optional[_Pool] = None

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


class _Task(Pynisher):
    """One task: a copy of the Pynisher that describes it, so that its report and process are its own."""

    server: Optional[_forkserver._Client] = None

    def __init__(self, template: Pynisher, server: Optional[_forkserver._Client]) -> None:  # noqa: D107
        self.__dict__.update(template.__dict__)
        self.last_run = None
        self.server = server
        self._lock = threading.Lock()
        self._launched: Optional[_call.Launched] = None
        self._ending = False

    def _start(
        self, method: str, flags: list, display: list, args: tuple, kwargs: dict, opts: Any, directory: str
    ) -> _call.Launched:
        if method == "forkserver" and self.server is not None:
            return _call.start_forkserver(flags, display, self.func, args, kwargs, opts, directory, self.server)
        return super()._start(method, flags, display, args, kwargs, opts, directory)

    def _wait(self, launched: _call.Launched) -> int:
        with self._lock:
            self._launched = launched
            ending = self._ending
        if ending:
            launched.signal(signal.SIGTERM)
        return super()._wait(launched)

    def end(self) -> None:
        """Ends the task's tree: now if pynish runs, else as soon as it has started."""
        with self._lock:
            self._ending = True
            launched = self._launched
        if launched is not None:
            launched.signal(signal.SIGTERM)


class _Item:
    __slots__ = ("future", "task", "args", "kwargs", "memory")

    def __init__(self, future: Future, task: _Task, args: tuple, kwargs: dict, memory: int) -> None:
        self.future = future
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.memory = memory


class _Pool:
    """The queue, the running set and the worker threads; shared by the threads without holding the Executor."""

    def __init__(self, max_workers: int, budget: Optional[int]) -> None:
        self.max_workers = max_workers
        self.budget = budget
        self.cond = threading.Condition()
        self.pending: Deque[_Item] = collections.deque()
        self.running: Set[_Item] = set()
        self.in_use = 0
        self.idle = 0
        self.closed = False
        self.threads: List[threading.Thread] = []

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def put(self, item: _Item) -> None:
        with self.cond:
            self.pending.append(item)
            if self.idle < len(self.pending) and len(self.threads) < self.max_workers:
                thread = threading.Thread(target=self._work, name=f"pynish-executor-{len(self.threads)}")
                thread.start()
                self.threads.append(thread)
            self.cond.notify()

    def _next(self) -> Optional[_Item]:
        """The next task this worker may start, waiting for one (and for room in the budget); None: closed."""
        with self.cond:
            while True:
                while self.pending and self.pending[0].future.cancelled():
                    self.pending.popleft().future.set_running_or_notify_cancel()
                if self.pending:
                    head = self.pending[0]
                    if self.budget is None or self.in_use + head.memory <= self.budget:
                        self.pending.popleft()
                        if not head.future.set_running_or_notify_cancel():
                            continue
                        self.in_use += head.memory
                        self.running.add(head)
                        return head
                elif self.closed:
                    self.cond.notify_all()  # the others may be waiting on the same condition
                    return None
                self.idle += 1
                try:
                    self.cond.wait()
                finally:
                    self.idle -= 1

    def _work(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            try:
                _run(item)
            finally:
                with self.cond:
                    self.running.discard(item)
                    self.in_use -= item.memory
                    self.cond.notify_all()

    def cancel_pending(self) -> None:
        with self.cond:
            items = list(self.pending)
            self.pending.clear()
            self.cond.notify_all()
        for item in items:
            if item.future.cancel():
                item.future.set_running_or_notify_cancel()

    def end_running(self) -> None:
        with self.cond:
            items = list(self.running)
        for item in items:
            item.future.cancel()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def join(self) -> None:
        for thread in list(self.threads):
            thread.join()


#: Every pool not yet closed: at the interpreter's exit they are closed before its threads are joined, so that an
#: executor never shut down lets the caller exit once its queue is done (as the standard's executors do).
_open_pools: "weakref.WeakSet[_Pool]" = weakref.WeakSet()


def _close_open_pools() -> None:
    # Ending on Ctrl-C (an uncaught KeyboardInterrupt, which Python has just printed): every running tree ends and
    # the queue is dropped, as leaving a with block on it does; the caller then exits within the grace period.
    interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
    for pool in list(_open_pools):
        if interrupted:
            pool.cancel_pending()
            pool.end_running()
        pool.close()


if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_close_open_pools)  # type: ignore[attr-defined]


def _run(item: _Item) -> None:
    task, future = item.task, item.future
    try:
        value = task(*item.args, **item.kwargs)
    except BaseException as e:
        future.report = task.last_run
        try:
            future.set_exception(e)
        except cf.InvalidStateError:
            pass  # cancelled while it ran
        return
    future.report = task.last_run
    try:
        future.set_result(value)
    except cf.InvalidStateError:
        pass


def _placeholder() -> None:
    """Stands for the function while the executor's settings are checked."""


class Executor(cf.Executor):
    """Runs every task as its own limited, supervised process tree, at most ``max_workers`` at once.

    ``wall_time``, ``cpu_time``, ``memory`` and the other keyword arguments are those of ``pynish.limit`` and apply
    to every task; a ``pynish.limit(...)`` object submitted as the function runs under its own instead.
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
        context: Union[str, BaseContext, None] = None,
        memory_budget: Union[int, Tuple[float, str], None] = None,
        preload: Iterable[str] = (),
        **options: Any,
    ) -> None:
        if max_workers is None:
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
            _placeholder, wall_time=wall_time, cpu_time=cpu_time, memory=memory, context=context, **options
        )
        if budget is not None and self._template.memory is not None and self._template.memory > budget:
            raise ValueError(f"`memory` {memory} is over the `memory_budget` {memory_budget}")
        self._context = context
        self._budget = budget
        self._pool = _Pool(max_workers, budget)
        _open_pools.add(self._pool)
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

    def _task(self, fn: Callable[..., Any]) -> _Task:
        if isinstance(fn, Pynisher):
            template = fn
            if fn.context is None:
                template = copy.copy(fn)
                template.context = self._context
        else:
            template = copy.copy(self._template)
            template.func = fn
            template.__dict__.pop("__wrapped__", None)
        return _Task(template, self._server)

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
            self._pool.put(_Item(future, task, args, kwargs, memory))
        return future

    def _start_server(self) -> _forkserver._Client:
        # A forked child (a fork-context task, a multiprocessing worker) closes its copy of the server's socket
        # (``_forkserver``), so the server ends with the caller.
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
