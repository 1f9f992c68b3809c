"""A call's data travels through pipes, never through files: the call (spawn, forkserver) from the caller to
the function's process, and the outcome back. So no /dev/shm or $TMPDIR, however small, limits what a call takes
or returns, and no tmpfs page of it is charged to the function's memory limit (a tmpfs page is charged to the
group of the process that first touched it, for as long as the file lives).

The outcome is pickled straight into the pipe, in length-prefixed chunks: a large value crosses without a copy
in the function's process. A ``RESET`` chunk drops what came before (the plain pickler failed halfway and
cloudpickle starts again); an ``END`` chunk says the outcome is whole. The caller unpickles while it waits, as
the chunks come, so the function never blocks on a full pipe and a large value is never held twice.
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False  # not from typing: a fresh child does not pay for importing it
if TYPE_CHECKING:
    from typing import Any, List, Optional

_HEADER = struct.Struct("<Q")
RESET = 2**64 - 1
END = 2**64 - 2
#: Pieces this small go out with their header in one write.
_SMALL = 1 << 16
#: Pipe capacity asked for (Linux's default limit for unprivileged processes): fewer round trips for big data.
PIPE_SIZE = 1 << 20


def pipe() -> tuple:
    """A close-on-exec pipe (read, write), as large as Linux grants."""
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        import fcntl

        fcntl.fcntl(write, 1031, PIPE_SIZE)  # F_SETPIPE_SZ
    except (OSError, ImportError):
        pass
    return read, write


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view) :]


class Writer:
    """In the function's process: a ``write`` for pickle that sends each piece as a chunk."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if n < _SMALL:
            if n:
                _write_all(self.fd, _HEADER.pack(n) + view.tobytes())
        else:
            _write_all(self.fd, _HEADER.pack(n))
            _write_all(self.fd, view)
        return n

    def reset(self) -> None:
        _write_all(self.fd, _HEADER.pack(RESET))

    def end(self) -> None:
        _write_all(self.fd, _HEADER.pack(END))


class Cut(Exception):
    """The stream ended before the outcome was whole (the function's process died, or was killed, mid-way)."""


class _Restart(Exception):
    """A ``RESET`` chunk: the outcome is sent again from its start."""


class Reader:
    """In the caller: the outcome's chunks as a file for ``pickle.load``, read from a non-blocking pipe while
    the call runs. A large value is read straight into the object being built: the caller holds one copy.

    ``wait()`` blocks until the pipe is readable (True) or pynish has ended (False: what is left is read, then
    the stream counts as cut); ``Launched`` gives it, feeding the call meanwhile."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd: Optional[int] = fd
        self.wait: Any = None
        self._ended = False
        self._left = 0  # bytes of the current chunk not read yet

    def _some(self, view: memoryview) -> int:
        while True:
            try:
                n = os.readv(self.fd, [view])  # type: ignore[arg-type]
            except BlockingIOError:
                if self._ended:
                    raise Cut() from None
                self._ended = not self.wait()
                continue
            if not n:
                raise Cut()
            return n

    def _exactly(self, view: memoryview) -> None:
        while len(view):
            view = view[self._some(view) :]

    def _header(self) -> int:
        head = bytearray(_HEADER.size)
        self._exactly(memoryview(head))
        return _HEADER.unpack(head)[0]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        total = len(view)
        while len(view):
            if not self._left:
                n = self._header()
                if n == RESET:
                    raise _Restart()
                if n == END:
                    raise Cut()  # whole, by the writer's word, yet shorter than the pickle says: not whole
                self._left = n
            part = view[: min(self._left, len(view))]
            got = self._some(part)
            self._left -= got
            view = view[got:]
        return total

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise ValueError("the outcome is read in counted pieces")
        buffer = bytearray(n)
        self.readinto(buffer)
        return bytes(buffer)

    def readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            line += self.read(1)
        return bytes(line)

    def load(self) -> Optional[tuple]:
        """The outcome: None if it never became whole; a failure to unpickle it is an outcome too (the rest of
        the stream is then read and dropped, so that the function's process is not left blocked on the pipe)."""
        import pickle

        while True:
            try:
                outcome = pickle.load(self)  # type: ignore[arg-type]
                if self._left or self._header() != END:
                    raise Cut()
                return outcome
            except _Restart:
                self._left = 0
            except Cut:
                return None
            except Exception as e:
                self.drop()
                from ..exceptions import PynisherException

                # e.g. an exception class whose constructor takes other arguments than it pickles.
                return ("err", PynisherException(f"The function's outcome could not be read: {e!r}"), None)

    def drop(self) -> None:
        """Reads and drops the rest of the stream, until it ends."""
        sink = bytearray(1 << 16)
        try:
            while True:
                self._some(memoryview(sink))
        except Cut:
            pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Feeder:
    """In the caller: the pickled call, written into a non-blocking pipe as the child reads it."""

    def __init__(self, fd: int) -> None:
        self.fd: Optional[int] = fd
        self.pieces: List[Any] = []

    def write(self, data: Any) -> int:
        # A large immutable value is kept by reference (the caller keeps its arguments alive during the call);
        # anything else is copied, since pickle may reuse its buffer.
        self.pieces.append(data if isinstance(data, bytes) and len(data) >= _SMALL else bytes(data))
        return len(data)

    def start(self) -> None:
        """Writes what fits now (a small call: all of it); the rest goes out from ``pump``."""
        self.pieces.reverse()
        os.set_blocking(self.fd, False)  # type: ignore[arg-type]
        self.pump()

    def pump(self) -> bool:
        """Writes what the pipe takes; True once all is written (or the reader is gone) and the pipe closed."""
        if self.fd is None:
            return True
        try:
            while self.pieces:
                piece = self.pieces[-1]
                done = os.write(self.fd, piece)
                if done < len(piece):
                    self.pieces[-1] = memoryview(piece)[done:]
                else:
                    self.pieces.pop()
        except BlockingIOError:
            return False
        except OSError:  # EPIPE: the child is gone; its outcome says why
            self.pieces.clear()
        os.close(self.fd)
        self.fd = None
        return True

    def close(self) -> None:
        self.pieces.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
