"""What each context can run: module functions, lambdas, closures, `__main__` functions, nested limits."""

from __future__ import annotations

import os

import pytest

import pynish as pynisher
import pynish_testutil as u
from pynish import limit

CONTEXTS = ["fork", "spawn", "forkserver"]
_STATE = {"set_at_runtime": False}


def read_runtime_state():
    return _STATE["set_at_runtime"]


def square(x):
    return x * x


@pytest.mark.parametrize("context", CONTEXTS)
def test_module_function_in_a_test_module(context):
    assert limit(square, context=context, wall_time=30)(12) == 144


@pytest.mark.parametrize("context,inherits", [("fork", True), ("spawn", False), ("forkserver", False)])
def test_fork_shares_memory_the_others_start_fresh(context, inherits):
    """fork keeps fork's semantics (the caller's memory); spawn and forkserver start a fresh interpreter."""
    _STATE["set_at_runtime"] = True
    try:
        assert limit(read_runtime_state, context=context, wall_time=30)() is inherits
    finally:
        _STATE["set_at_runtime"] = False


def test_default_context_matches_multiprocessing():
    """No context given: the same as multiprocessing's default on this Python (fork on Linux before 3.14)."""
    import multiprocessing

    default = multiprocessing.get_start_method(allow_none=False)
    _STATE["set_at_runtime"] = True
    try:
        assert limit(read_runtime_state, wall_time=30)() is (default == "fork")
    finally:
        _STATE["set_at_runtime"] = False


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.pynisher_weakness), pytest.param("forkserver", marks=pytest.mark.pynisher_weakness)])
def test_lambda(context):
    assert limit(lambda x: x + 1, context=context, wall_time=30)(1) == 2


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.pynisher_weakness), pytest.param("forkserver", marks=pytest.mark.pynisher_weakness)])
def test_closure(context):
    secret = os.urandom(8).hex()

    def inner(suffix):
        return secret + suffix

    assert limit(inner, context=context, wall_time=30)("!") == secret + "!"


@pytest.mark.parametrize("context", CONTEXTS)
def test_functions_defined_in_a_main_script(context, tmp_path):
    proc = u.run_script(u.HERE / "scripts" / "main_functions.py", context, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"RESULT {context} 42 Halted main-defined"


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_nested_limits(context):
    """A limited function that itself limits a function."""
    outcome = limit(u.call_limited, context=context, wall_time=30)("square_in_testutil", {"wall_time": 10}, 9)
    assert outcome == ("ok", 81)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_nested_inner_limit_fires_inside(context, piddir):
    outcome = limit(u.call_limited, context=context, wall_time=30)("sleep_for", {"wall_time": 1}, 60, str(piddir))
    assert outcome == ("raised", "WallTimeoutException")
    assert u.wait_gone(u.pids_in(piddir)) == []


def test_nested_outer_limit_ends_the_inner_call_too(piddir):
    import time

    started = time.monotonic()
    with pytest.raises(pynisher.WallTimeoutException):
        limit(u.call_limited, wall_time=1)("sleep_for", {"wall_time": 60}, 60, str(piddir))
    assert time.monotonic() - started < 1 + 2 + 0.9
    announced = u.pids_in(piddir)
    assert len(announced) == 1
    assert u.wait_gone(announced) == []
