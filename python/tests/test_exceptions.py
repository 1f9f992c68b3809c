"""The exception hierarchy, exceptions crossing the process boundary, and bad arguments (pynisher 1.0.10's errors)."""

from __future__ import annotations

import traceback

import pytest

import pynish as pynisher
import pynish_testutil as u
from pynish import limit, restricted


class CallerDefinedError(Exception):
    """Defined in the caller's (this test) module: the child must find it by module and name."""


class CallerDefinedCodedError(Exception):
    """Also takes a second, required argument (pynisher 1.0.10 fails on it: it calls the class with one)."""

    def __init__(self, message, code):
        super().__init__(message, code)
        self.code = code

    def __str__(self):
        return f"{self.args[0]} (code {self.code})"


def raise_caller_defined(message):
    raise CallerDefinedError(message)


def raise_caller_defined_coded(message):
    raise CallerDefinedCodedError(message, 42)


# ---------------------------------------------------------------- hierarchy


def test_hierarchy():
    e = pynisher
    assert issubclass(e.PynisherException, Exception)
    assert issubclass(e.TimeoutException, e.PynisherException)
    assert issubclass(e.CpuTimeoutException, e.TimeoutException)
    assert issubclass(e.WallTimeoutException, e.TimeoutException)
    assert issubclass(e.MemoryLimitException, e.PynisherException)
    assert issubclass(e.MemoryLimitException, MemoryError)
    assert not issubclass(e.MemoryLimitException, e.TimeoutException)


def test_importable_from_exceptions_module():
    from pynish.exceptions import (
        CpuTimeoutException,
        MemoryLimitException,
        PynisherException,
        TimeoutException,
        WallTimeoutException,
    )

    assert CpuTimeoutException is pynisher.CpuTimeoutException
    assert MemoryLimitException is pynisher.MemoryLimitException
    assert PynisherException is pynisher.PynisherException
    assert TimeoutException is pynisher.TimeoutException
    assert WallTimeoutException is pynisher.WallTimeoutException


def test_public_names():
    for name in [
        "limit", "restricted", "Pynisher", "EMPTY", "supports", "supports_walltime", "supports_cputime",
        "supports_memory", "supports_limit_decorator", "contexts", "PynisherException", "TimeoutException",
        "CpuTimeoutException", "WallTimeoutException", "MemoryLimitException",
    ]:  # fmt: skip
        assert hasattr(pynisher, name), name
    # pynisher also hangs the exceptions on the class, for `except lf.WallTimeoutException`
    assert pynisher.Pynisher.WallTimeoutException is pynisher.WallTimeoutException
    assert pynisher.Pynisher.MemoryLimitException is pynisher.MemoryLimitException


# ---------------------------------------------------------------- exceptions from the child


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_caller_defined_exception_keeps_type_message_and_traceback(context):
    with pytest.raises(CallerDefinedError) as info:
        limit(raise_caller_defined, context=context, wall_time=30)("it broke")
    e = info.value
    assert type(e) is CallerDefinedError
    assert str(e) == "it broke"
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    # the child's own traceback text: the function that raised, and the raising line
    assert "in raise_caller_defined" in text and "raise CallerDefinedError(message)" in text, text


@pytest.mark.pynisher_weakness
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_caller_defined_exception_with_its_own_constructor(context):
    with pytest.raises(CallerDefinedCodedError) as info:
        limit(raise_caller_defined_coded, context=context, wall_time=30)("it broke")
    e = info.value
    assert type(e) is CallerDefinedCodedError
    assert e.code == 42 and str(e) == "it broke (code 42)"
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    assert "raise CallerDefinedCodedError(message, 42)" in text, text


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_builtin_exception_keeps_type_and_message(context):
    with pytest.raises(ValueError, match="exact words"):
        limit(u.raise_value_error, context=context)("exact words")


def test_keyboard_interrupt_like_base_exceptions_cross_too():
    with pytest.raises(SystemExit):
        limit(exit_with, wall_time=30)(3)


def exit_with(code):
    raise SystemExit(code)


# ---------------------------------------------------------------- bad arguments: pynisher 1.0.10's error types


def f():
    return 1


@pytest.mark.parametrize(
    "make,error",
    [
        (lambda: restricted(f), ValueError),  # `@restricted` without arguments
        (lambda: limit(5), ValueError),
        (lambda: limit(f, cpu_time=0), ValueError),
        (lambda: limit(f, cpu_time=-3), ValueError),
        (lambda: limit(f, wall_time=0), ValueError),
        (lambda: limit(f, wall_time=-1), ValueError),
        (lambda: limit(f, memory=0), ValueError),
        (lambda: limit(f, memory=(1, "TB")), KeyError),
        (lambda: limit(f, wall_time=(1, "d")), KeyError),
        (lambda: limit(f, cpu_time=(1, "ms")), KeyError),
        (lambda: limit(f, context="threads"), ValueError),
        (lambda: limit(f, wrap_errors={"disk": ["OSError"]}), ValueError),
        (lambda: limit(f, memory=(1, "MB", 3)), ValueError),
        (lambda: limit(f, 5), TypeError),
        (lambda: pynisher.supports("gpu"), ValueError),
    ],
    ids=[
        "restricted-bare", "not-callable", "cpu0", "cpu-neg", "wall0", "wall-neg", "mem0",
        "mem-unit", "wall-unit", "cpu-unit", "context", "wrap-key", "mem-3-tuple", "positional", "supports",
    ],
)  # fmt: skip
def test_bad_arguments_raise_pynishers_errors(make, error):
    with pytest.raises(error):
        make()


@pytest.mark.pynisher_weakness  # pynisher refuses @restricted with spawn (ValueError); pynish supports it
def test_restricted_works_with_spawn():
    @restricted(context="spawn", wall_time=30)
    def double(x):
        return 2 * x

    assert double(21) == 42


def test_bare_restricted_decorator_is_a_value_error():
    with pytest.raises(ValueError, match="arguments"):

        @restricted
        def g():
            return 1
