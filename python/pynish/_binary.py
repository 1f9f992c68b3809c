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
    # The wheel installs the binary into the environment's scripts folder, next to this interpreter.
    beside = os.path.join(sysconfig.get_path("scripts"), "pynish")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("pynish")
    if found:
        return found
    raise FileNotFoundError(
        "the pynish binary was not found: install the package with pip (it builds the binary), "
        "or set PYNISH_BIN to its path"
    )


def binary() -> str:
    """The pynish binary: ``$PYNISH_BIN``, else the one beside this interpreter, else the first on PATH."""
    return _lookup(os.environ.get("PYNISH_BIN"))
