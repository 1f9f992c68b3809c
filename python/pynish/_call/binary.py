"""Finding the pynish binary this package talks to."""

from __future__ import annotations

import os
import shutil
import sysconfig
import threading
from functools import lru_cache

from .._os.interpreter import PACKAGE_PARENT

__all__ = ["binary"]

# sysconfig's first use is not thread-safe (Python 3.11: threads making their first call at once fail with
# AttributeError 'userbase'), and neither is lru_cache's first fill: one thread looks, the others wait for it.
_lock = threading.Lock()


@lru_cache(maxsize=None)
def _lookup(override: str | None) -> str:
    if override:
        return _checked(override)
    for folder in _script_folders():
        beside = os.path.join(folder, "pynish")
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
    found = shutil.which("pynish")
    if found:
        return found
    raise FileNotFoundError(
        "the pynish binary was not found: install the package with pip (it builds the binary), "
        "or set PYNISH_BIN to its path"
    )


def _checked(override: str) -> str:
    """``$PYNISH_BIN``, refused with its name when it is no executable file: every context would otherwise fail
    in its own way (a silent status 125, a status 0, a raw OSError)."""
    path = override if os.sep in override else shutil.which(override) or override
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"PYNISH_BIN={override!r} is not an executable file: set it to the pynish binary")
    return path


def _script_folders() -> list:
    """Where pip puts the wheel's binary: the environment's scripts folder (next to this interpreter), the one of
    the prefix this package was installed into (``--prefix``: <prefix>/lib/pythonX.Y/site-packages/pynish;
    ``--target``: <target>/pynish beside <target>/bin), and the user scheme's (``--user``: ~/.local/bin). None
    of them need be on PATH (cron, systemd)."""
    prefix = os.path.dirname(os.path.dirname(os.path.dirname(PACKAGE_PARENT)))
    folders = [sysconfig.get_path("scripts"), os.path.join(prefix, "bin"), os.path.join(PACKAGE_PARENT, "bin")]
    try:
        folders.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:
        pass
    return folders


def binary() -> str:
    """The pynish binary: ``$PYNISH_BIN``, else the one pip installed with this package, else the first on PATH."""
    with _lock:
        return _lookup(os.environ.get("PYNISH_BIN"))
