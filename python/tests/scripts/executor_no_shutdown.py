"""A caller that never shuts its executors down (nor leaves a with block): it must still exit."""

import pynish
import pynish_testutil as u

if __name__ == "__main__":
    ex = pynish.Executor(2, wall_time=30)
    print("RESULT", ex.submit(u.square_in_testutil, 3).result(), flush=True)
    ex.submit(u.identity, "queued at exit")

    def dropped():
        pynish.Executor(1, wall_time=30).submit(u.identity, 1).result()

    dropped()
