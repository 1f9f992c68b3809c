"""A call's private folder: where it is made, how its owner keeps it, and the sweep of folders whose owner died.

Each folder holds a lock file that its caller keeps locked (``flock``) while the call runs. A caller killed
mid-call cannot remove its folder; the next call of any caller on the machine does: it sweeps every folder whose
lock it can take, as the command line sweeps its stale groups. A lock, not a pid in the name: it works across
pid namespaces sharing /dev/shm, and a reused pid cannot make a dead owner look alive.

A call made inside a limited function (a nested call) puts its folder inside the outer call's, so that an outer
limit that ends the function mid-call leaves nothing behind: the outer caller removes its folder, and the inner
one with it, once the outer tree is gone.

The lock belongs to the caller alone (``owned_fds``): a child it forks (a multiprocessing worker started while a
call runs) would share the lock and keep a dead caller's folder from the sweep for as long as it lives.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from typing import Optional

from . import owned_fds

#: Not the "pynish-call-" of folders made without a lock (before this module): the sweep skips those by name.
PREFIX = "pynish-call."
LOCK = ".owner"


def scratch() -> Optional[str]:
    """Where a call's private folder goes: memory (/dev/shm) when there is one, since creating and removing
    its few files on a disk file system costs milliseconds per call; else the temp folder ($TMPDIR)."""
    if "TMPDIR" not in os.environ and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None


class Folder:
    """A call's folder, locked by this process until ``remove``; inside the folder ``inside`` when given (a nested
    call's: the outer call's folder), unless that is gone."""

    def __init__(self, inside: Optional[str] = None) -> None:
        self.path = self._make(inside)
        # Locked before it takes its name: a sweeper never finds the lock file free while this caller lives.
        made = os.path.join(self.path, LOCK + ".new")
        self.lock = owned_fds.hold(os.open(made, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        os.rename(made, os.path.join(self.path, LOCK))

    @staticmethod
    def _make(inside: Optional[str]) -> str:
        if inside is not None:
            try:
                return tempfile.mkdtemp(prefix=PREFIX, dir=inside)
            except OSError:
                pass  # the outer call is over (a leftover process calls): a folder of its own then
        return tempfile.mkdtemp(prefix=PREFIX, dir=scratch())

    def remove(self) -> None:
        """Removes the folder and lets its lock go; a second call (a signal's handler removed it first) does
        nothing, never closing a descriptor number that may since be another's."""
        if self.lock < 0:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        lock, self.lock = self.lock, -1
        owned_fds.close(lock)


def sweep() -> None:
    """Removes the folders whose owner is gone (their lock is free) where this process makes its own. Called once
    a call has started, while its child starts up: the caller would be waiting anyway."""
    where = scratch()
    where = where if where is not None else tempfile.gettempdir()
    try:
        entries = [e.name for e in os.scandir(where) if e.name.startswith(PREFIX)]
    except OSError:
        return
    for name in entries:
        path = os.path.join(where, name)
        try:
            fd = os.open(f"{path}/{LOCK}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # being made right now, or not pynish's making: left alone
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its caller lives
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)

