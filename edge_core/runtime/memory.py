"""glibc malloc settings for a long-running concentrator process.

A seal allocates a few megabytes for a moment (the rows read from SQLite, numpy columns, the
zstd workspace). glibc serves allocations above its mmap threshold with mmap and returns them
to the OS when freed, but it raises that threshold after the first large free, so later seals'
buffers land on the heap and stay there as free memory: the process's RSS ratchets up by
10-15 MB on a long backlog. Fixing the threshold at 128 KiB (which also turns off the
adjustment) and limiting the arenas to two (the runtime has a handful of threads: the event
loop, the spool's lanes, awscrt's) keeps the drain of a 7-day backlog under 60 MB
(``python -m bench.spool``).

The same settings can come from the environment (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_ARENA_MAX``, set by the Concentrator recipe); :func:`tune_malloc` applies them in the
process for every other way of starting the runtime, and leaves alone what the environment set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "tune_malloc"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2
# mallopt parameters (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc() -> dict[str, int]:
    """Apply the settings above with ``mallopt`` where glibc is the allocator and the
    environment did not choose; returns what was applied (empty elsewhere). Call it early,
    before the runtime starts its threads."""
    name = ctypes.util.find_library("c")
    if name is None:
        return {}
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    for env, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENA_MAX),
    ):
        if env in os.environ:
            continue
        if mallopt(param, value) == 1:
            applied[env] = value
    if applied:
        log.debug("malloc tuned: %s", applied)
    return applied
