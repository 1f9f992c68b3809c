"""The exceptions a limited call raises, with pynisher 1.x's names and hierarchy."""

from __future__ import annotations

__all__ = [
    "PynisherException",
    "TimeoutException",
    "CpuTimeoutException",
    "WallTimeoutException",
    "MemoryLimitException",
    "FileSizeLimitException",
]


class PynisherException(Exception):
    """Base class of every pynish exception: a limit was hit, or the call could not give a result."""

    def __reduce__(self) -> tuple:
        # Rebuilt by calling the class with its args, by every pickler. Without this, tblib's pickling support
        # (which dask.distributed installs) takes MemoryLimitException's inherited MemoryError.__init__ for a
        # custom one and rebuilds it with MemoryError.__new__, which refuses a subclass: the client then never
        # gets the exception (a hung future, a BrokenProcessPool).
        state = getattr(self, "__dict__", None)
        return (type(self), self.args, state) if state else (type(self), self.args)


class TimeoutException(PynisherException):
    """A time limit (wall time or CPU time) was hit."""


class CpuTimeoutException(TimeoutException):
    """The function's process tree used up its CPU time."""


class WallTimeoutException(TimeoutException):
    """The function did not finish within its wall time."""


class SoftTimeLimit(PynisherException):
    """Raised inside the function, in its main thread, when its ``soft_wall_time`` or ``soft_cpu_time`` is reached.

    Caught, the function can return its best result so far, and the call returns it; uncaught, the call raises it
    in the caller. Inside a long C call (a NumPy kernel, a blocking read) it arrives when the call returns to
    Python; the hard limit (``wall_time``, ``cpu_time``) stays the backstop.
    """


class MemoryLimitException(PynisherException, MemoryError):
    """The function's process tree needed more memory than its limit.

    Also a ``MemoryError``: a ``MemoryError`` raised inside a function with a memory limit arrives as this.
    """


class FileSizeLimitException(PynisherException, OSError):
    """A process of the function's tree wrote past its ``file_size`` limit (RLIMIT_FSIZE): pynish's verdict
    ``file_size``.

    Also an ``OSError`` with ``errno.EFBIG``, the error Python code sees at such a write: CPython ignores SIGXFSZ,
    so the write raises ``OSError: [Errno 27] File too large`` instead of killing the process, and that error,
    raised inside a function with a ``file_size`` limit, arrives as this.
    """


class UnpicklableResult(PynisherException, TypeError):
    """The function's result (or exception) could not be pickled to come back. Also a ``TypeError``, which is
    what pynisher raises then (its pickler's own error)."""
