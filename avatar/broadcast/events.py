"""The livestream's event stream: every event of the host and its outputs, to each open operator
page as server-sent events (docs/livestream_api.md, "Events").

Events are not replayed: a page that connects gets the current status first, then what happens
next. A reader that stops reading is dropped once its queue is full, rather than growing it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

EVENT_QUEUE_SIZE = 500
SSE_HEARTBEAT_S = 15.0


class EventHub:
    """Fan-out of events to SSE readers; every method runs on the event loop."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue] = set()

    def publish(self, event: dict) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a reader that stopped reading: drop it rather than grow without bound
                self._subscribers.discard(queue)
                continue
            queue.put_nowait(event)

    async def stream(self, request, first_event: Callable[[], dict]):
        """An SSE response that sends `first_event()` and then every published event until the
        page closes or `close()` is called; a comment line every 15 s keeps proxies from cutting it."""
        from aiohttp import web

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=EVENT_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            await response.write(sse(first_event()))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:
                    break
                await response.write(sse(event))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the operator closed the page; nothing is lost, events are not replayed
        finally:
            self._subscribers.discard(queue)
        return response

    def close(self) -> None:
        """End every open stream."""
        for queue in list(self._subscribers):
            queue.put_nowait(None)


def sse(event: dict) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False, default=str)}\n\n".encode()
