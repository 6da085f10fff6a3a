"""Livestream ffmpeg outputs against a real nginx-rtmp on loopback and real ffmpeg, measured the way
a viewer sees them: codecs, frame rate, keyframe spacing, A/V alignment, reconnects, MP4 segments."""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from avatar.broadcast.outputs import FfmpegOutput
from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.system_tools import require_tool, stop_process
from tests.support.local_rtmp_server import LocalRtmpServer
from tests.support.media_probe import probe_media

FPS = 25
RATE_HZ = 16000
SAMPLES_PER_TICK = RATE_HZ // FPS
SIZE = 256
FLASH_EVERY = FPS  # a white frame and a 1 kHz beep on the same tick, once a second
FRAME_S = 1.0 / FPS

needs_rtmp = pytest.mark.skipif(
    not LocalRtmpServer.available(),
    reason="nginx with the RTMP module is missing (scripts/install_rtmp_server.sh)",
)


def tick(k: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Tick k: a grey level that counts frames, white with a beep on flash ticks, silence otherwise."""
    if k % FLASH_EVERY == 0:
        t = np.arange(SAMPLES_PER_TICK) / RATE_HZ
        audio = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
        return audio, np.full((size, size, 3), 255, np.uint8)
    return np.zeros(SAMPLES_PER_TICK, np.float32), np.full((size, size, 3), 20 + (k * 5) % 120, np.uint8)


def push(output: FfmpegOutput, ticks: range, start_s: float, on_tick=None) -> float:
    """Write `ticks` on the real-time clock that started at `start_s`; the longest write() call."""
    longest_s = 0.0
    for k in ticks:
        delay = start_s + k * FRAME_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        audio, frame = tick(k)
        began = time.monotonic()
        output.write(k, audio, frame)
        longest_s = max(longest_s, time.monotonic() - began)
        if on_tick is not None:
            on_tick(k)
    return longest_s


def start_reader(url: str, out_path: Path, duration_s: float | None = None) -> subprocess.Popen:
    """A player saving what the server sends; every packet reaches the file at once, so it stays
    readable however the player is stopped."""
    limit = ["-t", str(duration_s)] if duration_s else []
    command = [require_tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", url]
    return subprocess.Popen(
        [*command, *limit, "-c", "copy", "-flush_packets", "1", "-f", "flv", str(out_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_reader(reader: subprocess.Popen) -> None:
    """A player blocked on a stream that ended ignores one SIGTERM: ffmpeg aborts blocking I/O only
    on the second (and then cannot write its trailer, which the FLV does not need)."""
    for _ in range(2):
        if reader.poll() is not None:
            return
        reader.send_signal(signal.SIGTERM)
        try:
            reader.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            continue
    stop_process(reader, grace_s=3.0)


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def decode(path: Path) -> dict:
    """Packets and decoded media of an FLV/MP4: video times and key flags, flash frame times,
    audio (first channel) with the time of its first sample."""
    import av

    result = {"video_pts_s": [], "key": [], "flash_s": [], "codecs": set(), "audio": [], "audio_rate": 0}
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        result["codecs"] = {video.codec_context.name, audio.codec_context.name}
        result["audio_rate"] = audio.codec_context.sample_rate
        audio_start_s = None
        for packet in container.demux(video, audio):
            if packet.dts is None:
                continue
            if packet.stream is video:
                result["video_pts_s"].append(float(packet.pts * packet.time_base))
                result["key"].append(packet.is_keyframe)
            for frame in packet.decode():
                if packet.stream is video:
                    if frame.to_ndarray(format="gray").mean() > 200:
                        result["flash_s"].append(float(frame.time))
                else:
                    if audio_start_s is None:
                        audio_start_s = float(frame.time)
                    result["audio"].append(frame.to_ndarray()[0].astype(np.float32))
    pcm = np.concatenate(result["audio"]) if result["audio"] else np.zeros(0, np.float32)
    result["audio"], result["audio_start_s"] = pcm, audio_start_s
    return result


def beep_onsets_s(pcm: np.ndarray, rate_hz: int, start_s: float) -> list[float]:
    """Times where the 1 kHz beep starts: first loud sample after at least 0.2 s of quiet."""
    loud = np.flatnonzero(np.abs(pcm) > 0.1)
    if loud.size == 0:
        return []
    starts = [loud[0]] + [b for a, b in itertools.pairwise(loud) if b - a > 0.2 * rate_hz]
    return [start_s + index / rate_hz for index in starts]


# -- construction and queue behaviour (no server) ------------------------------------------------


@pytest.mark.parametrize(
    "target", ["http://example.com/live", "rtmp://", "/tmp/live.flv", "example.com/app/key"]
)
def test_rtmp_kind_refuses_a_non_rtmp_target(target):
    with pytest.raises(InputError, match="not an RTMP URL"):
        FfmpegOutput(name="x", kind="rtmp", target=target, width=64, height=64)


def test_unknown_kind_and_file_as_recording_folder_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown output kind"):
        FfmpegOutput(name="x", kind="hls", target=str(tmp_path), width=64, height=64)
    a_file = tmp_path / "file.mp4"
    a_file.write_bytes(b"")
    with pytest.raises(InputError, match="is a file"):
        FfmpegOutput(name="x", kind="record", target=str(a_file), width=64, height=64)


@pytest.mark.parametrize("segment_s", [0.5, 0.0, -3.0, float("nan")])
def test_too_short_recording_segments_are_an_input_error(tmp_path, segment_s):
    with pytest.raises(InputError, match="at least 1 s"):
        FfmpegOutput(name="x", kind="record", target=str(tmp_path), width=64, height=64, segment_s=segment_s)


def test_missing_ffmpeg_names_the_fix():
    with pytest.raises(EngineUnavailable, match="apt-get install ffmpeg"):
        FfmpegOutput(
            name="x",
            kind="rtmp",
            target="rtmp://127.0.0.1/live/k",
            width=64,
            height=64,
            ffmpeg="no-ffmpeg-here",
        )


def test_write_after_close_neither_raises_nor_blocks():
    events = []
    output = FfmpegOutput(
        name="gone",
        kind="rtmp",
        target="rtmp://127.0.0.1:9/live/k",
        width=64,
        height=64,
        on_event=events.append,
    )
    output.start()
    output.close()
    audio, frame = np.zeros(SAMPLES_PER_TICK, np.float32), np.zeros((64, 64, 3), np.uint8)
    began = time.monotonic()
    for k in range(100):
        output.write(k, audio, frame)
    assert time.monotonic() - began < 0.1
    status = output.status()
    assert status["state"] == "closed"
    assert status["discarded_ticks"] >= 100
    assert events[-1]["state"] == "closed"
    output.close()  # twice is harmless


def fake_ffmpeg(folder: Path) -> str:
    """An "ffmpeg" that never reads its input: the writer blocks on its first frame."""
    script = folder / "fake-ffmpeg"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    return str(script)


def test_full_queue_drops_the_oldest_ticks(tmp_path):
    size = 512  # one I420 frame (384 KiB) cannot fit in a 64 KiB pipe: the writer blocks on tick 0
    output = FfmpegOutput(
        name="stuck", kind="rtmp", target="rtmp://127.0.0.1:9/live/k", width=size, height=size,
        max_queued_ticks=5, close_timeout_s=0.3, ffmpeg=fake_ffmpeg(tmp_path),
    )  # fmt: skip
    output.start()
    wait_for(lambda: output.status()["state"] == "connecting", 5.0, "the fake ffmpeg to start")
    output.write(0, *tick(0, size))
    wait_for(lambda: output.status()["queued_ticks"] == 0, 5.0, "the writer to take tick 0")
    began = time.monotonic()
    for k in range(1, 20):
        output.write(k, *tick(k, size))
    assert time.monotonic() - began < 0.5  # the caller never waits for the stuck pipe
    assert [queued.index for queued in output._queue] == [15, 16, 17, 18, 19]
    status = output.status()
    assert (status["dropped_ticks"], status["written_ticks"], status["queued_ticks"]) == (14, 0, 5)
    output.close()
    status = output.status()
    # every tick is accounted for: written, dropped or discarded (the stuck one and the queue)
    assert status["written_ticks"] + status["dropped_ticks"] + status["discarded_ticks"] == 20
    assert status["state"] == "closed"


def test_a_stalled_ffmpeg_is_restarted(tmp_path):
    events = []
    size = 512
    output = FfmpegOutput(
        name="stall", kind="rtmp", target="rtmp://127.0.0.1:9/live/k", width=size, height=size,
        stall_timeout_s=0.4, backoff_s=(0.1,), close_timeout_s=0.3, ffmpeg=fake_ffmpeg(tmp_path),
        on_event=events.append,
    )  # fmt: skip
    with output:
        wait_for(lambda: output.status()["state"] == "connecting", 5.0, "the fake ffmpeg to start")
        audio, frame = tick(1, size)
        for k in range(30):
            output.write(k, audio, frame)
            time.sleep(0.04)
            if output.status()["attempts"] >= 2:
                break
        wait_for(lambda: output.status()["attempts"] >= 2, 5.0, "a second attempt")
    waiting = [event for event in events if event["state"] == "waiting"]
    assert waiting[0]["error"] == "ffmpeg stopped reading its input for 0.4 s"
    assert waiting[0]["retry_in_s"] == 0.1


# -- real server, real ffmpeg --------------------------------------------------------------------


@needs_rtmp
def test_rtmp_push_is_h264_aac_25fps_with_exact_keyframes_and_aligned_av(tmp_path):
    received = tmp_path / "received.flv"
    events = []
    with LocalRtmpServer() as server:
        reader = start_reader(server.url("av"), received)  # nginx holds the player until we publish
        time.sleep(0.5)
        output = FfmpegOutput(
            name="rtmp", kind="rtmp", target=server.url("av"), width=SIZE, height=SIZE, on_event=events.append
        )
        try:
            output.start()
            longest_write_s = push(output, range(6 * FPS), time.monotonic())
        finally:
            output.close()
        stop_reader(reader)
    status = output.status()
    assert (status["written_ticks"], status["dropped_ticks"], status["discarded_ticks"]) == (150, 0, 0)
    assert longest_write_s < 0.02
    assert [event["state"] for event in events] == ["connecting", "connected", "closed"]

    media = decode(received)
    assert media["codecs"] == {"h264", "aac"}
    assert media["audio_rate"] == 44100
    pts = np.array(media["video_pts_s"])
    assert len(pts) == 150  # the player joined before the first frame: it got every tick
    assert np.allclose(np.diff(pts), FRAME_S, atol=0.0011)  # FLV times are whole ms: 25 fps CFR
    keyframes = np.flatnonzero(media["key"])
    assert keyframes.tolist() == [0, 50, 100]  # -g 50 at 25 fps = keyframe_interval_s 2.0
    flashes = media["flash_s"]
    onsets = beep_onsets_s(media["audio"], media["audio_rate"], media["audio_start_s"])
    assert len(flashes) == len(onsets) == 6
    gaps_s = np.abs(np.array(flashes) - np.array(onsets))
    assert gaps_s.max() < FRAME_S, f"A/V misaligned: flash times {flashes}, beep onsets {onsets}"


@needs_rtmp
def test_rtmp_output_reconnects_by_itself_after_a_server_outage(tmp_path):
    received = tmp_path / "after_restart.flv"
    events = []
    with LocalRtmpServer() as server:
        url = server.url("again")
        output = FfmpegOutput(
            name="rtmp", kind="rtmp", target=url, width=SIZE, height=SIZE, on_event=events.append
        )
        outage = threading.Thread(target=server.restart, kwargs={"down_s": 1.5})
        reader = None
        try:
            output.start()
            start_s = time.monotonic()

            def during_push(k: int) -> None:
                nonlocal reader
                if k == 3 * FPS:
                    assert output.status()["state"] == "connected"
                    outage.start()
                elif k > 3 * FPS and reader is None and not outage.is_alive():
                    reader = start_reader(url, received, duration_s=2.0)

            longest_write_s = push(output, range(5 * FPS), start_s, during_push)
            wait_for(
                lambda: output.status()["state"] == "connected" and output.status()["attempts"] >= 2,
                10.0,
                "the output to reconnect",
            )
            reconnected_k = round((time.monotonic() - start_s) * FPS)
            push(output, range(reconnected_k, reconnected_k + 3 * FPS), start_s)
        finally:
            outage.join()
            output.close()
            if reader is not None:
                stop_reader(reader)
    assert reader is not None
    assert longest_write_s < 0.02  # the outage never reached the caller
    states = [event["state"] for event in events]
    assert states[:2] == ["connecting", "connected"]
    assert "waiting" in states and states[-2:] == ["connected", "closed"]
    waiting = next(event for event in events if event["state"] == "waiting")
    assert waiting["retry_in_s"] == 0.5 and waiting["error"]
    status = output.status()
    assert status["attempts"] >= 2
    assert status["discarded_ticks"] > 0  # the outage's ticks were not replayed later
    assert status["last_error"]

    media = decode(received)
    assert media["codecs"] == {"h264", "aac"}
    assert len(media["video_pts_s"]) >= FPS  # at least one second of frames after the restart
    assert media["key"][0]


def test_record_writes_playable_mp4_segments_that_add_up(tmp_path):
    folder = tmp_path / "recordings"
    output = FfmpegOutput(
        name="record", kind="record", target=str(folder), width=SIZE, height=SIZE, segment_s=2.0
    )
    try:
        output.start()
        push(output, range(5 * FPS), time.monotonic())
    finally:
        output.close()
    assert output.status()["written_ticks"] == 5 * FPS
    segments = sorted(folder.glob("live-*.mp4"))
    assert len(segments) == 3, segments  # 2 s + 2 s + 1 s
    total_s, total_frames = 0.0, 0
    for segment in segments:
        info = probe_media(segment)
        assert sorted(stream.codec_name for stream in info.streams) == ["aac", "h264"]
        video = next(stream for stream in info.streams if stream.kind == "video")
        assert video.fps == 25
        total_s += info.duration_s
        total_frames += video.frame_count
    assert total_frames == 5 * FPS
    assert total_s == pytest.approx(5.0, abs=0.2)
