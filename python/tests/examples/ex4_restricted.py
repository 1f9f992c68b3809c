# README "You can even use the decorator". Preamble: Response and a remote server that never answers (it hangs,
# so the 1 s limit decides); the pid file lets the test check that the hung call is gone.
import os, sys, time
from pathlib import Path

Response = object


def block_until_access(*args):
    Path(os.environ["PIDDIR"], f"{os.getpid()}.pid").write_text("x")
    time.sleep(60)


started = time.monotonic()

from pynish import restricted

@restricted(wall_time=1, raises=False)
def notify_remote_server() -> Response:
    """We don't care that this fails, just give it a second to try"""
    server = block_until_access(...)
    response = server.notify()

notify_remote_server()
# ... continue on even if it failed
print("RESULT continued after", round(time.monotonic() - started, 2))  # postamble
