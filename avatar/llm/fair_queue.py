"""Turns at one shared model: one generation at a time, first come first served.

Why a queue of our own in front of llama.cpp (which queues too): a request waiting inside
llama.cpp cannot be withdrawn until it produces its first token, so a reply cancelled by barge-in
while it waited would still cost a prompt evaluation and a token, and every waiting request would
hold a worker thread. Here a waiter is a future: a cancelled one simply leaves the line, and the
model goes to the next session in arrival order. Sessions may live on different event loops
(`avatar serve` and the console share nothing but the process), so the line is guarded by a
thread lock and turns are handed over with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future]


class FairQueue:
    """A FIFO mutex for coroutines on any event loop; `turn()` is the only way in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._waiters: deque[_Waiter] = deque()
        self.turns_granted = 0  # for status pages and tests

    @property
    def waiting(self) -> int:
        """Requests in line behind the one being served."""
        with self._lock:
            return len(self._waiters)

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for this request's turn (cancellable: a cancelled waiter leaves the line), hold the
        model for the body, then hand it to the next in line."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._busy and not self._waiters:
                self._busy = True
                self.turns_granted += 1
                return
            waiter: _Waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._lock:
                still_waiting = waiter in self._waiters
                if still_waiting:
                    self._waiters.remove(waiter)
            if not still_waiting:  # the turn was handed to us just as we were cancelled: pass it on
                self._release()
            raise

    def _release(self) -> None:
        """Hand the model to the first waiter whose loop still runs, or mark it free."""
        while True:
            with self._lock:
                if not self._waiters:
                    self._busy = False
                    return
                loop, future = self._waiters.popleft()
                self.turns_granted += 1
            try:
                loop.call_soon_threadsafe(_grant, future)
                return
            except RuntimeError:  # that waiter's loop is closed: nobody will take the turn
                continue


def _grant(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
