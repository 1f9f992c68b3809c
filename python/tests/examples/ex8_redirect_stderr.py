# README "Changes from v0.6.0": capturing or disabling warnings. Preamble: `limit` and `func` (the README leaves
# them out); func starts with more memory in use than its limit allows, which is what pynisher warns about.
from pynish import limit  # preamble


def func():
    return "done"


from contextlib import redirect_stderr

# You can always disable warnings
limited_f = limit(func, warnings=False)

# Capture warnings in a file
# Only seems to work properly on Linux
with open("stderr.txt", "w") as stderr, redirect_stderr(stderr):
    limited_f()

with open("stderr.txt", "r") as stderr:
    print(stderr.readlines())
