# README "To check if a feature is supported": its first part. `supports` is used without an import (preamble).
from pynish import supports  # preamble

from pynish import limit


for limit in ["cpu_time", "wall_time", "memory", "decorator"]:
    print(f"Supports {limit} - {supports(limit)}")
