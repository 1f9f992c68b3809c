"""A caller that dies, or is told to stop, in the middle of a limited call (test_caller.py).

argv: PIDDIR CONTEXT MODE [CGROUP]. The limited function announces itself and a setsid grandchild that ignores
SIGTERM, then writes PIDDIR/ready. MODE "default": every signal at its default action (SIGINT too); "handler": a
SIGTERM handler of the caller's own, which records which announced processes were still alive when it ran, then
exits 3; "forks": once the call is running, the caller forks a child of its own (as a multiprocessing worker
started meanwhile) that writes PIDDIR/forked.<pid> and lives on; "oom": the caller joins the memory cgroup CGROUP first, and once the call is running makes itself the
OOM killer's first choice and allocates until it is killed.
"""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pynish as pynisher
import pynish_testutil as u


def handler(signum, frame):
    alive = [p for p in u.pids_in(PIDDIR) if u.alive(p)]
    Path(PIDDIR, "handler.tmp").write_text(f"{signum} {alive}")
    os.replace(Path(PIDDIR, "handler.tmp"), Path(PIDDIR, "handler"))
    sys.exit(3)


def fork_meanwhile():
    # Forks once the call runs, as a caller starting a worker meanwhile: the child outlives the caller.
    while not Path(PIDDIR, "ready").exists():
        time.sleep(0.01)
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (1, 2):  # not the test's pipes: it reads them to their end once the caller is dead
            os.dup2(null, fd)
        Path(PIDDIR, f"forked.{os.getpid()}").write_text("")
        time.sleep(120)
        os._exit(0)


def overflow():
    # Waits for the call, then outgrows the cgroup: the OOM killer takes this process (oom_score_adj 1000).
    while not Path(PIDDIR, "ready").exists():
        time.sleep(0.01)
    Path("/proc/self/oom_score_adj").write_text("1000")
    hoard = []
    while True:
        hoard.append(bytearray(16 * 2**20))


if __name__ == "__main__":
    PIDDIR, context, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "oom":
        Path(sys.argv[4], "cgroup.procs").write_text(str(os.getpid()))
        threading.Thread(target=overflow, daemon=True).start()
    elif mode == "forks":
        threading.Thread(target=fork_meanwhile, daemon=True).start()
    elif mode == "handler":
        signal.signal(signal.SIGTERM, handler)
    else:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    print("RESULT", pynisher.limit(u.orphaning_tree, context=context)(PIDDIR), flush=True)
