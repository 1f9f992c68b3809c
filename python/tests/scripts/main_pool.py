"""A caller script whose limited function, defined in `__main__`, maps another `__main__` function over a
multiprocessing Pool of the start method given in argv[2]; the call runs in the context given in argv[1]."""

import multiprocessing
import sys

import pynish as pynisher


class Point:
    def __init__(self, x):
        self.x = x


def square(x):
    return x * x


def pooled(start_method):
    with multiprocessing.get_context(start_method).Pool(2) as pool:
        return sum(pool.map(square, range(10)))


def is_point(p):
    return isinstance(p, Point)


if __name__ == "__main__":
    context, start_method = sys.argv[1], sys.argv[2]
    total = pynisher.limit(pooled, context=context, wall_time=30)(start_method)
    same_class = pynisher.limit(is_point, context=context, wall_time=30)(Point(1))
    print("RESULT", context, total, same_class)
