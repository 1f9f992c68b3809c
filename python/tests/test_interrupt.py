"""Ctrl-C in the caller: KeyboardInterrupt is re-raised there, and the whole tree of the limited call is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import pynish_testutil as u

SCRIPT = u.HERE / "scripts" / "ctrl_c.py"


def start_caller(piddir, context="fork", forceful=True, ignore=False):
    # A session of its own, like a shell job: the test's Ctrl-C reaches that group only.
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(piddir), context, "1" if forceful else "0", "1" if ignore else "0"],
        env=u.script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not (piddir / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the limited function never got ready"
        time.sleep(0.01)
    return proc


def finish(proc, piddir, timeout=15):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the caller did not end within {timeout}s of Ctrl-C\n{out}\n{err}")
    pids = u.pids_in(piddir)
    assert len(pids) == 2
    return out, err, pids


def session_cleanup(proc, timeout=3.0):
    """Whatever of the caller's session is still alive after timeout (then killed)."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: u.cmdline(p) for p in u.session_members(proc.pid)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    u.kill_all(left)
    return left


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_ctrl_c_to_the_foreground_group(context, piddir):
    """As a terminal does: SIGINT to every process of the caller's process group."""
    proc = start_caller(piddir, context)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out, err, pids = finish(proc, piddir)
    took = time.monotonic() - started
    assert proc.returncode == 3, (out, err)
    assert "RESULT KeyboardInterrupt" in out
    assert u.wait_gone(pids, timeout=1) == [], "a process of the limited call survived Ctrl-C"
    assert session_cleanup(proc) == {}, "a process of the caller's session survived"
    print(f"Ctrl-C ({context}): caller ended {took:.2f}s after SIGINT")


def test_sigint_to_the_caller_alone(piddir):
    """`kill -INT <caller>`: only the caller gets it; the tree must still go."""
    proc = start_caller(piddir)
    os.kill(proc.pid, signal.SIGINT)
    out, err, pids = finish(proc, piddir)
    assert proc.returncode == 3, (out, err)
    assert u.wait_gone(pids, timeout=1) == []
    assert session_cleanup(proc) == {}


def test_forceful_keyboard_interrupt_ends_a_tree_that_ignores_signals(piddir):
    proc = start_caller(piddir, forceful=True, ignore=True)
    os.killpg(proc.pid, signal.SIGINT)
    out, err, pids = finish(proc, piddir)
    assert proc.returncode == 3, (out, err)
    left = u.wait_gone(pids, timeout=3)
    u.kill_all(left)
    assert left == [], "forceful_keyboard_interrupt=True left processes that ignore SIGINT/SIGTERM"
    assert session_cleanup(proc) == {}


def test_forceful_false_still_reraises(piddir):
    proc = start_caller(piddir, forceful=False)
    os.killpg(proc.pid, signal.SIGINT)
    out, err, pids = finish(proc, piddir)
    assert proc.returncode == 3, (out, err)
    assert u.wait_gone(pids, timeout=3) == []
    assert session_cleanup(proc) == {}
