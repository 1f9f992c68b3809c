"""``Pynisher._process`` as in pynisher 1.x (issue 18, item 4): None before the first call, then the process
that runs the function (a psutil.Process when psutil imports, else a small stand-in), which code that watches a
call reads while it runs; not running once the call has returned."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import pynish_testutil as u
from pynish import limit

CONTEXTS = ["fork", "spawn", "forkserver"]


def child_and_wait(ready_path, go_path):
    """Starts a child, says so on a FIFO, waits on another until the test has looked."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    with open(ready_path, "w") as ready:
        ready.write(f"{os.getpid()} {child.pid}\n")
    with open(go_path) as go:
        go.read()
    child.stdin.close()
    child.wait()
    return os.getpid()


def _watch_a_running_call(tmp_path, context):
    ready, go = tmp_path / "ready", tmp_path / "go"
    os.mkfifo(ready)
    os.mkfifo(go)
    limited = limit(child_and_wait, context=context, wall_time=60)
    assert limited._process is None
    outcome = {}
    held = []

    def call():
        try:
            outcome["result"] = limited(str(ready), str(go))
        finally:
            # Should the call end without the function's side of the FIFOs, the test's opens do not block.
            held.extend([os.open(ready, os.O_RDWR | os.O_NONBLOCK), os.open(go, os.O_RDONLY | os.O_NONBLOCK)])
            os.write(held[0], b"\n")

    caller = threading.Thread(target=call)
    caller.start()
    try:
        with open(ready) as f:
            function_pid, grandchild = map(int, f.readline().split())
        seen = limited._process
        running = seen.is_running()
        children = [p.pid for p in seen.children(recursive=True)]
    finally:
        with open(go, "w") as f:
            f.write("go")
        caller.join(120)
        for fd in held:
            os.close(fd)
    assert outcome["result"] == function_pid
    assert seen.pid == function_pid
    assert running
    assert grandchild in children
    assert limited._process is seen
    assert not seen.is_running()
    return seen


@pytest.mark.parametrize("context", CONTEXTS)
def test_process_is_the_functions_process_while_it_runs(tmp_path, context):
    psutil = pytest.importorskip("psutil", reason="psutil (PyPI) is not installed")
    seen = _watch_a_running_call(tmp_path, context)
    if not u.IS_PYNISHER or context == "fork":
        assert isinstance(seen, psutil.Process)


@pytest.mark.pynish_only
@pytest.mark.parametrize("context", CONTEXTS)
def test_process_without_psutil_is_a_stand_in(tmp_path, context, monkeypatch):
    import pynish._process

    monkeypatch.setattr(pynish._process, "_psutil", False)
    seen = _watch_a_running_call(tmp_path, context)
    assert type(seen).__name__ == "Handle"
