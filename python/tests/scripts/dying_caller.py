"""A caller that dies, or is told to stop, in the middle of a limited call (test_caller.py).

argv: PIDDIR CONTEXT MODE [CGROUP]. The limited function announces itself and a setsid grandchild that ignores
SIGTERM, then writes PIDDIR/ready. MODE "default": every signal at its default action (SIGINT too); "handler": a
SIGTERM handler of the caller's own, which records which announced processes were still alive when it ran, then
exits 3; "oom": the caller joins the memory cgroup CGROUP first, and once the call is running makes itself the
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
    elif mode == "handler":
        signal.signal(signal.SIGTERM, handler)
    else:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    print("RESULT", pynisher.limit(u.orphaning_tree, context=context)(PIDDIR), flush=True)
