"""The livestream's event stream: every event of the host and its outputs, to each open operator
page as server-sent events (docs/livestream_api.md, "Events").

Events are not replayed: a page that connects gets the current status first, then what happens
next. A reader that stops reading is dropped once its queue is full, rather than growing it. One
event that cannot be written as UTF-8 JSON (a lone surrogate in some text) is escaped, and one
that cannot be serialised at all is left out: it must never end every open stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

log = logging.getLogger("avatar.broadcast")

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
                _end(queue)
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
            await response.write(sse(first_event()) or b": no status\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:
                    break
                payload = sse(event)
                if payload is not None:
                    await response.write(payload)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the operator closed the page; nothing is lost, events are not replayed
        finally:
            self._subscribers.discard(queue)
        return response

    def close(self) -> None:
        """End every open stream."""
        for queue in list(self._subscribers):
            _end(queue)


def _end(queue: asyncio.Queue) -> None:
    """Make the stream reading `queue` stop next (a full queue would refuse the end marker)."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


def sse(event: dict) -> bytes | None:
    """One `data:` line; text that is not valid Unicode is sent \\u-escaped (JSON allows it); None
    (logged) for an event that cannot be serialised."""
    try:
        try:
            return f"data: {json.dumps(event, ensure_ascii=False, default=str)}\n\n".encode()
        except UnicodeEncodeError:  # a lone surrogate: ASCII JSON escapes it
            return f"data: {json.dumps(event, ensure_ascii=True, default=str)}\n\n".encode()
    except (TypeError, ValueError) as error:  # e.g. a circular structure
        kind = event.get("type") if isinstance(event, dict) else type(event).__name__
        log.warning("event %r left out of the event stream: %s", kind, error)
        return None
