from pynisher.exceptions import *  # noqa: F401,F403
