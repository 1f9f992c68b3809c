"""The rest of pynisher's surface, at its level or better (issue 18, items 9, 11, 12 and 13): any ``name``, an
unguarded script's bootstrapping RuntimeError, an unpicklable result, a wrong binary named, and the memory warning
only where the caller's memory is what the new process starts with."""

from __future__ import annotations

import os

import pytest

import pynish as pynisher
import pynish_testutil as u
from pynish import limit

CONTEXTS = ["fork", "spawn", "forkserver"]


def process_name():
    import multiprocessing

    return multiprocessing.current_process().name


def _name_cases():
    for name in ["--fold1", "-", "a\0b", 5, ("fold", 1)]:
        for context in CONTEXTS:
            # pynisher 1.0.10's spawned child fails to start with a name that is not a string.
            weak = not isinstance(name, str) and context != "fork"
            yield pytest.param(context, name, marks=[pytest.mark.pynisher_weakness] if weak else [])


@pytest.mark.parametrize("context,name", list(_name_cases()))
def test_any_name_is_data_not_a_flag(context, name):
    """The function's process has the name as given (as multiprocessing.Process(name=...) takes it)."""
    limited = limit(process_name, name=name, context=context, wall_time=30)
    assert limited() == name


@pytest.mark.pynish_only
@pytest.mark.parametrize("name,label", [("--fold1", "--fold1"), ("a\0b", "a\\0b"), (5, "5")])
def test_the_report_carries_the_name_as_its_label(name, label):
    limited = limit(u.identity, name=name, wall_time=30)
    assert limited(1) == 1
    assert limited.last_run.label == label


@pytest.mark.pynish_only
def test_run_takes_a_label_that_looks_like_a_flag():
    assert pynisher.run(["true"], label="--verbose").label == "--verbose"


_UNGUARDED = """
import sys
import pynish

def touch():
    open("ran", "a").close()
    return 1

print("result", pynish.limit(touch, context=sys.argv[1], wall_time=30)())
"""


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_an_unguarded_script_gets_the_bootstrapping_error(tmp_path, context):
    """No `if __name__ == "__main__":`: the new process re-runs the script's top level, reaches the call again,
    and the caller gets multiprocessing's RuntimeError; the function never runs."""
    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED)
    out = u.run_script(script, context, cwd=tmp_path, timeout=120)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "RuntimeError" in out.stderr and "bootstrapping phase" in out.stderr, out.stderr
    assert "result" not in out.stdout
    assert not (tmp_path / "ran").exists()


def open_text_file(path):
    return open(path, "w")


@pytest.mark.parametrize("context", CONTEXTS)
def test_an_open_text_file_as_result_raises_type_error(tmp_path, context):
    """As pynisher: a TypeError (not an io.StringIO made of the file's contents)."""
    with pytest.raises(TypeError, match="TextIOWrapper"):
        limit(open_text_file, context=context, wall_time=30)(str(tmp_path / "out.txt"))


@pytest.mark.pynish_only
@pytest.mark.parametrize("context", CONTEXTS)
def test_a_missing_binary_is_named(tmp_path, context, monkeypatch):
    missing = str(tmp_path / "no-such-pynish")
    monkeypatch.setenv("PYNISH_BIN", missing)
    with pytest.raises(FileNotFoundError, match=f"PYNISH_BIN='{missing}'"):
        limit(u.identity, context=context, wall_time=30)(1)


@pytest.mark.pynish_only
@pytest.mark.parametrize("context", CONTEXTS)
def test_a_binary_that_is_not_pynish_is_named(tmp_path, context, monkeypatch):
    wrong = tmp_path / "not-pynish"
    wrong.write_text("#!/bin/sh\nexit 3\n")
    wrong.chmod(0o755)
    monkeypatch.setenv("PYNISH_BIN", str(wrong))
    with pytest.raises(pynisher.PynisherException, match=f"pynish \\({wrong}\\) ended with status"):
        limit(u.identity, context=context, wall_time=30)(1)


@pytest.mark.pynish_only
@pytest.mark.parametrize("context,warned", [("fork", True), ("spawn", False), ("forkserver", False)])
def test_the_memory_warning_measures_the_caller_only_for_fork(context, warned, capfd, heavy_memory):
    """A limit below what the caller holds but well above a fresh interpreter's own few megabytes."""
    held = bytearray(160 * 2**20)
    held[:: os.sysconf("SC_PAGE_SIZE")] = b"x" * len(held[:: os.sysconf("SC_PAGE_SIZE")])
    limit(u.identity, context=context, memory=(120, "MB"), wall_time=30, raises=False)(1)
    del held
    assert ("is below the" in capfd.readouterr().err) is warned


@pytest.mark.pynish_only
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_a_limit_below_a_fresh_interpreter_is_still_warned_about(context, capfd):
    limit(u.identity, context=context, memory=(2, "MB"), wall_time=30, raises=False)(1)
    assert "below the 10485760B a fresh interpreter holds" in capfd.readouterr().err
