"""A caller with a pynish.Executor running two limited trees; the test sends it Ctrl-C (SIGINT).

"with": the executor is used in a with block and KeyboardInterrupt is caught (exit 3); "bare": no with block, no
shutdown, and KeyboardInterrupt ends the program.
"""

import os
import sys

import pynish
import pynish_testutil as u

if __name__ == "__main__":
    base, mode = sys.argv[1], sys.argv[2]
    dirs = [os.path.join(base, f"t{i}") for i in range(2)]
    for d in dirs:
        os.mkdir(d)
    if mode == "bare":
        ex = pynish.Executor(2, wall_time=60)
        futures = [ex.submit(u.stubborn_tree, d) for d in dirs]
        os.mkdir(os.path.join(base, "queued"))
        queued = ex.submit(u.stubborn_tree, os.path.join(base, "queued"))
        print("RESULT", [f.result() for f in futures], flush=True)
    try:
        with pynish.Executor(2, wall_time=60) as ex:
            futures = [ex.submit(u.stubborn_tree, d) for d in dirs]
            print("RESULT", [f.result() for f in futures], flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        sys.exit(3)
