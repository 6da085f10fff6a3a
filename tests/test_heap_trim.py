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
