# README "Limit the time a process can take". Test preamble first (names the README leaves out), then the README's
# code with only the import changed, then a test postamble. The README block raises; the test reads the traceback.
import os, sys, time  # preamble: the README uses `time` without importing it

_hook = sys.excepthook  # preamble: name the uncaught exception's classes for the test


def _report(tp, value, tb):
    print("EXC", " ".join(c.__name__ for c in tp.__mro__), flush=True)
    _hook(tp, value, tb)


sys.excepthook = _report

import pynish as pynisher


def sleepy(x: int) -> int:
    time.sleep(x)
    return x

# You can also use `cpu_time` instead
with pynisher.limit(sleepy, wall_time=7) as limited_sleep:
    x = limited_sleep(10)  # Will raise a TimeoutException
