"""Heap trimming: the trim really runs on a schedule, stops when cancelled, and is a no-op where
the C library has no malloc_trim."""

from __future__ import annotations

import asyncio

from avatar.core.heap_trim import load_malloc_trim, trim_heap_forever


def test_glibc_malloc_trim_is_found_and_callable():
    trim = load_malloc_trim()
    assert trim is not None  # Debian/Ubuntu (glibc), where this project runs its CI
    assert trim(0) in (0, 1)  # 1: memory was released, 0: nothing to release


def test_trims_every_interval_until_cancelled():
    calls: list[int] = []

    async def main():
        task = asyncio.create_task(trim_heap_forever(0.01, trim=calls.append))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        count = len(calls)
        await asyncio.sleep(0.05)
        return count

    count = asyncio.run(main())
    assert 3 <= count <= 11 and calls == [0] * len(calls)
    assert len(calls) == count  # nothing after the cancel


def test_without_malloc_trim_it_returns_at_once(monkeypatch):
    import avatar.core.heap_trim as heap_trim

    monkeypatch.setattr(heap_trim, "load_malloc_trim", lambda: None)
    asyncio.run(asyncio.wait_for(trim_heap_forever(0.01), timeout=1.0))


def test_arena_limit_is_accepted_by_glibc():
    import subprocess
    import sys

    # in a child: the limit is process-wide and must not change the test process
    code = "from avatar.core.heap_trim import limit_malloc_arenas as f; raise SystemExit(0 if f(2) else 1)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


HEAP_CHILD = """
import sys
import numpy as np
from avatar.core.heap_trim import fix_mmap_threshold

def rss_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = np.ones(2 << 20, np.float32)  # 8 MB, mapped; freeing it raises glibc's threshold unless fixed
del big
before = rss_mb()
blocks = [np.ones(1 << 19, np.float32) for _ in range(30)]  # 30 x 2 MB, as a sentence's buffers
blocks.append(np.ones(50_000, np.float32))  # 200 kB still in use, above them on the heap
del blocks[:30]
print(rss_mb() - before)
"""


def test_a_fixed_mmap_threshold_returns_freed_buffers_at_once():
    import subprocess
    import sys

    def retained_mb(mode: str) -> float:  # in a child: the setting is process-wide
        done = subprocess.run(
            [sys.executable, "-c", HEAP_CHILD, mode], capture_output=True, text=True, check=True
        )
        return float(done.stdout)

    assert retained_mb("default") > 50  # glibc's own rule: the 60 MB stay in the heap after free
    assert retained_mb("fixed") < 5
