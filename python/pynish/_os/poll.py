"""Waiting on descriptors of any number: ``select.select`` refuses a descriptor past FD_SETSIZE (1024), and a caller
holding a thousand files (a server, a data loader) hands pynish's pipes and pidfds out past it. ``poll`` has no
such bound; its events are read as ``select`` reads them (readable: data, hang-up or error; writable: room or
error)."""

from __future__ import annotations

import math
import select
from typing import Dict, List, Optional, Sequence, Tuple

_READABLE = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL
_WRITABLE = select.POLLOUT | select.POLLERR | select.POLLNVAL


def wait(
    reading: Sequence[int], writing: Sequence[int] = (), timeout: Optional[float] = None
) -> Tuple[List[int], List[int]]:
    """``select.select(reading, writing, [], timeout)`` for descriptors of any number: the readable and the writable
    ones, both empty if ``timeout`` (seconds; None: no limit) passed first."""
    asked: Dict[int, int] = {}
    for fd in reading:
        asked[fd] = asked.get(fd, 0) | select.POLLIN | select.POLLPRI
    for fd in writing:
        asked[fd] = asked.get(fd, 0) | select.POLLOUT
    poller = select.poll()
    for fd, mask in asked.items():
        poller.register(fd, mask)
    # Whole milliseconds, rounded up: a wait shorter than asked would only be asked again.
    events = dict(poller.poll(None if timeout is None else math.ceil(max(0.0, timeout) * 1000)))
    readable = [fd for fd in reading if events.get(fd, 0) & _READABLE]
    writable = [fd for fd in writing if events.get(fd, 0) & _WRITABLE]
    return readable, writable
