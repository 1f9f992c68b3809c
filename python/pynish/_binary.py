"""Finding the pynish binary this package talks to."""

from __future__ import annotations

import os
import shutil
import sysconfig
from functools import lru_cache

__all__ = ["binary"]


@lru_cache(maxsize=None)
def _lookup(override: str | None) -> str:
    if override:
        return override
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


def _script_folders() -> list:
    """Where pip puts the wheel's binary: the environment's scripts folder (next to this interpreter), the one of
    the prefix this package was installed into (``--prefix``: <prefix>/lib/pythonX.Y/site-packages/pynish;
    ``--target``: <target>/pynish beside <target>/bin), and the user scheme's (``--user``: ~/.local/bin). None
    of them need be on PATH (cron, systemd)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prefix = os.path.dirname(os.path.dirname(os.path.dirname(package_parent)))
    folders = [sysconfig.get_path("scripts"), os.path.join(prefix, "bin"), os.path.join(package_parent, "bin")]
    try:
        folders.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:
        pass
    return folders


def binary() -> str:
    """The pynish binary: ``$PYNISH_BIN``, else the one pip installed with this package, else the first on PATH."""
    return _lookup(os.environ.get("PYNISH_BIN"))
