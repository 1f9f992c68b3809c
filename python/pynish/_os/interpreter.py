"""What starting a fresh interpreter for this package needs: where the package is, and the running
interpreter's options. Shared by the spawn context (``_call.launch``) and the forkserver
(``_call.forkserver``), so that neither imports the other."""

from __future__ import annotations

import os
import subprocess

__all__ = ["PACKAGE_PARENT", "interpreter_flags"]

#: The folder holding this very package: put first on a fresh interpreter's sys.path, so that it imports this
#: package even when only the caller's sys.path could find it.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def interpreter_flags() -> list[str]:
    """The running interpreter's options (-O, -X ...), for a fresh one, as multiprocessing passes them."""
    try:
        return list(subprocess._args_from_interpreter_flags())  # type: ignore[attr-defined]
    except Exception:
        return []
