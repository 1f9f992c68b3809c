"""A caller with a pynish.Executor running two limited trees; the test sends it Ctrl-C (SIGINT)."""

import os
import sys

import pynish
import pynish_testutil as u

if __name__ == "__main__":
    base = sys.argv[1]
    dirs = [os.path.join(base, f"t{i}") for i in range(2)]
    for d in dirs:
        os.mkdir(d)
    try:
        with pynish.Executor(2, wall_time=60) as ex:
            futures = [ex.submit(u.stubborn_tree, d) for d in dirs]
            print("RESULT", [f.result() for f in futures], flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        sys.exit(3)
