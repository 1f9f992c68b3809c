"""The package's layers (issue 28): no module imports from a layer above its own, no import circle, and every
module opens with a docstring saying its job.

The layers, top to bottom: the public face (``pynish/*.py``), the call (``pynish/_call/``), the OS plumbing
(``pynish/_os/``); ``pynish.exceptions`` stands below them all (it imports nothing of pynish). Imports are read
with ``ast``, those inside functions too, so a lazy import counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pynish"

#: Higher stands above: a module may import from its own rank or a lower one.
RANKS = {"face": 3, "call": 2, "os": 1, "exceptions": 0}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> str:
    parts = name.split(".")
    if name == "pynish.exceptions":
        return "exceptions"
    if len(parts) > 1 and parts[1] == "_call":
        return "call"
    if len(parts) > 1 and parts[1] == "_os":
        return "os"
    return "face"


def imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The pynish modules that ``name`` imports: ``from .x import y`` names module ``x.y`` when there is one,
    else ``x`` (where ``y`` is defined)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "pynish")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base_name = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "pynish":
                base_name = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{base_name}.{alias.name}"
                found.add(sub if sub in known else base_name)
    found.discard(name)
    return found


def graph() -> Dict[str, Set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_the_layers_are_the_folders():
    names = set(modules())
    assert {"pynish._call.launch", "pynish._call.child", "pynish._os.folder", "pynish._limit"} <= names
    assert layer("pynish.exceptions") == "exceptions"
    assert {layer(n) for n in names} == set(RANKS)


def test_no_module_imports_from_a_layer_above_its_own():
    upward: List[Tuple[str, str]] = []
    for name, targets in graph().items():
        for target in targets:
            if RANKS[layer(target)] > RANKS[layer(name)]:
                upward.append((name, target))
    assert upward == [], "imports running upward: " + ", ".join(f"{a} -> {b}" for a, b in sorted(upward))


def test_no_import_circle():
    edges = graph()
    circles: Set[Tuple[str, ...]] = set()

    def visit(start: str, node: str, path: List[str]) -> None:
        for target in edges.get(node, ()):
            if target == start:
                circles.add(tuple(sorted(path)))
            elif target not in path and target > start:
                visit(start, target, path + [target])

    for name in edges:
        visit(name, name, [name])
    assert circles == set(), f"import circles: {sorted(circles)}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_opens_with_its_job(name):
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc and doc.splitlines()[0].strip(), f"{name} has no docstring saying its job"
