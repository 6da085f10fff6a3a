"""Give freed heap memory back to the system, periodically, in processes that run for hours.

A livestream frees and reallocates frame and audio buffers from several threads all day. glibc's
allocator keeps much of that freed memory in its per-thread arenas, so resident memory creeps up
(~90 MB/h in our 20-minute soak) although Python's own allocations stay flat (tracemalloc: 159-169
MB for 15 minutes). `malloc_trim(0)` returns the free pages; with it every 30 s the same soak's
RSS stayed within 3 MB over its last ten minutes (docs/measurements/livestream.md). On systems
without glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 30.0
M_ARENA_MAX = -8  # glibc mallopt parameter (malloc.h)
LIVESTREAM_ARENAS = 2


def _libc_function(name: str, argtypes: list, restype):
    """A function of the C library, or None where it has none (musl, macOS)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, restype
    return function


def load_malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    return _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)


def limit_malloc_arenas(count: int = LIVESTREAM_ARENAS) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX does), before the worker threads start.

    By default glibc gives busy threads their own arenas, up to 8 per core, and each keeps its own
    high-water mark of freed memory; a stream's many short-lived worker threads ratchet those up.
    Two arenas are plenty for a process that uses a fifth of a core. Returns False where the C
    library has no mallopt (nothing changes then)."""
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
    return mallopt is not None and mallopt(M_ARENA_MAX, count) == 1


async def trim_heap_forever(interval_s: float = DEFAULT_INTERVAL_S, trim=None) -> None:
    """Run until cancelled: every `interval_s`, return free heap pages to the system.

    The trim walks the heap while holding the allocator's locks (a few milliseconds for our
    ~600 MB process), so it runs in a worker thread rather than on the event loop."""
    trim = trim or load_malloc_trim()
    if trim is None:
        log.info("no malloc_trim in this C library: heap trimming is off")
        return
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(trim, 0)
