"""A caller script: functions and an exception class defined in `__main__`, limited in the context given in argv."""

import sys

import pynish as pynisher


class Halted(Exception):
    pass


def answer(x):
    return x * 6


def halt():
    raise Halted("main-defined")


if __name__ == "__main__":
    context = sys.argv[1]
    value = pynisher.limit(answer, context=context, wall_time=30)(7)
    try:
        pynisher.limit(halt, context=context, wall_time=30)()
    except Halted as e:
        caught = f"{type(e).__name__} {e}"
    print("RESULT", context, value, caught)
