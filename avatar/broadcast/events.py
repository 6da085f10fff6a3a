"""The livestream's event stream: every event of the host and its outputs, to each open operator
page as server-sent events (docs/livestream_api.md, "Events").

Events are not replayed: a page that connects gets the current status first, then what happens
next. Memory is bounded per reader and in all: each reader has a queue of `EVENT_QUEUE_SIZE`
events, and a reader that stops reading is dropped once its queue is full, its connection closed
(a writer blocked on a socket nobody reads would otherwise hold its buffers for good) and a
`client_dropped` event sent to the others; at most `MAX_READERS` streams are open at once. One
event that cannot be written as UTF-8 JSON (a lone surrogate in some text) is escaped, and one
that cannot be serialised at all is left out: it must never end every open stream. A page that
closes its stream frees its slot within `DISCONNECT_CHECK_S`: aiohttp does not cancel a handler
when its client leaves, so the stream looks at its connection while it waits for events, instead
of finding out only at its next write (the next event or heartbeat, up to 15 s later).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

log = logging.getLogger("avatar.broadcast")

EVENT_QUEUE_SIZE = 256  # ~4 minutes of status events (one a second) plus a burst of others
MAX_READERS = 16
SSE_HEARTBEAT_S = 15.0
DISCONNECT_CHECK_S = 0.25  # how soon a closed page's slot is free again


class EventStreamsFull(Exception):
    """Every event stream slot is taken (HTTP 503)."""


class _Reader:
    """One open event stream: its queue and the connection to cut when it stops reading."""

    def __init__(self, peer: str, transport) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=EVENT_QUEUE_SIZE)
        self.peer = peer
        self.transport = transport


class EventHub:
    """Fan-out of events to SSE readers; every method runs on the event loop."""

    def __init__(self, max_readers: int = MAX_READERS) -> None:
        self.max_readers = max_readers
        self._readers: set[_Reader] = set()
        self.dropped_readers = 0

    @property
    def reader_count(self) -> int:
        return len(self._readers)

    def publish(self, event: dict) -> None:
        slow = []
        for reader in list(self._readers):
            if reader.queue.full():  # a reader that stopped reading: drop it, never grow the queue
                slow.append(reader)
                continue
            reader.queue.put_nowait(event)
        for reader in slow:
            if reader in self._readers:  # not dropped already by the event about another one
                self._drop(reader)

    def _drop(self, reader: _Reader) -> None:
        self._readers.discard(reader)
        self.dropped_readers += 1
        _end(reader.queue)
        if reader.transport is not None:
            reader.transport.abort()  # its writer may be blocked on a full socket: this frees it
        log.warning("event stream of %s dropped: %d events unread", reader.peer, EVENT_QUEUE_SIZE)
        self.publish(
            {
                "type": "client_dropped",
                "client": "event_stream",
                "peer": reader.peer,
                "reason": f"{EVENT_QUEUE_SIZE} events unread",
            }
        )

    async def stream(self, request, first_event: Callable[[], dict]):
        """An SSE response that sends `first_event()` and then every published event until the
        page closes or `close()` is called; a comment line every 15 s keeps proxies from cutting it."""
        from aiohttp import web

        if len(self._readers) >= self.max_readers:
            raise EventStreamsFull(
                f"{self.max_readers} event streams are open already; close one and try again"
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        reader = _Reader(str(request.remote), request.transport)
        queue = reader.queue
        self._readers.add(reader)
        loop = asyncio.get_running_loop()
        try:
            await response.write(sse(first_event()) or b": no status\n\n")
            heartbeat_at_s = loop.time() + SSE_HEARTBEAT_S
            while not _disconnected(request):
                try:
                    event = await asyncio.wait_for(queue.get(), DISCONNECT_CHECK_S)
                except asyncio.TimeoutError:
                    if loop.time() >= heartbeat_at_s:
                        await response.write(b": keep-alive\n\n")
                        heartbeat_at_s = loop.time() + SSE_HEARTBEAT_S
                    continue
                if event is None:
                    break
                payload = sse(event)
                if payload is not None:
                    await response.write(payload)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the operator closed the page (or was dropped); events are not replayed
        finally:
            self._readers.discard(reader)
        return response

    def close(self) -> None:
        """End every open stream."""
        for reader in list(self._readers):
            _end(reader.queue)


def _disconnected(request) -> bool:
    """The client closed the connection (aiohttp drops the transport when it sees that)."""
    transport = request.transport
    return transport is None or transport.is_closing()


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
