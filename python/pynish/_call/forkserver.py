"""Context "forkserver": one long-lived fresh interpreter per caller that forks a held child per call.

The server is started once, on the first call, as a fresh interpreter in a session of its own (so no terminal
signal reaches it), and takes on the caller's ``sys.path``, working directory and main module (``mainmodule``), as
multiprocessing's forkserver preloads ``__main__``. For each call the caller sends, over a Unix socket, the
call's folder, pynish's flags, the write end of an "ended" pipe and the call's two pipes (``stream``); the
server forks A, which starts a session, forks B (held on a pipe, exactly as in the fork context) and execs
``pynish --adopt B``. Only pynish holds the "ended" pipe: the caller sees end-of-file on it once pynish has exited,
that is once the whole tree is gone. B, once released, reads the call (cloudpickle) from its pipe, which the
caller feeds, and sends its outcome back through the other: a function never crosses the socket.

The server ends when the caller's end of the socket closes: at the caller's exit (``shutdown`` runs then and
waits for it), when the caller calls ``shutdown()``, or when the caller dies. Only the caller holds that end (it
is closed in every child forked through Python). The server also holds the caller's lifeline (``_os.lifeline``)
and passes it to each call's pynish, which ends its tree once the caller is gone.
"""

from __future__ import annotations

import atexit
import functools
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from pynish._call.forkserver import serve;"
    " serve(int(sys.argv.pop(1)), int(sys.argv.pop(1)))"
)


def _send(sock: socket.socket, obj: Any, fds: List[int] = ()) -> None:  # type: ignore[assignment]
    data = pickle.dumps(obj, protocol=5)
    socket.send_fds(sock, [struct.pack("!I", len(data)) + data], list(fds))


def _recv(sock: socket.socket) -> Tuple[Any, List[int]]:
    # Exactly one message: the stream may already hold the next one. The descriptors come with its first bytes.
    header, fds, _, _ = socket.recv_fds(sock, 4, 4)
    while header and len(header) < 4:
        more = sock.recv(4 - len(header))
        if not more:
            break
        header += more
    if len(header) < 4:
        raise EOFError("the other end closed")
    (size,) = struct.unpack("!I", header)
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise EOFError("the other end closed")
        data += more
    return pickle.loads(data), fds


# -- in the caller ------------------------------------------------------------------------------------------


class _Client:
    def __init__(self, program: str, preload: Tuple[str, ...] = ()) -> None:
        """``preload``: modules the server imports once, after taking on the caller's ``sys.path`` (so that every
        call's child finds them loaded)."""
        import subprocess

        from .._os import lifeline as _lifeline
        from .._os.interpreter import PACKAGE_PARENT, interpreter_flags
        from . import mainmodule as _mainmodule

        self.owner = os.getpid()
        self.broken = False
        self.program = program
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lifeline = _lifeline.read_end()
            argv = [
                sys.executable,
                *interpreter_flags(),
                "-c",
                _BOOT,
                PACKAGE_PARENT,
                str(theirs.fileno()),
                str(lifeline),
            ]
            fds = [theirs.fileno(), lifeline]
            self.process = subprocess.Popen(argv, pass_fds=fds, start_new_session=True, close_fds=True)
        finally:
            theirs.close()
        self.sock = ours
        _send(ours, dict(_mainmodule.describe(), preload=list(preload)))
        _every.add(self)

    def alive(self) -> bool:
        return not self.broken and self.owner == os.getpid() and self.process.poll() is None

    def start(self, request: tuple, fds: List[int], announce: Optional[int] = None) -> int:
        """Has the server start a call; ``fds``: the "ended" pipe's write end, the call's and outcome's pipes;
        ``announce``: where the function's process writes its pid."""
        with self.lock:
            try:
                _send(self.sock, request, fds if announce is None else [*fds, announce])
                pid, _ = _recv(self.sock)
            except BaseException:
                # Interrupted between request and answer (Ctrl-C) or the server died: the stream may hold a
                # stale answer, so this server is not used again; the next call starts a new one.
                self.broken = True
                self.sock.close()
                raise
        if isinstance(pid, BaseException):
            raise pid
        return pid

    def close(self) -> None:
        try:
            self.sock.close()
            self.process.wait(5)
        except Exception:
            pass


_clients: dict = {}
_clients_lock = threading.Lock()
#: Every client alive in this process: the shared ones above and those of each ``pynish.Executor``.
_every: "weakref.WeakSet[_Client]" = weakref.WeakSet()


def shutdown() -> None:
    """Stops this process's forkserver(s) and waits for them (also run at exit); the next call starts one again."""
    with _clients_lock:
        found = [c for c in _clients.values() if c.owner == os.getpid()]
        _clients.clear()
    for c in found:
        c.close()


atexit.register(shutdown)


def _forget_in_child() -> None:
    # A forked child (a fork-context call, a multiprocessing worker) must not hold the caller's end of a server's
    # socket: the server would outlive the caller as long as the child lives.
    global _clients_lock
    _clients_lock = threading.Lock()
    for c in list(_every):
        try:
            c.sock.close()
        except Exception:
            pass
    _clients.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def client(program: str) -> _Client:
    """The caller's server for this pynish binary, started on first use (and again after a fork or a crash)."""
    with _clients_lock:
        found = _clients.get(program)
        if found is None or not found.alive():
            found = _clients[program] = _Client(program)
        return found


# -- in the server ------------------------------------------------------------------------------------------


def serve(fd: int, lifeline: int) -> None:
    """The server's loop (never returns). ``lifeline``: the read end of the caller's lifeline, for each pynish."""
    # child is imported here once, not in every call's child.
    from . import child as _child  # noqa: F401
    from . import mainmodule as _mainmodule

    sock = socket.socket(fileno=fd)
    try:
        data, _ = _recv(sock)
        failed: Optional[BaseException] = None
        try:
            _mainmodule.take_on(data)
        except Exception as e:
            # The caller's main module failed when re-run here (an unguarded script's limited call raises the
            # bootstrapping RuntimeError): every call is answered with that, rather than a server gone silent.
            failed = e
        _preload(data.get("preload", ()))
        # Imported once here rather than in every call's child: what reading a call and writing its outcome needs.
        import cloudpickle  # noqa: F401
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        # Ended children are reaped by the kernel: the server never waits for a call.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            (directory, flags, display), fds = _recv(sock)
            ended, call, result = fds[:3]
            announce = fds[3] if len(fds) > 3 else None
            for fd in fds:
                os.set_inheritable(fd, False)  # to the call's child only; "ended" goes to pynish through exec
            answer: Any = failed
            try:
                if failed is None:
                    answer = _fork_call(
                        sock,
                        prctl,
                        program=flags[0],
                        flags=["--lifeline-fd", str(lifeline), *flags[1:]],
                        display=display,
                        directory=directory,
                        inherit=(ended, lifeline),
                        pipes=(call, result),
                        announce=announce,
                    )
            except Exception as e:  # the caller raises it
                answer = e
            finally:
                for fd in fds:
                    os.close(fd)
            _send(sock, answer)
    except EOFError:
        pass
    finally:
        os._exit(0)


def _preload(modules: List[str]) -> None:
    # A module that fails to import here is left to the call that needs it, which then says why.
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException:
            pass


def _fork_call(
    sock: socket.socket,
    prctl: Any,
    program: str,
    flags: List[str],
    display: List[str],
    directory: str,
    inherit: Tuple[int, ...],
    pipes: Tuple[int, int],
    announce: Optional[int] = None,
) -> int:
    from . import child as _child

    pid = os.fork()
    if pid == 0:
        try:
            sock.close()
            os.setsid()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            run = functools.partial(_child.load_and_execute, directory, False, *pipes)
            _child.hold_and_exec(program, flags, display, prctl, run, inherit=inherit, announce=announce)
        finally:
            os._exit(125)
    return pid
