"""The working directory when pynish was first imported, as multiprocessing keeps it (``ORIGINAL_DIR``).

A fresh child finds the caller's modules there (``sys.path``'s "") even after the caller changed directory.
``pynish/__init__.py`` imports this module at once, so that it is taken then, not when the lazily loaded modules
first load, which a first call may only do after such a change.
"""

from __future__ import annotations

import os

ORIGINAL_DIR: "str | None"
try:
    ORIGINAL_DIR = os.path.abspath(os.getcwd())
except OSError:  # started in a folder that was removed
    ORIGINAL_DIR = None
