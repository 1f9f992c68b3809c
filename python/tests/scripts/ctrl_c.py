"""A caller that runs a limited long function; the test sends it Ctrl-C (SIGINT) and reads how it ended."""

import sys

import pynish as pynisher
import pynish_testutil as u

if __name__ == "__main__":
    piddir, context, forceful, ignore = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
    lf = pynisher.limit(u.stubborn_tree, context=context, wall_time=60, forceful_keyboard_interrupt=forceful)
    try:
        print("RESULT", lf(piddir, ignore), flush=True)
    except KeyboardInterrupt:
        print("RESULT KeyboardInterrupt", flush=True)
        sys.exit(3)
