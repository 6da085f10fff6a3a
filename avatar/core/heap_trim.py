"""Keep a process that runs for hours from growing through allocator retention.

A livestream frees and reallocates frame and audio buffers from many worker threads all day.
glibc gives busy threads their own malloc arenas and keeps freed memory in each, so resident
memory crept up (~90 MB/h in a 20-minute soak) although Python's own allocations stayed flat
(tracemalloc: 159-169 MB over 15 minutes). Two measures, both needed in our soaks: cap the arenas
before the threads start (`limit_malloc_arenas`), and return free pages every 30 s
(`trim_heap_forever`, glibc `malloc_trim(0)`). With both, a 30-minute soak oscillated within
646-706 MB after warm-up with no clear trend (docs/measurements/livestream.md). Without glibc
(musl, macOS) both do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 30.0
M_ARENA_MAX = -8  # glibc mallopt parameter (malloc.h)
M_MMAP_THRESHOLD = -3
RENDER_MMAP_THRESHOLD_BYTES = 1 << 20
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


def fix_mmap_threshold(threshold_bytes: int = RENDER_MMAP_THRESHOLD_BYTES) -> bool:
    """Give every allocation of `threshold_bytes` or more its own mapping, returned on free.

    glibc raises its mmap threshold (up to 32 MB) each time a mapped block is freed, so after the
    first sentence Piper's inference buffers and the windows' audio came from the heap, where
    they fragmented it: a text render's resident memory crept up with the sentences spoken
    (Piper alone: 442 -> 503 MB over six minutes of text; with a fixed 1 MB threshold it stayed at
    219 MB and peaked at 432-436 MB every minute, docs/measurements/long_renders.md). Setting the
    threshold also stops the adjustment. Returns False where the C library has no mallopt."""
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1


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
