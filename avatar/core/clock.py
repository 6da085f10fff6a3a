"""One injectable monotonic clock for everything that paces real-time output.

Pacing code never calls `time.monotonic()` or `asyncio.sleep()` directly: it asks a `Clock`. In
production that is `SystemClock`; in tests it is `VirtualClock`, whose time only moves when the
test says so (or when every task is waiting on it), so a 30-second conversation runs in
milliseconds and produces exactly the same timestamps on every run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds plus a way to wait for a moment on the same time line."""

    def now_s(self) -> float: ...

    async def sleep_until(self, time_s: float) -> None: ...


class SystemClock:
    """The process's monotonic clock; `sleep_until` in the past still yields once."""

    def now_s(self) -> float:
        return time.monotonic()

    async def sleep_until(self, time_s: float) -> None:
        # Yield even when late, so a consumer that is behind cannot starve the event loop.
        await asyncio.sleep(max(0.0, time_s - time.monotonic()))


class VirtualClockStalled(RuntimeError):
    """`VirtualClock.run` found the awaited work blocked with nobody sleeping on the clock."""


class VirtualClock:
    """Deterministic test time: it only advances through `advance`, `advance_to` or `run`.

    Before every step forward the clock lets the event loop run until no task is ready, so every
    task that can act at the current instant has done so. Sleepers wake in deadline order (ties in
    the order they went to sleep), each at exactly its deadline. Work running in threads or on
    asyncio's own timers is invisible to this clock: tests using it must keep to pure asyncio code
    that waits only on the clock or on other tasks.
    """

    def __init__(self, start_s: float = 0.0, *, max_settle_yields: int = 10_000) -> None:
        self._now_s = float(start_s)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._max_settle_yields = max_settle_yields

    def now_s(self) -> float:
        return self._now_s

    async def sleep_until(self, time_s: float) -> None:
        if time_s <= self._now_s:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (float(time_s), next(self._order), waiter))
        await waiter  # a cancelled waiter stays in the heap and is skipped when popped

    @property
    def sleeper_count(self) -> int:
        """How many tasks are waiting on this clock right now."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    async def advance(self, duration_s: float) -> None:
        """Move time forward by `duration_s`, waking every sleeper due on the way in order."""
        await self.advance_to(self._now_s + duration_s)

    async def advance_to(self, time_s: float) -> None:
        if time_s < self._now_s:
            raise ValueError(f"virtual time cannot go back from {self._now_s} to {time_s}")
        await self._settle()
        while (deadline_s := self._next_deadline_s()) is not None and deadline_s <= time_s:
            self._wake_due(deadline_s)
            await self._settle()
        self._now_s = float(time_s)
        await self._settle()

    async def run(self, awaitable: Awaitable[T], *, limit_s: float) -> T:
        """Await `awaitable`, jumping time to the next deadline whenever everything waits.

        Raises `TimeoutError` when the work needs more than `limit_s` of virtual time and
        `VirtualClockStalled` when it waits on something other than the clock (a hang that a
        wall-clock test would only reveal as a timeout). Either way the work is cancelled.
        """
        task = asyncio.ensure_future(awaitable)
        limit_time_s = self._now_s + limit_s
        try:
            while True:
                await self._settle()
                if task.done():
                    return task.result()
                deadline_s = self._next_deadline_s()
                if deadline_s is None:
                    raise VirtualClockStalled(f"work is blocked at t={self._now_s:.3f}s with no sleeper")
                if deadline_s > limit_time_s:
                    raise TimeoutError(f"work not done within {limit_s}s of virtual time")
                self._wake_due(deadline_s)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _next_deadline_s(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def _wake_due(self, deadline_s: float) -> None:
        """Set time to `deadline_s` and release every sleeper due exactly then."""
        self._now_s = deadline_s
        while self._sleepers and self._sleepers[0][0] <= deadline_s:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def _settle(self) -> None:
        """Let every runnable task run until all of them wait (on the clock or on each other)."""
        loop = asyncio.get_running_loop()
        ready_callbacks = getattr(loop, "_ready", None)  # CPython's run queue; absent on other loops
        if ready_callbacks is None:  # no way to look: give every task a generous number of turns
            for _ in range(100):
                await asyncio.sleep(0)
            return
        for _ in range(self._max_settle_yields):
            await asyncio.sleep(0)
            if not ready_callbacks:
                return
        raise VirtualClockStalled("tasks kept the event loop busy without ever waiting on the clock")
