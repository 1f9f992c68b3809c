"""The functions the Python benchmark limits; a module of their own so every context finds them by name."""

import os
import subprocess
import sys
import time


def trivial():
    return 1


def uses_numpy():
    import numpy

    return float(numpy.arange(1000).sum())


def announce(piddir):
    with open(os.path.join(piddir, f"{os.getpid()}.pid"), "w") as fh:
        fh.write(str(os.getpid()))


def sleeper(piddir):
    announce(piddir)
    time.sleep(60)


def spinner(threads):
    """Spin in `threads` threads that really run in parallel (hashing 1 MiB releases the GIL)."""
    import hashlib
    import threading

    data = bytes(2**20)

    def loop():
        while True:
            hashlib.sha256(data).digest()

    for _ in range(threads - 1):
        threading.Thread(target=loop, daemon=True).start()
    loop()


def _hold(nbytes, piddir):
    announce(piddir)
    buf = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        buf[i] = 1
    time.sleep(60)


def four_workers(piddir):
    """4 multiprocessing workers holding 100 MB each (issue 11's memory case)."""
    import multiprocessing

    announce(piddir)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hold, args=(100 * 2**20, piddir)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return "workers ended"


def setsid_grandchild(piddir):
    """A grandchild in its own session, then sleep (issue 11's wall-time case)."""
    announce(piddir)
    code = "import os, sys, time; open(os.path.join(sys.argv[1], f'{os.getpid()}.pid'), 'w').close(); time.sleep(60)"
    subprocess.Popen([sys.executable, "-c", code, piddir], start_new_session=True)
    time.sleep(60)


def big_return(nbytes):
    """A bytes value of nbytes (every page touched) to send back to the caller."""
    buf = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        buf[i] = 1
    return bytes(buf)


def takes(value):
    """A function with an argument (a large one, in the benchmark), returning little."""
    return len(value)
