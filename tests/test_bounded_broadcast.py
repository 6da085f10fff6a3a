"""The livestream's memory stays bounded under load: a reader that never reads is dropped (with an
event, its connection closed), event streams and histories are capped, a slow monitor skips
ahead with an event, and the stream clock keeps wall time with no output at all."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from types import SimpleNamespace

import pytest

from avatar.broadcast import comments as comments_module
from avatar.broadcast import events as events_module
from avatar.broadcast.comments import CommentIntake
from avatar.broadcast.host import BroadcastHost
from avatar.broadcast.monitor import SKIP_EVENT_INTERVAL_S, MonitorPeers
from avatar.core.clock import SystemClock, VirtualClock
from avatar.core.text_script import parse_script
from avatar.playout.av_output import TICK_S
from avatar.playout.stream_clock import MonitorPacer
from tests.support.edge_servers import broadcast_server, served
from tests.support.fakes import FlatLipSync, ScriptedLLM, ToneTTS

pytest.importorskip("aiohttp")


def run(scenario, timeout_s: float = 60.0):
    return asyncio.run(asyncio.wait_for(scenario(), timeout_s))


async def never_reading_stream(url: str):
    """An event-stream client with a 4 KB receive buffer that never reads a byte."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


def test_a_reader_that_never_reads_is_dropped_with_an_event_and_its_connection_closed():
    server = broadcast_server(token=None)
    hub = server.events_hub
    filler = "x" * 4000

    async def scenario():
        async with served(server.app()) as (client, url):
            good = await client.get(url + "/api/events")
            seen: list[dict] = []

            async def read_good() -> None:
                async for line in good.content:
                    if line.startswith(b"data: "):
                        seen.append(json.loads(line.removeprefix(b"data: ")))

            reading = asyncio.ensure_future(read_good())
            slow_reader, slow_writer = await never_reading_stream(url)
            while hub.reader_count < 2:
                await asyncio.sleep(0.01)
            published = 0
            while hub.dropped_readers == 0 and published < 5000:  # 20 MB offered to the slow reader
                hub.publish({"type": "probe", "n": published, "text": filler})
                published += 1
                await asyncio.sleep(0.001)  # ~4 MB/s: a reading client keeps up easily
            for _ in range(200):  # the good reader gets the news
                if any(e["type"] == "client_dropped" for e in seen):
                    break
                await asyncio.sleep(0.01)
            closed = False
            try:  # the dropped connection ends: read what was buffered, then EOF or a reset
                while await asyncio.wait_for(slow_reader.read(1 << 20), 5.0):
                    pass
                closed = True
            except ConnectionResetError:
                closed = True
            slow_writer.close()
            reading.cancel()
            good.close()
            return published, seen, closed, hub.reader_count

    published, seen, closed, readers_left = run(scenario)
    assert published < 5000, "the slow reader was never dropped"
    assert published >= events_module.EVENT_QUEUE_SIZE
    drops = [e for e in seen if e["type"] == "client_dropped"]
    assert len(drops) == 1 and drops[0]["client"] == "event_stream"
    assert [e["n"] for e in seen if e["type"] == "probe"] == list(
        range(published)
    )  # the good one lost nothing
    assert closed
    assert readers_left == 1


def test_event_streams_beyond_the_cap_are_a_503():
    server = broadcast_server(token=None)
    server.events_hub.max_readers = 2

    async def scenario():
        async with served(server.app()) as (client, url):
            open_streams = [await client.get(url + "/api/events") for _ in range(2)]
            for stream in open_streams:
                await stream.content.readline()
            third = await client.get(url + "/api/events")
            answer = (third.status, await third.json())
            for stream in open_streams:
                stream.close()
            return answer

    status, body = run(scenario)
    assert status == 503
    assert "2 event streams are open already" in body["error"]


def test_a_monitor_that_falls_behind_skips_ahead_and_says_so():
    ticks = deque((SimpleNamespace(index=i) for i in range(100, 125)), maxlen=25)
    pump = SimpleNamespace(recent=ticks, origin_s=0.0, clock=None)
    skips: list[int] = []
    pacer = MonitorPacer(pump, on_skip=skips.append)
    assert pacer.tick(110).index == 110 and skips == []
    assert pacer.tick(40).index == 100  # out of the pump's memory: the oldest tick kept
    assert skips == [60] and pacer.skipped_ticks == 60

    events: list[dict] = []
    peers = MonitorPeers(on_event=events.append)
    monitor = SimpleNamespace(monitor_id=3, unreported_ticks=0, reported_at_s=float("-inf"))
    for now_s, ticks_skipped in [(0.0, 5), (1.0, 7), (2.0, 1), (SKIP_EVENT_INTERVAL_S + 0.5, 4)]:
        peers._skipped(monitor, ticks_skipped, now_s)
    assert events == [
        {"type": "monitor_skipped", "monitor": 3, "ticks": 5},
        {"type": "monitor_skipped", "monitor": 3, "ticks": 12},  # the ones in between, added up
    ]


def _host(clock, on_event=None) -> BroadcastHost:
    async def inline(fn, *args, **kwargs):
        return fn(*args, **kwargs)

    host = BroadcastHost(
        tts=ToneTTS(seconds_per_word=0.2),
        lipsync=FlatLipSync(),
        llm=ScriptedLLM([]),
        clock=clock,
        run_blocking=inline if isinstance(clock, VirtualClock) else asyncio.to_thread,
        on_event=on_event,
    )
    text = "one two three four five six"
    host.set_script([(text, tuple(parse_script(text)))], loop=True)
    return host  # no output added: the stream must still keep time


def test_with_no_outputs_the_stream_clock_keeps_virtual_time():
    clock = VirtualClock()

    async def scenario():
        host = _host(clock)
        await host.start()
        statuses = []
        for _ in range(6):
            await clock.advance(10.0)
            statuses.append(host.status()["clock"])
        await host.close()
        return statuses

    statuses = run(scenario)
    for k, status in enumerate(statuses, start=1):
        assert status["wall_time_s"] == pytest.approx(10.0 * k)
        assert -TICK_S - 1e-6 <= status["ahead_s"] <= 1e-6, status


def test_with_no_outputs_the_stream_clock_keeps_wall_time():
    async def scenario():
        host = _host(SystemClock())
        started = time.monotonic()
        await host.start()
        await asyncio.sleep(2.0)
        elapsed_s = time.monotonic() - started
        status = host.status()
        await host.close()
        return elapsed_s, status

    elapsed_s, status = run(scenario)
    assert status["clock"]["stream_time_s"] == pytest.approx(elapsed_s, abs=0.15)
    assert status["clock"]["ahead_s"] <= 1e-6
    assert status["frames"]["speech"] > 0  # it was speaking, not idling


def test_comment_histories_forget_their_oldest_entries_beyond_the_cap(monkeypatch):
    monkeypatch.setattr(comments_module, "MAX_HISTORY_ENTRIES", 50)
    clock = VirtualClock()
    intake = CommentIntake(
        clock, per_user_interval_s=1e6, global_per_minute=10**6, duplicate_window_s=1e6, max_pending=1000
    )
    for k in range(60):
        assert intake.submit(f"viewer{k}", f"question number {k}").accepted
    assert intake.submit("viewer59", "another one").reason == "rate_limited"  # still remembered
    assert intake.submit("someone", "question number 59").reason == "duplicate"
    assert intake.submit("viewer0", "question number 0").accepted  # forgotten: beyond the cap
