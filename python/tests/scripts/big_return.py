"""A caller that gets a 500 MiB bytes value back and prints its own peak resident memory (MiB)."""

import resource
import sys

import pynish as pynisher


def big(n):
    buf = bytearray(n)
    for i in range(0, n, 4096):
        buf[i] = 1
    return bytes(buf)


if __name__ == "__main__":
    n = 500 * 2**20
    value = pynisher.limit(big, context=sys.argv[1], wall_time=120)(n)
    assert len(value) == n and value[4096] == 1 and value[4097] == 0
    print("RESULT", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
