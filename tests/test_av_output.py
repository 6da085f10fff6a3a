"""A/V output core: pairing, pacing, barge-in and pts, in virtual time plus one real WebRTC loopback.

Every virtual-time test drives `VirtualClock`, so timestamps are exact and nothing sleeps on the
wall clock. Frames and audio carry a code: a speech tick with code c has a solid frame of value c
and audio of constant amplitude c/256, so a test can tell which tick went out where.
"""

from __future__ import annotations

import asyncio
import logging
import time
from fractions import Fraction

import numpy as np
import pytest

from avatar.core.clock import SystemClock, VirtualClock, VirtualClockStalled
from avatar.playout.av_output import (
    AUDIO_RATE_HZ,
    SAMPLES_PER_FRAME,
    AVOutputQueue,
    AVPlayout,
    AVSegment,
)


def paced_tracks(playout, clock):
    """The tracks need the `live` extra (aiortc); the queue and playout tests run without it."""
    pytest.importorskip("aiortc")
    from avatar.playout.webrtc_tracks import paced_tracks as make_tracks

    return make_tracks(playout, clock)


FRAME_SIZE_PX = 16
IDLE_CODE = 250
# Frames travel as YUV 4:2:0 in limited range, which merges neighbouring grey levels: a code is
# drawn as grey level code * PIXEL_STEP (codes up to 40) so it survives the round trip.
PIXEL_STEP = 6


def code_pixel(code: int) -> int:
    return IDLE_CODE if code == IDLE_CODE else code * PIXEL_STEP


def idle_frame(tick_index: int) -> np.ndarray:
    return np.full((FRAME_SIZE_PX, FRAME_SIZE_PX, 3), IDLE_CODE, dtype=np.uint8)


def coded_segment(turn_id: int, codes: list[int]) -> AVSegment:
    frames = [np.full((FRAME_SIZE_PX, FRAME_SIZE_PX, 3), code_pixel(code), dtype=np.uint8) for code in codes]
    audio = np.repeat(np.asarray(codes, dtype=np.float32) / 256.0, SAMPLES_PER_FRAME)
    return AVSegment(turn_id, audio, frames)


def video_code(frame) -> int:
    assert frame.format.name == "yuv420p", "the track hands the encoder its native format"
    pixels = frame.to_ndarray(format="bgr24").astype(np.int16)
    assert np.ptp(pixels) <= 1, "one flat grey frame per tick"
    level = float(pixels.mean())
    return IDLE_CODE if level >= IDLE_CODE - 3 else round(level / PIXEL_STEP)


def audio_code(frame) -> int:
    """0 for silence, else the code the sender encoded as amplitude."""
    samples = frame.to_ndarray().reshape(-1).astype(np.float64) / 32767.0
    assert np.ptp(samples) < 1e-3, "one packet must hold one tick's constant amplitude"
    return round(samples[0] * 256.0)


class Session:
    """One queue, playout and track pair on a virtual clock, with recorders for what was sent."""

    def __init__(self, max_queued_ticks: int = 100) -> None:
        self.clock = VirtualClock()
        self.queue = AVOutputQueue(max_queued_ticks=max_queued_ticks)
        self.playout = AVPlayout(self.queue, idle_frame)
        self.audio_track, self.video_track = paced_tracks(self.playout, self.clock)
        self.audio: list[tuple[float, object]] = []  # (virtual time sent, av.AudioFrame)
        self.video: list[tuple[float, object]] = []

    async def record(self, audio_packets: int, video_frames: int) -> None:
        async def pull(track, count, into):
            for _ in range(count):
                frame = await track.recv()
                into.append((self.clock.now_s(), frame))

        await asyncio.gather(
            pull(self.audio_track, audio_packets, self.audio),
            pull(self.video_track, video_frames, self.video),
        )

    def video_codes(self) -> list[int]:
        return [video_code(frame) for _, frame in self.video]

    def audio_codes(self) -> list[int]:
        return [audio_code(frame) for _, frame in self.audio]


def run(coroutine_function) -> None:
    asyncio.run(asyncio.wait_for(coroutine_function(), timeout=10))


def test_fifty_ticks_have_exact_pts_and_send_times():
    async def scenario():
        session = Session()
        await session.clock.run(session.record(audio_packets=100, video_frames=50), limit_s=5)

        assert [f.pts for _, f in session.audio] == [j * 320 for j in range(100)]
        assert [t for t, _ in session.audio] == pytest.approx([j * 0.02 for j in range(100)])
        assert {(f.samples, f.sample_rate, f.format.name, f.layout.name) for _, f in session.audio} == {
            (320, AUDIO_RATE_HZ, "s16", "mono")
        }
        assert {f.time_base for _, f in session.audio} == {Fraction(1, AUDIO_RATE_HZ)}
        assert [f.pts for _, f in session.video] == [k * 3600 for k in range(50)]
        assert [t for t, _ in session.video] == pytest.approx([k * 0.04 for k in range(50)])
        assert {f.time_base for _, f in session.video} == {Fraction(1, 90000)}
        assert {(f.width, f.height) for _, f in session.video} == {(FRAME_SIZE_PX, FRAME_SIZE_PX)}

    run(scenario)


def test_frame_and_audio_of_one_tick_leave_together():
    async def scenario():
        session = Session()
        await session.queue.put(coded_segment(1, list(range(1, 31))))
        await session.clock.run(session.record(audio_packets=80, video_frames=40), limit_s=5)

        video_codes = session.video_codes()
        audio_codes = session.audio_codes()
        assert video_codes == [*range(1, 31), *[IDLE_CODE] * 10]
        for tick, code in enumerate(video_codes):
            expected_audio = 0 if code == IDLE_CODE else code
            assert audio_codes[2 * tick : 2 * tick + 2] == [expected_audio, expected_audio]

    run(scenario)


def test_speech_queued_mid_stream_starts_on_the_same_tick_in_both_tracks():
    async def scenario():
        session = Session()
        recording = asyncio.ensure_future(session.record(audio_packets=60, video_frames=30))
        await session.clock.advance_to(0.21)  # ticks 0..5 already went out idle
        await session.queue.put(coded_segment(1, [7] * 10))
        await session.clock.run(recording, limit_s=5)

        assert session.video_codes() == [IDLE_CODE] * 6 + [7] * 10 + [IDLE_CODE] * 14
        assert session.audio_codes() == [0] * 12 + [7] * 20 + [0] * 28

    run(scenario)


def test_late_video_skips_to_the_due_tick_and_late_audio_catches_up_without_gaps():
    async def scenario():
        session = Session()
        await session.queue.put(coded_segment(1, list(range(1, 41))))
        audio_track, video_track, clock = session.audio_track, session.video_track, session.clock
        first_audio = [await clock.run(audio_track.recv(), limit_s=1) for _ in range(10)]
        assert clock.now_s() == pytest.approx(0.18)

        await clock.advance_to(0.2)
        joined = await video_track.recv()  # a track that starts late joins at the tick due now
        assert (joined.pts, video_code(joined)) == (5 * 3600, 6)
        await clock.advance_to(0.5)
        late = await video_track.recv()  # due at 0.24 but asked at 0.5: shows tick 12, no burst
        assert (late.pts, video_code(late)) == (12 * 3600, 13)

        caught_up = [await audio_track.recv() for _ in range(16)]  # all overdue: no waiting
        assert clock.now_s() == 0.5
        audio = first_audio + caught_up
        assert [f.pts for f in audio] == [j * 320 for j in range(26)]
        assert [audio_code(f) for f in audio] == [1 + j // 2 for j in range(26)]

    run(scenario)


def test_new_tracks_on_a_used_playout_continue_its_pts():
    async def scenario():
        session = Session()
        await session.clock.run(session.record(audio_packets=20, video_frames=10), limit_s=1)
        session.audio_track.stop()
        session.video_track.stop()
        audio_track, video_track = paced_tracks(session.playout, session.clock)  # renegotiated
        await session.clock.advance(1.0)
        assert (await video_track.recv()).pts == 10 * 3600
        assert (await audio_track.recv()).pts == 20 * 320

    run(scenario)


def test_idle_sends_silence_and_idle_frames_with_the_tick_index():
    async def scenario():
        clock = VirtualClock()
        seen_ticks: list[int] = []

        def numbered_idle_frame(tick_index: int) -> np.ndarray:
            seen_ticks.append(tick_index)
            return np.full((8, 8, 3), code_pixel(tick_index), dtype=np.uint8)

        playout = AVPlayout(AVOutputQueue(), numbered_idle_frame)
        audio_track, video_track = paced_tracks(playout, clock)
        audio, video = [], []

        async def pull():
            for _ in range(20):
                audio.append(await audio_track.recv())
                audio.append(await audio_track.recv())
                video.append(await video_track.recv())

        await clock.run(pull(), limit_s=2)
        assert seen_ticks == list(range(20))  # each tick's idle frame is asked for exactly once
        assert [video_code(f) for f in video] == list(range(20))
        assert all(not f.to_ndarray().any() for f in audio)
        assert playout.played_ticks(0) == 0

    run(scenario)


def test_flush_mid_turn_goes_idle_on_the_next_tick_with_continuing_pts():
    async def scenario():
        session = Session()
        await session.queue.put(coded_segment(1, [9] * 50))
        recording = asyncio.ensure_future(session.record(audio_packets=80, video_frames=40))
        await session.clock.advance_to(0.40)  # tick 10 has just gone out
        assert session.queue.flush(turn_id=1) == 50 - 11
        assert await session.queue.put(coded_segment(1, [8] * 5)) is False  # late render of turn 1
        await session.clock.advance_to(0.80)
        session.queue.begin_turn(2)
        assert await session.queue.put(coded_segment(2, [5] * 4)) is True
        await session.clock.run(recording, limit_s=5)

        # tick 10 was chosen at t=0.40 (before the flush), its second audio half still plays.
        assert session.video_codes() == [9] * 11 + [IDLE_CODE] * 10 + [5] * 4 + [IDLE_CODE] * 15
        assert session.audio_codes() == [9] * 22 + [0] * 20 + [5] * 8 + [0] * 30
        assert [f.pts for _, f in session.video] == [k * 3600 for k in range(40)]
        assert [f.pts for _, f in session.audio] == [j * 320 for j in range(80)]
        assert session.playout.played_ticks(1) == 11
        assert session.playout.played_ticks(2) == 4

    run(scenario)


def test_segments_of_stale_turns_are_dropped_on_put_and_on_dequeue():
    async def scenario():
        queue = AVOutputQueue()
        playout = AVPlayout(queue, idle_frame)
        queue.begin_turn(1)
        assert await queue.put(coded_segment(1, [1, 1])) is True
        assert await queue.put(coded_segment(2, [2])) is True  # next turn rendered ahead
        queue.begin_turn(2)  # turn 1 became stale while queued
        ticks = [playout.next_tick() for _ in range(2)]
        assert [
            (
                t.turn_id,
                t.is_speech,
                int(t.frame[0, 0, 0]) // PIXEL_STEP if t.is_speech else int(t.frame[0, 0, 0]),
            )
            for t in ticks
        ] == [
            (2, True, 2),
            (None, False, IDLE_CODE),
        ]
        assert await queue.put(coded_segment(1, [1])) is False
        assert queue.queued_ticks == 0
        with pytest.raises(ValueError):
            queue.begin_turn(1)

    run(scenario)


def test_flush_before_any_audio_does_not_hang():
    async def scenario():
        session = Session(max_queued_ticks=4)
        session.queue.begin_turn(1)
        assert session.queue.flush(turn_id=1) == 0  # barge-in before turn 1 rendered anything

        async def late_renderer_of_turn_1():
            return [await session.queue.put(coded_segment(1, [3] * 4)) for _ in range(3)]

        assert await session.clock.run(late_renderer_of_turn_1(), limit_s=1) == [False] * 3
        await session.clock.run(session.record(audio_packets=20, video_frames=10), limit_s=1)
        assert session.video_codes() == [IDLE_CODE] * 10

    run(scenario)


def test_producer_blocked_on_a_full_queue_is_released_by_a_flush():
    async def scenario():
        clock = VirtualClock()
        queue = AVOutputQueue(max_queued_ticks=4)
        queue.begin_turn(1)
        assert await queue.put(coded_segment(1, [1] * 4))
        blocked_put = asyncio.ensure_future(queue.put(coded_segment(1, [1] * 4)))
        await clock.advance(0.0)
        assert not blocked_put.done()
        queue.flush(turn_id=1)
        assert await clock.run(blocked_put, limit_s=0.1) is False

    run(scenario)


def test_put_blocks_when_full_and_resumes_as_ticks_play():
    async def scenario():
        clock = VirtualClock()
        queue = AVOutputQueue(max_queued_ticks=10)
        playout = AVPlayout(queue, idle_frame)
        assert await queue.put(coded_segment(1, [1] * 8))
        second_put = asyncio.ensure_future(queue.put(coded_segment(1, [2] * 8)))
        await clock.advance(0.0)
        assert not second_put.done()
        for _ in range(5):  # 3 queued + 8 new = 11 > 10: still full
            playout.next_tick()
        await clock.advance(0.0)
        assert not second_put.done()
        playout.next_tick()  # 2 queued + 8 = 10 fits
        assert await clock.run(second_put, limit_s=0.1) is True
        assert queue.queued_ticks == 10

        oversized = coded_segment(1, [3] * 25)  # larger than the bound: accepted once empty
        oversized_put = asyncio.ensure_future(queue.put(oversized))
        for _ in range(10):
            playout.next_tick()
        assert await clock.run(oversized_put, limit_s=0.1) is True

    run(scenario)


def test_played_duration_is_recorded_per_turn():
    queue = AVOutputQueue()
    playout = AVPlayout(queue, idle_frame)

    async def scenario():
        queue.begin_turn(1)
        await queue.put(coded_segment(1, [1] * 12))
        for _ in range(15):
            playout.next_tick()
        queue.begin_turn(2)
        await queue.put(coded_segment(2, [2] * 3))
        await queue.put(coded_segment(2, [2] * 30))
        for _ in range(5):
            playout.next_tick()
        queue.flush(turn_id=2)
        for _ in range(5):
            playout.next_tick()

    run(scenario)
    assert (playout.played_ticks(1), playout.played_samples(1)) == (12, 12 * 640)
    assert playout.played_duration_s(1) == pytest.approx(0.48)
    assert (playout.played_ticks(2), playout.played_samples(2)) == (5, 3200)
    assert playout.played_duration_s(2) == pytest.approx(0.2)
    assert playout.played_ticks(3) == 0


@pytest.mark.parametrize(
    "make_segment",
    [
        lambda: AVSegment(1, np.zeros(641, np.float32), [np.zeros((4, 4, 3), np.uint8)]),
        lambda: AVSegment(1, np.zeros(640, np.float64), [np.zeros((4, 4, 3), np.uint8)]),
        lambda: AVSegment(1, np.zeros(640, np.float32), [np.zeros((4, 4, 3), np.float32)]),
        lambda: AVSegment(
            1, np.zeros(1280, np.float32), [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)]
        ),
        lambda: AVSegment(1, np.zeros(0, np.float32), []),
    ],
)
def test_segments_that_break_the_pairing_rule_are_refused(make_segment):
    with pytest.raises(ValueError):
        make_segment()
    valid = AVSegment(1, np.zeros(1280, np.float32), [np.zeros((4, 4, 3), np.uint8)] * 2)
    assert valid.tick_count == 2 and valid.duration_s == pytest.approx(0.08)


def test_stopped_tracks_end_their_recv_without_leftover_tasks():
    async def scenario():
        from aiortc.mediastreams import MediaStreamError

        tasks_before = asyncio.all_tasks()
        session = Session()
        first = await session.clock.run(session.video_track.recv(), limit_s=1)
        assert first.pts == 0
        sleeping_recv = asyncio.ensure_future(session.video_track.recv())
        await session.clock.advance(0.0)
        session.video_track.stop()
        session.audio_track.stop()
        await session.clock.advance(0.04)
        with pytest.raises(MediaStreamError):
            await sleeping_recv
        with pytest.raises(MediaStreamError):
            await session.audio_track.recv()
        assert asyncio.all_tasks() == tasks_before

    run(scenario)


def test_virtual_clock_wakes_in_deadline_order_and_reports_a_stall():
    async def scenario():
        clock = VirtualClock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name, time_s):
            await clock.sleep_until(time_s)
            woke.append((name, clock.now_s()))

        tasks = [asyncio.ensure_future(sleeper(n, t)) for n, t in [("b", 0.2), ("a", 0.1), ("c", 0.2)]]
        await clock.advance(0.15)
        assert woke == [("a", 0.1)] and clock.now_s() == 0.15 and clock.sleeper_count == 2
        await clock.run(asyncio.gather(*tasks), limit_s=1)
        assert woke == [("a", 0.1), ("b", 0.2), ("c", 0.2)]

        never = asyncio.get_running_loop().create_future()
        with pytest.raises(VirtualClockStalled):
            await clock.run(never, limit_s=1)
        with pytest.raises(TimeoutError):
            await clock.run(clock.sleep_until(5.0), limit_s=1)

    run(scenario)


# --- one real WebRTC loopback ------------------------------------------------------------------

LOOPBACK_WINDOW_S = 2.0


def test_loopback_peer_receives_decodable_paced_audio_and_video(monkeypatch, caplog):
    """Two aiortc peers on 127.0.0.1: what arrives decodes and matches 25 fps / real-time audio."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    caplog.set_level(logging.ERROR)
    result = asyncio.run(asyncio.wait_for(_loopback_session(), timeout=20))

    print(f"loopback: {result}")
    assert result["loop_errors"] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert result["leftover_tasks"] == []
    assert result["video_size"] == (128, 96)
    # 25 fps over the window, allowing for scheduling jitter on a busy 2-core machine.
    assert abs(result["video_frames_in_window"] - 25 * LOOPBACK_WINDOW_S) <= 6
    assert abs(result["audio_s_in_window"] - LOOPBACK_WINDOW_S) <= 0.25
    assert result["speech_video_frames"] > 0 and result["loud_audio_frames"] > 0


async def _loopback_session() -> dict:
    from aiortc import RTCPeerConnection

    tasks_before = asyncio.all_tasks()
    loop_errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx["message"]))

    queue = AVOutputQueue()
    gray = np.full((96, 128, 3), 128, dtype=np.uint8)
    playout = AVPlayout(queue, lambda _tick: gray)
    audio_track, video_track = paced_tracks(playout, SystemClock())
    assert (audio_track.kind, video_track.kind) == ("audio", "video")
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(25 * SAMPLES_PER_FRAME) / AUDIO_RATE_HZ)).astype(
        np.float32
    )
    red = np.zeros((96, 128, 3), dtype=np.uint8)
    red[..., 2] = 255

    avatar, viewer = RTCPeerConnection(), RTCPeerConnection()
    received: dict[str, list] = {"audio": [], "video": []}
    readers: list[asyncio.Task] = []

    from aiortc.mediastreams import MediaStreamError

    async def read(track):
        try:
            while True:
                frame = await track.recv()
                received[track.kind].append((time.monotonic(), frame))
        except MediaStreamError:
            return

    @viewer.on("track")
    def on_track(track):
        readers.append(asyncio.ensure_future(read(track)))

    try:
        viewer.addTransceiver("audio", direction="recvonly")
        viewer.addTransceiver("video", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        await avatar.setRemoteDescription(viewer.localDescription)
        avatar.addTrack(audio_track)
        avatar.addTrack(video_track)
        await avatar.setLocalDescription(await avatar.createAnswer())
        await viewer.setRemoteDescription(avatar.localDescription)

        while not (received["audio"] and received["video"]):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # let the jitter buffers settle before measuring
        window_start_s = time.monotonic()
        await queue.put(AVSegment(1, tone, [red] * 25))  # one second of speech, then idle again
        await asyncio.sleep(LOOPBACK_WINDOW_S)
        window_end_s = time.monotonic()
    finally:
        await avatar.close()
        await viewer.close()
        await asyncio.gather(*readers)

    def in_window(kind):
        return [f for t, f in received[kind] if window_start_s <= t < window_end_s]

    def is_red(frame) -> bool:
        pixels = frame.to_ndarray(format="bgr24")
        return pixels[..., 2].mean() > 200 and pixels[..., 0].mean() < 60

    def is_loud(frame) -> bool:
        return np.sqrt(np.mean((frame.to_ndarray() / 32768.0) ** 2)) > 0.1

    red_times_s = [t for t, f in received["video"] if is_red(f)]
    loud_times_s = [t for t, f in received["audio"] if is_loud(f)]
    await asyncio.sleep(0.1)  # aiortc's transports finish their own tasks after close()
    return {
        "video_frames_in_window": len(in_window("video")),
        "audio_s_in_window": round(sum(f.samples / f.sample_rate for f in in_window("audio")), 3),
        "audio_rate_hz": received["audio"][0][1].sample_rate,
        "video_size": (received["video"][0][1].width, received["video"][0][1].height),
        "video_frames_total": len(received["video"]),
        "speech_video_frames": len(red_times_s),
        "loud_audio_frames": len(loud_times_s),
        # first red frame minus first loud audio as they leave the receiver's decoders (steady state)
        "speech_onset_av_offset_ms": round(1000 * (red_times_s[0] - loud_times_s[0]), 1)
        if red_times_s and loud_times_s
        else None,
        "leftover_tasks": list(asyncio.all_tasks() - tasks_before),
        "loop_errors": loop_errors,
    }


def test_idle_frames_are_drawn_only_when_shown_and_once():
    drawn: list[int] = []

    def idle(index: int) -> np.ndarray:
        drawn.append(index)
        return np.full((4, 4, 3), index, np.uint8)

    playout = AVPlayout(AVOutputQueue(), idle)
    ticks = [playout.next_tick() for _ in range(3)]
    assert drawn == [], "taking a tick (the audio track does) draws nothing"
    assert not ticks[1].frame_ready
    assert int(ticks[1].frame[0, 0, 0]) == 1 and ticks[1].frame_ready
    assert int(ticks[1].frame[0, 0, 0]) == 1
    assert drawn == [1]


def test_a_hold_silences_audio_from_the_next_packet_and_resumes_without_loss():
    async def scenario():
        session = Session()
        await session.queue.put(coded_segment(1, list(range(1, 11))))
        # Ticks 0-2 play; the hold comes 10 ms into tick 3 (after its first packet at 120 ms).
        await session.clock.run(session.record(audio_packets=7, video_frames=4), limit_s=1)
        session.playout.hold(True)
        await session.clock.run(session.record(audio_packets=5, video_frames=2), limit_s=1)
        session.playout.hold(False)
        await session.clock.run(session.record(audio_packets=8, video_frames=4), limit_s=1)
        assert session.audio_codes() == [1, 1, 2, 2, 3, 3, 4, 0, 0, 0, 0, 0, 5, 5, 6, 6, 7, 7, 8, 8]
        assert session.video_codes() == [1, 2, 3, 4, IDLE_CODE, IDLE_CODE, 5, 6, 7, 8]
        assert session.playout.played_ticks(1) == 8

    run(scenario)
