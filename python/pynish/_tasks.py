"""The machinery under ``pynish.Executor``: a task (``Task``, one limited call), the queue and the worker threads
that run tasks (``Pool``), and their end at the interpreter's exit.

Each worker thread takes the next task in submission order (and, under a memory budget, only once the memory
limits of the running tasks plus its own fit), runs it as a ``pynish.limit`` call does, blocking until pynish has
ended the task's tree, and settles the task's Future with its value or exception, and its report.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import signal
import sys
import threading
import weakref
from typing import Any, Callable, Deque, List, Optional, Set

from ._call import forkserver as _forkserver
from ._call import launch as _launch
from ._limit import Pynisher

class Task(Pynisher):
    """One task: a copy of the Pynisher that describes it, so that its report and process are its own."""

    server: Optional[_forkserver._Client] = None

    def __init__(self, template: Pynisher, server: Optional[_forkserver._Client]) -> None:
        # The template's settings, not its calls: a fresh last_run and process of its own (as when pickled).
        self.__setstate__(template.__getstate__())
        self.server = server
        self._lock = threading.Lock()
        self._launched: Optional[_launch.Launched] = None
        self._ending = False

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
        if method == "forkserver" and self.server is not None:
            return _launch.start_forkserver(
                flags, display, self.func, args, kwargs, opts, directory, announce, server=self.server
            )
        return super()._start(method, flags, display, args, kwargs, opts, directory, announce)

    def _wait(self, launched: _launch.Launched, started: Callable[[], None]) -> int:
        with self._lock:
            self._launched = launched
            ending = self._ending
        if ending:
            launched.signal(signal.SIGTERM)
        return super()._wait(launched, started)

    def end(self) -> None:
        """Ends the task's tree: now if pynish runs, else as soon as it has started."""
        with self._lock:
            self._ending = True
            launched = self._launched
        if launched is not None:
            launched.signal(signal.SIGTERM)


class Item:
    """A submitted task: its Future (a ``pynish.Future``), the call, and the memory it counts against a budget."""

    __slots__ = ("future", "task", "args", "kwargs", "memory")

    def __init__(self, future: Any, task: Task, args: tuple, kwargs: dict, memory: int) -> None:
        self.future = future
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.memory = memory


class Pool:
    """The queue, the running set and the worker threads; shared by the threads without holding the Executor."""

    def __init__(self, max_workers: int, budget: Optional[int]) -> None:
        self.max_workers = max_workers
        self.budget = budget
        self.cond = threading.Condition()
        self.pending: Deque[Item] = collections.deque()
        self.running: Set[Item] = set()
        self.in_use = 0
        self.idle = 0
        self.closed = False
        self.threads: List[threading.Thread] = []

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def put(self, item: Item) -> None:
        with self.cond:
            self.pending.append(item)
            if self.idle < len(self.pending) and len(self.threads) < self.max_workers:
                thread = threading.Thread(target=self._work, name=f"pynish-executor-{len(self.threads)}")
                thread.start()
                self.threads.append(thread)
            self.cond.notify()

    def _next(self) -> Optional[Item]:
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
                run(item)
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
open_pools: "weakref.WeakSet[Pool]" = weakref.WeakSet()


def _closeopen_pools() -> None:
    # Ending on Ctrl-C (an uncaught KeyboardInterrupt, which Python has just printed): every running tree ends and
    # the queue is dropped, as leaving a with block on it does; the caller then exits within the grace period.
    interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
    for pool in list(open_pools):
        if interrupted:
            pool.cancel_pending()
            pool.end_running()
        pool.close()


if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_closeopen_pools)  # type: ignore[attr-defined]


def run(item: Item) -> None:
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
