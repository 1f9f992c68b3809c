"""A caller with a pynish.Executor running limited trees, then waiting forever; the test kills it (SIGKILL)."""

import os
import sys
import time

import pynish
import pynish_testutil as u

if __name__ == "__main__":
    base, context = sys.argv[1], sys.argv[2]
    dirs = [os.path.join(base, f"t{i}") for i in range(2)]
    for d in dirs:
        os.mkdir(d)
    ex = pynish.Executor(2, wall_time=60, context=context)
    if len(sys.argv) > 3:
        # A forked child of the caller that outlives it: it must not keep the executor's server alive.
        import multiprocessing

        os.mkdir(sys.argv[3])
        multiprocessing.get_context("fork").Process(target=u.sleep_for, args=(60, sys.argv[3])).start()
        u.wait_for_files(sys.argv[3], 1)
    futures = [ex.submit(u.stubborn_tree, d) for d in dirs]
    print("SERVER", ex._server.process.pid if ex._server else 0, flush=True)
    time.sleep(120)
