"""A caller script fed on stdin: its limited function (context in argv) reads stdin, and so does a subprocess of
it; the caller then reads what is left."""

import subprocess
import sys

import pynish as pynisher


def read_input():
    child = subprocess.run(["head", "-c", "5"], stdout=subprocess.PIPE, timeout=10).stdout.decode()
    return sys.stdin.read(5), child


if __name__ == "__main__":
    inside = pynisher.limit(read_input, context=sys.argv[1], wall_time=30)()
    print("RESULT", repr(inside), repr(sys.stdin.read()))
