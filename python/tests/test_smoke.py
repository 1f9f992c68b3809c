"""Smoke tests of the pynish package itself (the full suite lives beside this file): each context runs a
function, brings back its exception, and names a wall-time limit; ``pynish.run`` returns the typed report."""

from __future__ import annotations

import os
import sys
import time

import pytest

import pynish


class Custom(Exception):
    pass


def fails(text: str) -> None:
    raise Custom(text)


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_each_context_returns_raises_and_times_out(context: str) -> None:
    assert pynish.limit(pow, wall_time=5, context=context)(2, 10) == 1024
    assert pynish.limit(lambda x: x + 1, context=context)(1) == 2

    with pytest.raises(Custom, match="from the child") as info:
        pynish.limit(fails, context=context)("from the child")
    assert "in fails" in str(info.value.__cause__), "the child's traceback text comes along"

    limited = pynish.limit(time.sleep, wall_time=1, context=context)
    start = time.monotonic()
    with pytest.raises(pynish.WallTimeoutException):
        limited(30)
    assert time.monotonic() - start < 5
    assert limited.last_run is not None and limited.last_run.verdict == "wall_time"


def test_run_returns_the_report() -> None:
    report = pynish.run([sys.executable, "-c", "import time; time.sleep(30)"], wall_time="1s", grace=0.2)
    assert report.verdict == "wall_time"
    assert report.exit_code == 124
    assert report.limits.wall_time_s == 1.0
    assert report.usage.wall_time_s < 10
    done = pynish.run(["true"], memory="500MB")
    assert (done.verdict, done.command_exit_code) == ("completed", 0)
    assert done.limits.memory_bytes == 500_000_000


def test_bad_arguments_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError):
        pynish.limit(pow, wall_time=0)
    with pytest.raises(ValueError):
        pynish.restricted(pow)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pynish.run(["true"], wall_time="5 parsecs")
    assert os.path.basename(sys.executable)
