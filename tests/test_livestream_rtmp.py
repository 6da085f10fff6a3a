"""`avatar live` end to end against a real RTMP server (Debian nginx + libnginx-mod-rtmp) on 127.0.0.1.

The broadcast runs in-process with the real engines (procedural renderer, Piper, the offline
answerer over the sample FAQ) and its real HTTP API; ffmpeg reads the stream back from nginx as a
viewer's player would. We then reopen what was received and check it as a viewer would see it:
codecs and frame rate, audio as long as the video, the mouth moving with the received sound
(lag 0 +- 1 frame), the comment's question and answer in the received audio (Whisper), and,
after nginx is restarted mid-stream, that the avatar reconnects on its own and keeps talking.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avatar.core.system_tools import free_port, stop_process
from tests.conftest import ASSETS, SAMPLE_PORTRAIT
from tests.support.local_rtmp_server import LocalRtmpServer

pytestmark = pytest.mark.skipif(
    not LocalRtmpServer.available(),
    reason="needs nginx with the RTMP module: apt-get install nginx-light libnginx-mod-rtmp",
)
KNOWLEDGE = ASSETS / "knowledge" / "shop_faq.md"
SIZE_PX = 320
EVENT_TIMEOUT_S = 90.0


def start_reader(url: str, path: Path) -> subprocess.Popen:
    """A viewer: copies the stream from nginx into an FLV file (nginx holds it until the stream
    starts). Packets are flushed as they come: a stopped ffmpeg loses what it buffered."""
    command = ["ffmpeg", "-v", "error", "-y", "-rw_timeout", "60000000", "-i", url, "-c", "copy"]
    command += ["-flush_packets", "1", "-f", "flv"]
    return subprocess.Popen([*command, str(path)], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_reader(reader: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """The reader ends by itself when the publisher leaves; stop it if it does not."""
    try:
        reader.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_process(reader, grace_s=3)


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """All video frames (BGR), the audio as 16 kHz mono float, and stream facts."""
    import av

    frames, pcm = [], []
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        facts = {
            "video_codec": video.codec_context.name,
            "audio_codec": audio.codec_context.name,
            "fps": float(video.average_rate or video.guessed_rate),
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "keyframes": [],
            "first_video_pts_s": None,
            "first_audio_pts_s": None,
            "undecodable": [],
        }
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        for packet in container.demux(video, audio):
            if packet.pts is not None:
                facts[f"last_{packet.stream.type}_pts"] = packet.pts
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                facts["undecodable"].append((packet.stream.type, packet.pts, packet.size))
                continue
            for frame in decoded:
                if packet.stream.type == "video":
                    if facts["first_video_pts_s"] is None:
                        facts["first_video_pts_s"] = float(frame.time)
                    if frame.key_frame:
                        facts["keyframes"].append(len(frames))
                    frames.append(frame.to_ndarray(format="bgr24"))
                else:
                    if facts["first_audio_pts_s"] is None:
                        facts["first_audio_pts_s"] = float(frame.time)
                    for out in resampler.resample(frame):
                        pcm.append(out.to_ndarray().reshape(-1))
    return frames, np.concatenate(pcm) if pcm else np.zeros(0, np.float32), facts


class Broadcast:
    """The real server in this event loop, plus an SSE reader collecting its events."""

    def __init__(self, config) -> None:
        self.config = config
        self.events: list[dict] = []
        self._waiters: list = []

    async def __aenter__(self):
        from aiohttp import ClientSession, web

        from avatar.broadcast.server import BroadcastServer, load_engines

        self.engines = await asyncio.to_thread(load_engines, self.config)
        self.server = BroadcastServer(self.config, self.engines)
        self.runner = web.AppRunner(self.server.app())
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.base = f"http://127.0.0.1:{port}"
        self.http = ClientSession()
        self._sse = asyncio.ensure_future(self._read_events())
        return self

    async def __aexit__(self, *exc) -> None:
        self._sse.cancel()
        await asyncio.gather(self._sse, return_exceptions=True)
        await self.http.close()
        await self.runner.cleanup()  # stops the host and closes the outputs (ffmpeg finalizes)
        self.engines.close()

    async def _read_events(self) -> None:
        async with self.http.get(f"{self.base}/api/events") as response:
            async for line in response.content:
                if line.startswith(b"data: "):
                    self.events.append(json.loads(line[6:]))

    async def post(self, path: str, body: dict) -> tuple[int, dict]:
        async with self.http.post(f"{self.base}{path}", json=body) as response:
            return response.status, await response.json()

    async def wait_for(self, predicate, timeout_s: float = EVENT_TIMEOUT_S) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            for event in self.events:
                if predicate(event):
                    return event
            await asyncio.sleep(0.1)
        raise AssertionError(f"event not seen in {timeout_s} s; last events: {self.events[-8:]}")


def broadcast_config(tmp_path: Path, url: str, script: str):
    from avatar.broadcast.server import BroadcastConfig
    from avatar.broadcast.show_script import parse_show_script
    from avatar.engines.live_set import LiveConfig

    return BroadcastConfig(
        live=LiveConfig(
            photo_path=SAMPLE_PORTRAIT,
            size_px=SIZE_PX,
            llm="answerer",
            knowledge_paths=(KNOWLEDGE,),
            language="en",
        ),
        script=tuple(parse_show_script(script)),
        loop_script=False,
        rtmp_urls=(url,),
        keyframe_interval_s=2.0,
        blocklist_path=ASSETS / "blocklist_example.txt",
        comment_interval_s=1.0,
    )


def first_blocklisted_term() -> str:
    from avatar.broadcast.comments import load_blocklist

    return load_blocklist(ASSETS / "blocklist_example.txt")[0]


def test_script_and_comment_reach_the_rtmp_viewer_in_sync(tmp_path, landmarker):
    from avatar.asr.whisper import WhisperASR
    from avatar.core.types import AudioChunk
    from tests.support.lipsync_measure import best_lag_correlation, measure_frames, rms_envelope

    received = tmp_path / "received.flv"

    async def scenario() -> list[dict]:
        with LocalRtmpServer() as rtmp:
            url = rtmp.url("e2e")
            reader = start_reader(url, received)
            try:
                config = broadcast_config(tmp_path, url, "[happy] Welcome to the show.")
                async with Broadcast(config) as show:
                    await show.wait_for(lambda e: e["type"] == "item_finished" and e["kind"] == "script")
                    status, body = await show.post(
                        "/api/comments", {"user": "Ann", "text": "What are your opening hours?"}
                    )
                    assert status == 202 and body["accepted"] and body["position"] == 1
                    status, body = await show.post(
                        "/api/comments", {"user": "troll", "text": f"you are a {first_blocklisted_term()}"}
                    )
                    assert status == 422 and body["reason"] == "blocked"
                    status, body = await show.post(
                        "/api/comments", {"user": "Ann", "text": "What are your opening hours?"}
                    )
                    assert status in (409, 429)  # the same again: refused before it is spoken twice
                    await show.wait_for(lambda e: e["type"] == "item_finished" and e["kind"] == "comment")
                    await asyncio.sleep(
                        3.0
                    )  # idle after the answer (the last ~2 s are lost when the publisher leaves)
                    events = list(show.events)
            finally:
                await asyncio.to_thread(finish_reader, reader)
        return events

    events = asyncio.run(scenario())
    frames, pcm, facts = decode(received)

    # only the stream's very last packet may be cut short (the publisher left mid-packet)
    assert all(pts == facts[f"last_{kind}_pts"] for kind, pts, _ in facts["undecodable"]), facts
    # codecs, size, constant 25 fps, keyframe every 2 s, audio as long as the video
    assert (facts["video_codec"], facts["audio_codec"]) == ("h264", "aac")
    assert facts["fps"] == pytest.approx(25.0, abs=0.01)
    assert (facts["width"], facts["height"]) == (256, 320)  # the portrait at --size 320 (4:5)
    gaps = np.diff(facts["keyframes"])
    assert len(gaps) >= 3 and set(gaps.tolist()) == {50}, facts["keyframes"]
    video_s, audio_s = len(frames) / 25, len(pcm) / 16000
    assert abs(audio_s - video_s) < 0.1, (audio_s, video_s)
    assert abs(facts["first_audio_pts_s"] - facts["first_video_pts_s"]) < 0.05

    # what the viewer heard: the comment's question read aloud and its answer
    comment_done = next(e for e in events if e["type"] == "item_finished" and e["kind"] == "comment")
    assert comment_done["user"] == "Ann" and "Monday to Saturday" in comment_done["text"]
    heard = WhisperASR().load().transcribe(AudioChunk(pcm, 16000), language="en").text.lower()
    for words in ("welcome to the show", "opening hours", "monday to saturday"):
        assert words in heard, heard

    # the mouth follows the received sound: best lag 0 +- 1 frame over the whole stream
    openings, _ = measure_frames(frames, landmarker)
    envelope = rms_envelope(pcm, 16000, 25, len(frames))
    lag, correlation = best_lag_correlation(openings, envelope)
    print(
        f"received {len(frames)} frames, {audio_s:.2f} s audio; lip-sync lag {lag} frames, r = {correlation:.2f}"
    )
    assert abs(lag) <= 1 and correlation > 0.5, (lag, correlation)
    # and it is closed wherever the received sound has been silent for a while (+-3 frames)
    quiet = np.array(
        [envelope[max(0, k - 3) : k + 4].max() < 0.02 * envelope.max() for k in range(len(frames))]
    )
    assert quiet.sum() > 25, "the stream should hold pauses and idle time"
    assert np.nanpercentile(openings[quiet], 95) < 0.3 * np.nanmax(openings), (
        np.nanpercentile(openings[quiet], 95),
        np.nanmax(openings),
    )
