"""Cases a demanding pynisher user tries, beyond the documented ones: odd functions, odd callers, many calls.

Each test names what pynisher 1.0.10 does. Where pynish deliberately differs (and is better), the test says so.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

import pynish as pynisher
import pynish_testutil as u
from pynish import limit

CONTEXTS = ["fork", "spawn", "forkserver"]


class TwoArgs(Exception):
    """Plain pickling calls TwoArgs(*args) with one arg: unpickling fails (pynisher raises that TypeError)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def raise_two_args():
    raise TwoArgs("bad input", 7)


class ReprFails:
    def __repr__(self):
        raise RuntimeError("repr must not be needed for a call that succeeds")


def kind_of(value):
    return type(value).__name__


def fail_with(_arg):
    raise ValueError("no good")


def return_lock():
    return threading.Lock()


def exit_with(code):
    sys.exit(code)


def kill_self(sig):
    os.kill(os.getpid(), sig)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.pynisher_weakness
def test_exception_with_a_constructor_of_several_args_keeps_its_type(context):
    # pynisher: TypeError "__init__() missing 1 required positional argument", even with raises=False.
    with pytest.raises(TwoArgs) as info:
        limit(raise_two_args, context=context, wall_time=30)()
    assert str(info.value) == "bad input"
    assert info.value.code == 7
    assert limit(raise_two_args, context=context, wall_time=30, raises=False)() is pynisher.EMPTY


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.pynish_only
def test_local_exception_class_with_several_args_keeps_its_type(context):
    # The class goes by value (cloudpickle), which calls the constructor on loading just the same.
    class Local(Exception):
        def __init__(self, message, code):
            super().__init__(message)
            self.code = code

    def fail():
        raise Local("local", 3)

    # In fork the class comes back as a copy (the caller never pickled it, so cloudpickle cannot match it up).
    with pytest.raises(Exception) as info:
        limit(fail, context=context, wall_time=30)()
    assert context == "fork" or type(info.value) is Local
    assert (type(info.value).__name__, str(info.value), info.value.code) == ("Local", "local", 3)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.pynish_only
def test_an_unpicklable_result_is_a_pynisher_exception(context):
    # Deliberately different: pynisher raises the pickling TypeError itself; pynish says what could not be sent.
    with pytest.raises(pynisher.PynisherException, match="result could not be sent back.*lock"):
        limit(return_lock, context=context, wall_time=30)()
    assert limit(return_lock, context=context, wall_time=30, raises=False)() is pynisher.EMPTY


@pytest.mark.parametrize("context", CONTEXTS)
def test_system_exit_and_signals(context):
    # As pynisher: SystemExit comes back as itself; a process that dies unsent is a PynisherException.
    with pytest.raises(SystemExit) as info:
        limit(exit_with, context=context, wall_time=30)(3)
    assert info.value.code == 3
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with pytest.raises(pynisher.PynisherException):
            limit(kill_self, context=context, wall_time=30)(sig)
        assert limit(kill_self, context=context, wall_time=30, raises=False)(sig) is pynisher.EMPTY


@pytest.mark.parametrize("context", ["fork", "forkserver"])
def test_a_large_argument_is_not_repred(context):
    # The call string for messages is bounded: the whole repr of an argument cost a 200 MB fork call 0.7 s.
    assert limit(kind_of, context=context, wall_time=30)(ReprFails()) == "ReprFails"
    with pytest.raises(ValueError, match="no good"):
        limit(fail_with, context=context, wall_time=30)(ReprFails())


@pytest.mark.pynish_only
def test_call_string_of_a_large_argument_is_short():
    from pynish._call.child import callstring

    text = callstring(len, (b"x" * 50_000_000, list(range(10**6))), {"key": "y" * 10**6})
    assert len(text) < 500
    assert "50000000 bytes" in text


@pytest.mark.parametrize("handler", ["ignore", "custom"])
def test_caller_with_its_own_sigchld_disposition(handler):
    # pynisher works with SIGCHLD ignored; pynish's fork context failed with ChildProcessError (the kernel reaps).
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN if handler == "ignore" else (lambda *_: None))
    try:
        assert limit(u.identity, context="fork", wall_time=30)(5) == 5
        with pytest.raises(pynisher.WallTimeoutException):
            limit(u.sleep_for, context="fork", wall_time=1)(30)
    finally:
        signal.signal(signal.SIGCHLD, previous)


@pytest.mark.parametrize("context", CONTEXTS)
def test_called_from_a_thread(context):
    box = []
    thread = threading.Thread(target=lambda: box.append(limit(u.identity, context=context, wall_time=30)(9)))
    thread.start()
    thread.join(60)
    assert box == [9]


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
@pytest.mark.parametrize("start_method", [pytest.param("fork", marks=pytest.mark.pynisher_weakness), "spawn"])
def test_pool_of_main_functions_inside_a_main_function(context, start_method, tmp_path):
    # pynisher (multiprocessing) sends __main__ functions by name; cloudpickle by value gave the Pool a copy
    # that pickle refused ("not the same object as __main__.square"). pynisher's own weakness: a fork Pool
    # inside its spawn or forkserver child hangs until the wall time.
    proc = u.run_script(u.HERE / "scripts" / "main_pool.py", context, start_method, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"RESULT {context} 285 True"


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("context,calls", [("fork", 60), ("spawn", 20), ("forkserver", 60)])
@pytest.mark.pynish_only
def test_many_calls_leak_nothing(context, calls, tmp_path, monkeypatch):
    # Each call's private folder goes to $TMPDIR when set: here a folder of this test's own.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    limit(u.identity, context=context)(0)  # the forkserver starts once
    fds, children = _open_fds(), set(u.descendants(os.getpid()))
    for i in range(calls):
        assert limit(u.identity, context=context, wall_time=30)(i) == i
        assert limit(exit_with, context=context, wall_time=30, raises=False)(1) is pynisher.EMPTY
    assert _open_fds() == fds
    assert os.listdir(tmp_path) == []
    # The last pynish may still be on its way out (not our child in forkserver): it must go, and nothing else came.
    assert u.wait_gone(set(u.descendants(os.getpid())) - children) == []


@pytest.mark.parametrize(
    "limits",
    [
        {"wall_time": math.inf},
        pytest.param({"cpu_time": math.inf}, marks=pytest.mark.pynisher_weakness),
        {"wall_time": True},
    ],
)
def test_infinite_and_boolean_times_run_as_pynisher_runs_them(limits):
    # pynisher: wall_time=math.inf is no limit, True is 1 second (cpu_time=math.inf is its TypeError); pynish's
    # CLI refused "inf", and True failed at the call.
    assert limit(u.identity, **limits)(4) == 4


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.pynish_only
def test_the_function_does_not_read_the_callers_stdin(context, tmp_path):
    # As multiprocessing's children (pynisher): sys.stdin reads end-of-file. Better than pynisher: a subprocess
    # of the function gets /dev/null too (pynisher's took the caller's input). pynish's fork child read it.
    e = u.script_env()
    proc = subprocess.run(
        [sys.executable, str(u.HERE / "scripts" / "read_stdin.py"), context],
        input="hello world\n",
        cwd=tmp_path,
        env=e,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "RESULT ('', '') 'hello world\\n'"


@pytest.mark.parametrize("layout", ["prefix", "target"])
@pytest.mark.pynish_only
def test_binary_found_beside_the_package_when_path_lacks_it(layout, tmp_path):
    # pip install --prefix/--target/--user puts the binary in a bin folder that need not be on PATH (cron,
    # systemd); pynish looked only beside the interpreter and on PATH.
    import sysconfig

    from pynish._call.binary import binary

    if os.path.exists(os.path.join(sysconfig.get_path("scripts"), "pynish")):
        pytest.skip("this interpreter's environment has its own pynish binary, which comes first")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = tmp_path / "lib" / version / "site-packages" if layout == "prefix" else tmp_path
    site.mkdir(parents=True, exist_ok=True)
    (site / "pynish").symlink_to(u.PYTHON_DIR / "pynish")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pynish").symlink_to(binary())
    env = {k: v for k, v in os.environ.items() if k not in ("PYNISH_BIN", "PYTHONPATH")}
    env.update(PATH="/usr/bin:/bin", PYTHONPATH=str(site))
    code = "import pynish, pynish._call.binary as b; print(b.binary()); print(pynish.limit(pow, context='fork')(2, 10))"
    argv = [sys.executable, "-c", code]
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path / "bin" / "pynish"), "1024"]


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
@pytest.mark.pynish_only
def test_a_memory_limit_below_the_interpreters_own_footprint(context, cgroup_backend, capfd):
    # Deliberately different: pynisher's address-space rlimit below the current use stops only new allocations,
    # so a trivial function returns; pynish holds the limit to what the process really holds, interpreter
    # included, and says so: the warning first, then MemoryLimitException with the usage of the call.
    limited = limit(u.identity, context=context, memory=(1, "MB"), wall_time=30)
    with pytest.raises(pynisher.MemoryLimitException):
        limited(1)
    assert "the memory limit 1048576B is below" in capfd.readouterr().err
    assert limited.last_run.verdict == "memory"
    assert limited.usage.peak_memory_bytes >= 2**20


def touch(n: int) -> int:
    block = bytearray(n)
    block[:: os.sysconf("SC_PAGE_SIZE")] = b"x" * len(block[:: os.sysconf("SC_PAGE_SIZE")])
    return len(block)


@pytest.mark.pynish_only
def test_a_fork_call_is_held_to_what_it_touches_beyond_the_caller(cgroup_backend, capfd):
    # A fork-context function starts as a copy-on-write copy of the caller, whose pages stay charged to the
    # caller's group: in the call's group only what the function writes counts. So a limit below what the caller
    # holds (warned about) still lets a function that allocates little return, and holds one that allocates more.
    small = limit(touch, context="fork", memory=(4, "MB"), wall_time=30)
    assert small(2**16) == 2**16
    assert "the memory limit 4194304B is below" in capfd.readouterr().err
    assert small.last_run.verdict == "completed"
    assert small.usage.peak_memory_bytes <= 4 * 2**20
    large = limit(touch, context="fork", memory=(4, "MB"), wall_time=30, warnings=False)
    with pytest.raises(pynisher.MemoryLimitException):
        large(16 * 2**20)
    assert large.last_run.verdict == "memory"


def blocked_signals():
    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.pynish_only
def test_a_caller_thread_with_blocked_signals(context):
    # The fork context inherited the calling thread's mask: the function ignored pynish's SIGTERM until the
    # SIGKILL a grace period later (pynisher's fork context likewise; its forkserver hung for 90 s here).
    box = {}

    def call():
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT, signal.SIGCHLD])
        box["mask"] = limit(blocked_signals, context=context, wall_time=30)()
        stubborn = limit(u.sleep_for, context=context, wall_time=1)
        try:
            stubborn(30)
        except pynisher.WallTimeoutException:
            box["escalation"] = stubborn.last_run.escalation

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(60)
    assert box["mask"] == []
    assert box["escalation"].first_signal == "SIGTERM" and not box["escalation"].sigkill_sent


def close_all_and_open(prefix):
    # As a daemonising library does: every descriptor above 2 closed, then files of its own opened on those numbers.
    os.closerange(3, 10000)
    for i in range(64):
        os.open(f"{prefix}.{i}", os.O_WRONLY | os.O_CREAT, 0o600)
    return "done"


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.pynish_only
def test_a_function_that_closes_all_descriptors_gets_a_clear_error_and_its_files_are_not_written(
    context, tmp_path, capfd
):
    # pynisher: "Unknown reason..." with the child's OSError (Bad file descriptor) on stderr. pynish wrote the
    # pickled outcome into whichever of the function's own files took the outcome pipe's number, silently.
    with pytest.raises(pynisher.PynisherException):
        limit(close_all_and_open, context=context, wall_time=30)(str(tmp_path / "mine"))
    written = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.stat().st_size}
    assert written == {}, f"the outcome went into the function's own files: {written}"
    if context != "forkserver":  # the server's stderr is the one it started with, not this test's
        assert "closed descriptor" in capfd.readouterr().err
