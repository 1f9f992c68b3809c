"""Soft time limits: ``SoftTimeLimit`` raised inside the function at ``soft_wall_time`` / ``soft_cpu_time``, in
every context and in the Executor; the hard limits still hold afterwards."""

from __future__ import annotations

import time

import pytest

import pynish
from pynish import SoftTimeLimit

CONTEXTS = ["fork", "forkserver", "spawn"]


def anytime() -> int:
    """An anytime loop: improves its result until warned, then returns the best so far."""
    best = 0
    try:
        while True:
            best += 1
    except SoftTimeLimit:
        return best


def timed(call: object) -> tuple:
    """The call's result and the seconds it took, as the caller sees them (the function's process included)."""
    start = time.monotonic()
    result = call()  # type: ignore[operator]
    return result, time.monotonic() - start


def stubborn() -> None:
    while True:
        pass


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_caught_soft_wall_time_returns_the_partial_result(context: str) -> None:
    best, at = timed(pynish.limit(anytime, soft_wall_time=1, wall_time=10, context=context))
    assert best > 0
    assert 0.9 <= at <= 3.0, at


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_caught_soft_cpu_time_returns_the_partial_result(context: str) -> None:
    best, at = timed(pynish.limit(anytime, soft_cpu_time=1, cpu_time=10, wall_time=60, context=context))
    assert best > 0
    assert 0.9 <= at <= 3.0, at


@pytest.mark.parametrize("context", CONTEXTS)
def test_an_uncaught_soft_limit_raises_in_the_caller(context: str) -> None:
    start = time.monotonic()
    with pytest.raises(SoftTimeLimit):
        pynish.limit(stubborn, soft_wall_time=1, wall_time=10, context=context)()
    assert 0.9 <= time.monotonic() - start <= 5.0


def test_the_hard_limit_still_holds_after_the_soft_one() -> None:
    def ignores_it() -> None:
        while True:
            try:
                stubborn()
            except SoftTimeLimit:
                pass

    with pytest.raises(pynish.WallTimeoutException):
        pynish.limit(ignores_it, soft_wall_time=1, wall_time=2)()


def test_the_executor_returns_each_tasks_partial_result() -> None:
    with pynish.Executor(2, soft_wall_time=1, wall_time=10) as executor:
        start = time.monotonic()
        results = [f.result() for f in [executor.submit(anytime) for _ in range(3)]]
        took = time.monotonic() - start
    assert all(best > 0 for best in results), results
    # Two at a time: the third task starts when one of the first two has returned.
    assert 1.8 <= took <= 8.0, took


def test_a_soft_limit_at_or_above_its_hard_one_is_refused() -> None:
    with pytest.raises(ValueError, match="soft_wall_time"):
        pynish.limit(stubborn, soft_wall_time=2, wall_time=2)
    with pytest.raises(ValueError, match="soft_cpu_time"):
        pynish.limit(stubborn, soft_cpu_time=3, cpu_time=2)
    with pytest.raises(ValueError):
        pynish.Executor(1, soft_wall_time=5, wall_time=1)
