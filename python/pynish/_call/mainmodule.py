"""The caller's interpreter state a fresh child takes on, as multiprocessing's spawn does: ``sys.path``,
``sys.argv``, the working directory, and the main module, re-run as ``__mp_main__`` so that what a ``__main__``
script defines at module level exists in the child too. Done here, without importing multiprocessing into the
child (which costs a fresh interpreter more than the rest of its start).

A main module that is no file (``python - <<EOF``'s ``<stdin>``, a script removed since, ``python -c``, the
interactive prompt, IPython, Jupyter) is not re-run: the functions it defines go to the child by value
(``launch._pickler``), as cloudpickle sends them."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not from typing: a fresh child does not pay for importing it
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

from .._os.startdir import ORIGINAL_DIR as _IMPORTED_IN

#: Where relative entries of ``sys.path`` and the main module's path are resolved: the working directory when
#: pynish was first imported (see ``_os.startdir``).
_ORIGINAL_DIR = _IMPORTED_IN if _IMPORTED_IN is not None else os.path.abspath(os.getcwd())

#: True while a new process re-runs the caller's main module: a limited call made then comes from an unguarded
#: script's top level (no ``if __name__ == "__main__":``) and raises, as multiprocessing's bootstrapping check.
bootstrapping = False


def describe() -> Dict[str, Any]:
    """In the caller: what the child needs to look like it."""
    path = list(sys.path)
    if "" in path:
        path[path.index("")] = _ORIGINAL_DIR
    data: Dict[str, Any] = {"sys_path": path, "sys_argv": list(sys.argv), "dir": os.getcwd()}
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        data["main_name"] = name
    else:
        file: Optional[str] = getattr(main, "__file__", None)
        # "<stdin>" (python -), or a script removed since: nothing to re-run.
        if file is not None and not file.startswith("<"):
            main_path = os.path.normpath(os.path.join(_ORIGINAL_DIR, file))
            if os.path.isfile(main_path):
                data["main_path"] = main_path
    return data


def reruns(data: Dict[str, Any]) -> bool:
    """Whether a fresh child re-runs the caller's main module that ``describe`` gave as ``data``."""
    name = data.get("main_name")
    path = data.get("main_path")
    if name is not None:
        # A package's __main__ runs its main-only code unconditionally: multiprocessing skips it too.
        return not (name == "__main__" or name.endswith(".__main__"))
    return path is not None and os.path.splitext(os.path.basename(path))[0] != "ipython"


def take_on(data: Dict[str, Any], whole_main: bool = True) -> None:
    """In the fresh child: becomes like the caller before the call is unpickled (``whole_main``: re-run the
    caller's main module too)."""
    sys.path[:] = data["sys_path"]
    sys.argv[:] = data["sys_argv"]
    os.chdir(data["dir"])
    if not whole_main or not reruns(data):
        return
    name = data.get("main_name")
    path = data.get("main_path")
    import runpy
    import types

    global bootstrapping
    module = types.ModuleType("__mp_main__")
    bootstrapping = True
    try:
        if name is not None:
            content = runpy.run_module(name, run_name="__mp_main__", alter_sys=True)
        else:
            assert path is not None
            content = runpy.run_path(path, run_name="__mp_main__")
    finally:
        bootstrapping = False
    module.__dict__.update(content)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
