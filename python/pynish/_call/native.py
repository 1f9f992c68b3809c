"""The fork context's one copy of the caller: the native helper that pynish carries (``python/native``).

Forking A (the process that becomes pynish) from Python copies the caller's page tables, and A's exec tears
that copy down again: with a caller holding 1 GiB, the larger part of a call's cost. The helper starts A sharing
the caller's memory instead (``clone(CLONE_VM | CLONE_VFORK)``, as posix_spawn does); A forks B, the function's
process, and execs pynish. B comes back here as a child comes back from ``os.fork``.

The helper is loaded once per process, from ``pynish --fork-helper`` into a memfd. Where it cannot be (another
OS, a build without it, a Python without ``ctypes.pythonapi``, shadow stacks on), ``start`` returns None and
``launch`` forks twice from Python, as before.

Tried with CPython 3.9, 3.10, 3.11, 3.12 and 3.13 (python/tests/test_one_fork*.py): none needs the Python path,
since the helper runs the interpreter's fork hooks itself, the GIL held throughout (between ctypes calls the GIL
could change hands while PyOS_BeforeFork's locks were held: the caller deadlocked on 3.13, the function hung on
3.11).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

#: The helper's pynish_fork, the interpreter's fork hooks bound in.
Fork = Callable[..., int]

_lock = threading.Lock()
#: The loaded helper by the binary that carries it; None where that binary has none (or it cannot be loaded).
_helpers: Dict[str, Optional[Fork]] = {}
#: Tests set this to take the Python path.
disabled = False


def _forget_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it (loading the helper) at the fork


os.register_at_fork(after_in_child=_forget_in_child)


def _shadow_stacks() -> bool:
    """x86 shadow stacks (CET) on in this process: a siglongjmp across stacks would not match them."""
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("x86_Thread_features:") and "shstk" in line for line in f)
    except OSError:
        return False


def _load(program: str) -> Optional[Fork]:
    import ctypes

    if not sys.platform.startswith("linux") or not hasattr(ctypes, "pythonapi") or _shadow_stacks():
        return None
    fd = os.memfd_create("pynish-fork-helper", os.MFD_CLOEXEC)
    try:
        done = subprocess.run([program, "--fork-helper"], stdout=fd, stderr=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            return None
        # ctypes.PyDLL: called with the GIL held, as os.fork forks.
        lib = ctypes.PyDLL(f"/proc/self/fd/{fd}", use_errno=True)
    except OSError:
        return None
    finally:
        os.close(fd)  # the loader keeps its own mapping
    c_int, c_char_p = ctypes.c_int, ctypes.c_char_p
    hook = ctypes.CFUNCTYPE(None)
    lib.pynish_fork.argtypes = [
        c_char_p,
        ctypes.POINTER(c_char_p),
        c_char_p,
        ctypes.POINTER(c_int),
        c_int,
        ctypes.POINTER(c_int),
        hook,
        hook,
        hook,
    ]
    lib.pynish_fork.restype = c_int
    # os.fork's own steps, called by the helper around its fork with no Python code in between.
    api = ctypes.pythonapi
    hooks = []
    for step in (api.PyOS_BeforeFork, api.PyOS_AfterFork_Parent, api.PyOS_AfterFork_Child):
        address = ctypes.cast(step, ctypes.c_void_p).value
        if not address:
            return None
        hooks.append(hook(address))
    call = lib.pynish_fork

    def fork(*args: Any) -> int:
        return int(call(*args, *hooks))

    return fork


def helper(program: str) -> Optional[Fork]:
    """The loaded helper, or None where there is none."""
    if disabled:
        return None
    if program not in _helpers:
        with _lock:
            if program not in _helpers:
                try:
                    _helpers[program] = _load(program)
                except (OSError, AttributeError, ValueError):
                    _helpers[program] = None
    return _helpers[program]


def start(program: str, argv: Sequence[str], pid_at: int, keep: Sequence[int]) -> Optional[Tuple[int, int]]:
    """Execs ``argv`` (``argv[pid_at]`` replaced by B's pid) as A, with B held as A's child; ``keep`` goes on to
    pynish. In the caller: (A's pid, 0). In B: (0, A's pid). None where there is no helper. None too where the
    kernel refuses clone(CLONE_VM) as such (seccomp). Raises OSError if A could not be made for want of resources
    or could not fork; an exec that fails is said on stderr, naming the binary, and leaves no
    report (the caller's "ended with status ..."), as before."""
    fork = helper(program)
    if fork is None:
        return None
    import ctypes

    slot = ctypes.create_string_buffer(16)
    words = [os.fsencode(word) for word in argv]
    args = (ctypes.c_char_p * (len(words) + 1))(*words)
    args[pid_at] = ctypes.cast(slot, ctypes.c_char_p)
    kept = (ctypes.c_int * len(keep))(*keep)
    out = (ctypes.c_int * 3)()
    sys.audit("os.fork")
    pid = fork(os.fsencode(program), args, slot, kept, len(keep), out)
    if pid == 0:
        return 0, out[0]
    if pid < 0:
        error = ctypes.get_errno() or errno.EAGAIN
        if error in (errno.EPERM, errno.ENOSYS, errno.EINVAL):
            # clone(CLONE_VM) refused as such (a seccomp filter), not for want of resources: the Python path.
            _helpers[program] = None
            return None
        raise OSError(error, f"cannot start pynish: {os.strerror(error)}")
    if out[2] == 1:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # the caller ignores SIGCHLD: the kernel reaped A
        raise OSError(out[1], f"cannot fork the function's process: {os.strerror(out[1])}")
    if out[2] == 2:
        message = f"pynish: cannot execute the pynish binary {program}: {os.strerror(out[1])}\n"
        os.write(2, message.encode(errors="replace"))
    return pid, 0
