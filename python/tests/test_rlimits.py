"""Per-process rlimits per call (issue 26): ``open_files``, ``file_size``, ``stack``, ``core_size`` on
``pynish.limit``, ``restricted``, ``pynish.Executor`` (per executor and per task) and ``pynish.run``. They are the
CLI's ``--open-files``, ``--file-size``, ``--stack``, ``--core-size``: set in the function's process and inherited
by every process it starts; a write past ``file_size`` is ``FileSizeLimitException`` (an ``OSError`` EFBIG)."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys

import pytest

import pynish
from pynish import FileSizeLimitException

pytestmark = pytest.mark.pynish_only

CONTEXTS = ["fork", "forkserver", "spawn"]
MIB = 2**20
RESOURCES = ["RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_STACK", "RLIMIT_CORE"]
#: What ``RLIMITS`` asks, as (soft, hard) per resource of ``RESOURCES``. 64 descriptors: with fork the function's
#: process starts with the caller's (pytest's worker holds 14), as after ``os.fork``.
ASKED = [(64, 64), (MIB, MIB), (4 * MIB, 4 * MIB), (0, 0)]
RLIMITS = dict(open_files=64, file_size=(1, "MB"), stack=(4, "MB"), core_size=0)


def rlimits_here_and_in_a_grandchild() -> tuple:
    """The function's own rlimits, and those a process it starts reads."""
    here = [resource.getrlimit(getattr(resource, name)) for name in RESOURCES]
    code = f"import resource as r; print([r.getrlimit(getattr(r, n)) for n in {RESOURCES!r}])"
    grandchild = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return here, eval(grandchild.stdout)


def open_until_refused() -> tuple:
    """Opens /dev/null until the kernel refuses: the highest descriptor it got, and the error."""
    opened = []
    try:
        while True:
            opened.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as e:
        return max(opened, default=-1), errno.errorcode[e.errno]
    finally:
        for fd in opened:
            os.close(fd)


def write(path: str, nbytes: int) -> int:
    with open(path, "wb") as f:
        f.write(b"x" * nbytes)
    return nbytes


def write_dying_of_sigxfsz(path: str, nbytes: int) -> int:
    """As a C program does: SIGXFSZ's default action (CPython ignores it) kills the process at the limit."""
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    return write(path, nbytes)


def write_and_catch(path: str, nbytes: int) -> str:
    try:
        write(path, nbytes)
    except OSError as e:
        return errno.errorcode[e.errno]
    return "written"


@pytest.mark.parametrize("context", CONTEXTS)
def test_the_function_and_its_grandchild_hold_the_rlimits(context):
    limited = pynish.limit(rlimits_here_and_in_a_grandchild, context=context, wall_time=60, **RLIMITS)
    here, grandchild = limited()
    assert [tuple(x) for x in here] == ASKED
    assert [tuple(x) for x in grandchild] == ASKED
    limits = limited.last_run.limits
    assert (limits.open_files, limits.file_size_bytes, limits.stack_bytes, limits.core_size_bytes) == (
        64,
        MIB,
        4 * MIB,
        0,
    )
    assert limited.last_run.enforcement.file_size == "rlimit"


@pytest.mark.parametrize("context", CONTEXTS)
def test_open_files_is_the_descriptors_a_process_may_hold(context):
    # Descriptors 0 to 63, the call's own among them; the 65th open is refused.
    assert pynish.limit(open_until_refused, context=context, wall_time=60, open_files=64)() == (63, "EMFILE")


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_write_past_file_size_raises_file_size_limit_exception(context, tmp_path):
    path = str(tmp_path / "big")
    limited = pynish.limit(write, context=context, wall_time=60, file_size=(1, "MB"))
    with pytest.raises(FileSizeLimitException) as raised:
        limited(path, 3 * MIB)
    # An OSError EFBIG, as the write's own error is: `except OSError` code keeps working.
    assert isinstance(raised.value, OSError) and raised.value.errno == errno.EFBIG
    assert "1048576B" in str(raised.value)
    assert "File too large" in str(raised.value.__cause__), "the child's traceback is the cause"
    assert os.path.getsize(path) == MIB
    assert limited(path, MIB // 2) == MIB // 2, "a write within the limit is no hit"


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_process_killed_by_sigxfsz_is_verdict_file_size(context, tmp_path):
    path = str(tmp_path / "big")
    limited = pynish.limit(write_dying_of_sigxfsz, context=context, wall_time=60, file_size=(1, "MB"))
    with pytest.raises(FileSizeLimitException):
        limited(path, 3 * MIB)
    assert limited.last_run.verdict == "file_size"
    assert limited.last_run.exit_code == 120
    assert limited.last_run.signal == "SIGXFSZ"
    assert os.path.getsize(path) == MIB


def test_a_file_size_error_the_function_catches_is_its_own(tmp_path):
    limited = pynish.limit(write_and_catch, wall_time=60, file_size=(1, "MB"))
    assert limited(str(tmp_path / "big"), 3 * MIB) == "EFBIG"
    assert limited.last_run.verdict == "completed"


def test_raises_false_gives_empty_on_a_file_size_hit(tmp_path):
    limited = pynish.limit(write, wall_time=60, file_size=0, raises=False)
    assert limited(str(tmp_path / "big"), 1) is pynish.EMPTY


def test_restricted_takes_the_rlimits():
    @pynish.restricted(wall_time=60, context="spawn", **RLIMITS)
    def decorated() -> tuple:
        return rlimits_here_and_in_a_grandchild()

    here, grandchild = decorated()
    assert [tuple(x) for x in here] == [tuple(x) for x in grandchild] == ASKED


def test_the_executor_holds_its_rlimits_and_a_tasks_own(tmp_path):
    with pynish.Executor(2, wall_time=60, **RLIMITS) as executor:
        every = executor.submit(rlimits_here_and_in_a_grandchild)
        own = executor.submit(pynish.limit(rlimits_here_and_in_a_grandchild, wall_time=60, open_files=32))
        over = executor.submit(write, str(tmp_path / "big"), 3 * MIB)
        here, grandchild = every.result()
        assert [tuple(x) for x in here] == [tuple(x) for x in grandchild] == ASKED
        here, _ = own.result()
        assert tuple(here[0]) == (32, 32), "the task's own limit object decides"
        assert tuple(here[1]) == resource.getrlimit(resource.RLIMIT_FSIZE), "and the executor's are not added"
        with pytest.raises(FileSizeLimitException):
            over.result()


def test_pynish_run_takes_the_rlimits(tmp_path):
    out = tmp_path / "out"
    with open(out, "w") as f:
        report = pynish.run(
            ["sh", "-c", "ulimit -n; ulimit -s; ulimit -c"], open_files=16, stack="4MiB", core_size=0, stdout=f
        )
    assert report.verdict == "completed"
    assert out.read_text().split() == ["16", "4096", "0"]
    report = pynish.run(
        ["dd", "if=/dev/zero", f"of={tmp_path / 'big'}", "bs=64k", "count=100"],
        file_size="1MiB",
        stderr=subprocess.DEVNULL,
    )
    assert (report.verdict, report.exit_code) == ("file_size", 120)
    assert os.path.getsize(tmp_path / "big") <= MIB


@pytest.mark.parametrize(
    "bad",
    [
        dict(open_files=0),
        dict(open_files=True),
        dict(open_files=1.5),
        dict(file_size=-1),
        dict(stack=0),
        dict(core_size=-1),
        dict(stack=(0.5, "B")),
    ],
)
def test_bad_rlimits_are_refused_at_limit_time(bad):
    with pytest.raises(ValueError):
        pynish.limit(print, **bad)
    with pytest.raises(ValueError):
        pynish.Executor(1, **bad)


def test_an_rlimit_above_the_inherited_hard_limit_is_refused_unless_root(monkeypatch):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE has no hard limit here")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ValueError, match="hard limit"):
        pynish.limit(print, open_files=hard + 1)
    assert pynish.limit(print, open_files=hard).open_files == hard
