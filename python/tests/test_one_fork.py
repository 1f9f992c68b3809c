"""Issue 18, item 5: a fork-context call copies the caller once (the native helper, ``pynish._call.native``).

What shows how many copies were made: the at-fork hooks (``os.register_at_fork``). Every fork through Python runs
the "before" hooks in the process that forks and the "child" hooks in the copy. Forking A from Python runs them
in the caller and in A, and the child hooks in A and in B; the helper's A runs no Python at all. Each case runs in
a script of its own, since at-fork hooks cannot be taken back.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap

import pynish_testutil as u
import pytest

pytestmark = pytest.mark.pynish_only

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import pynish
    import pynish._call.native

    log = sys.argv[1]
    if len(sys.argv) > 2:
        pynish._call.native.disabled = True

    def note(event):
        with open(log, "a") as f:
            f.write(f"{event} {os.getpid()}\\n")

    os.register_at_fork(
        before=lambda: note("before"),
        after_in_child=lambda: note("child"),
        after_in_parent=lambda: note("parent"),
    )

    def where():
        with open(f"/proc/{os.getppid()}/exe", "rb"):
            pass
        return os.getpid(), os.getppid(), os.readlink(f"/proc/{os.getppid()}/exe")

    limited = pynish.limit(where, context="fork", wall_time=30)
    pid, parent, parent_exe = limited()
    print(json.dumps({"caller": os.getpid(), "function": pid, "parent": parent, "parent_exe": parent_exe,
                      "verdict": limited.last_run.verdict}))
    """
)


def pynish_binary() -> str:
    from pynish._call.binary import binary

    return binary()


def run_call(tmp_path, *extra, env=None):
    script = tmp_path / "call.py"
    script.write_text(SCRIPT)
    log = tmp_path / "forks.log"
    done = u.run_script(script, log, *extra, env=env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    events = [line.split() for line in log.read_text().splitlines()]
    return seen, [(event, int(pid)) for event, pid in events]


def test_a_fork_call_copies_the_caller_once(tmp_path):
    seen, events = run_call(tmp_path)
    caller, function = seen["caller"], seen["function"]
    assert seen["verdict"] == "completed"
    # One fork through Python: asked for by the caller, done into the function's process, nothing in between.
    # (The caller's and B's "after" hooks run at once, in either order.)
    assert events[0] == ("before", caller), events
    assert sorted(events[1:]) == [("child", function), ("parent", caller)], events
    # The function's process is still pynish's child (pynish supervises and reaps it).
    assert os.path.realpath(seen["parent_exe"]) == os.path.realpath(pynish_binary())
    assert seen["parent"] != caller


def test_without_the_helper_the_caller_forks_twice_and_the_call_still_works(tmp_path):
    seen, events = run_call(tmp_path, "no-helper")
    caller, function = seen["caller"], seen["function"]
    assert seen["verdict"] == "completed"
    befores = [pid for event, pid in events if event == "before"]
    assert len(befores) == 2 and befores[0] == caller and befores[1] not in (caller, function), events
    assert os.path.realpath(seen["parent_exe"]) == os.path.realpath(pynish_binary())


def test_a_binary_without_the_helper_is_used_the_old_way(tmp_path):
    """An older pynish, or a build without a C compiler, refuses --fork-helper: the call forks twice, and works."""
    wrapper = tmp_path / "old-pynish"
    wrapper.write_text(f'#!/bin/sh\ncase "$1" in --fork-helper) exit 125;; esac\nexec {pynish_binary()} "$@"\n')
    wrapper.chmod(0o755)
    seen, events = run_call(tmp_path, env={"PYNISH_BIN": str(wrapper)})
    assert seen["verdict"] == "completed"
    assert len([e for e in events if e[0] == "before"]) == 2, events


def test_a_binary_that_cannot_be_executed_any_more_is_named(tmp_path, capfd, monkeypatch):
    """The exec fails in A, which shares the caller's memory: the caller says so, naming the binary."""
    import pynish

    copy = tmp_path / "pynish-copy"
    shutil.copy(pynish_binary(), copy)
    monkeypatch.setenv("PYNISH_BIN", str(copy))
    assert pynish.limit(u.identity, context="fork", wall_time=30)(7) == 7  # the helper is loaded from it
    copy.write_bytes(b"\0not an executable any more\n")
    copy.chmod(0o755)
    with pytest.raises(pynish.PynisherException, match="ended with status 127 and wrote no report"):
        pynish.limit(u.identity, context="fork", wall_time=30)(7)
    assert f"cannot execute the pynish binary {copy}: Exec format error" in capfd.readouterr().err


def cpus_seen() -> list:
    import ctypes

    libc = ctypes.CDLL(None)
    seen = []
    for cpu in sorted(os.sched_getaffinity(0)):
        os.sched_setaffinity(0, {cpu})
        seen.append((cpu, libc.sched_getcpu()))
    return seen


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to move the function between")
def test_the_function_knows_which_cpu_it_runs_on(tmp_path):
    """The kernel drops a CLONE_VM child's rseq registration: without the helper registering it again, the
    function's glibc would answer sched_getcpu with the CPU of the fork, wherever it runs."""
    import pynish

    for cpu, reported in pynish.limit(cpus_seen, context="fork", wall_time=30)():
        assert reported == cpu


def test_the_function_starts_with_no_signal_blocked_and_the_callers_handlers(tmp_path):
    import signal

    import pynish

    def state() -> tuple:
        return sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), signal.getsignal(signal.SIGINT)

    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGTERM])
    try:
        blocked, handler = pynish.limit(state, context="fork", wall_time=30)()
        # The caller's own mask is as it left it.
        assert {signal.SIGUSR1, signal.SIGTERM} <= set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert blocked == []
    assert handler is signal.default_int_handler


CHURN = textwrap.dedent(
    """
    import os, sys, threading
    import pynish

    sys.setswitchinterval(1e-6)  # the GIL changes hands at nearly every chance
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            t = threading.Thread(target=int)
            t.start()
            t.join()

    for _ in range(3):
        threading.Thread(target=churn, daemon=True).start()
    limited = pynish.limit(os.getpid, context="fork", wall_time=20)
    for _ in range(40):
        assert limited() != os.getpid()
    stop.set()
    print("done")
    """
)


def test_calls_while_other_threads_start_and_end_neither_hang_the_caller_nor_the_function(tmp_path):
    """The interpreter's fork hooks run in the helper's one call: called one by one from Python, the GIL passed to
    another thread between them, while this one held the locks PyOS_BeforeFork takes. A thread starting or ending
    then waited for them holding the GIL (the caller hung, on 3.13), or the function's process was copied mid-switch
    and hung at its first GIL drop until its wall time (3.11: every run of this script failed)."""
    script = tmp_path / "churn.py"
    script.write_text(CHURN)
    done = u.run_script(script, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["done"], done.stdout + done.stderr


def test_calls_from_many_threads_at_once_each_get_their_own_process(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import pynish

    def pids(_: int) -> tuple:
        return pynish.limit(os.getpid, context="fork", wall_time=60)(), os.getpid()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(pids, range(32)))
    functions = [function for function, _ in results]
    assert len(set(functions)) == 32
    assert all(function != caller for function, caller in results)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
