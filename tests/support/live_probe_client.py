"""The live probe's client: one headless WebRTC session with `avatar serve`, and its measurements.

It connects like the browser page (docs/live_protocol.md: microphone track on a sendrecv audio
transceiver, recvonly video, an `events` data channel, `POST /offer`), plays recorded utterances
as its microphone in real time, and logs every received audio and video frame with its arrival
time and pts. Measurements are computed afterwards from those logs (tests.support.live_probe_analysis
says what is measured and how), so the receive loops stay cheap.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import deque

import numpy as np
from aiortc.mediastreams import MediaStreamError

from tests.support.live_probe_analysis import (
    CORRELATION_SPAN_S,
    MIC_RATE_HZ,
    SILENCE_HOLD_S,
    SILENCE_PEAK,
    SPEECH_PEAK,
    AudioArrival,
    TurnResult,
    VideoArrival,
    correlation_lag_s,
    first_changed_frame,
    first_loud_audio,
    idle_distance,
    silence_start,
)
from tests.support.live_probe_media import SenderClock, Utterance, UtteranceMicTrack
from tests.support.live_probe_mouth import REPLY_WINDOW_S, ColourFrame, first_moving_mouth

VIDEO_DOWNSAMPLE = 2  # keep every 2nd pixel of the grey frame: enough for a mouth, 4x cheaper
MAX_LOGGED_FRAMES = 25 * 180  # three minutes of video per client
MAX_COLOUR_FRAMES = 25 * 20  # colour pictures kept for the landmarker: 20 s (~100 MB at 256 px)
RECV_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 20.0


class LiveProbe:
    """One headless client session. Use `async with LiveProbe(url) as probe:`."""

    def __init__(self, url: str, token: str | None = None, client_index: int = 0, landmarker=None) -> None:
        """`landmarker` (a lipsync FaceLandmarker): also keep colour frames and measure the first
        moving mouth (tests.support.live_probe_mouth); it costs the probe a colour conversion per frame."""
        self.url = url.rstrip("/")
        self.landmarker = landmarker
        self.colour: deque[ColourFrame] = deque(maxlen=MAX_COLOUR_FRAMES)
        self._colour_window_s = (math.inf, math.inf)  # colour frames are kept only in this span
        self.token = token
        self.client_index = client_index
        self.mic = UtteranceMicTrack()
        self.audio: deque[AudioArrival] = deque(maxlen=MAX_LOGGED_FRAMES * 2)
        self.video: deque[VideoArrival] = deque(maxlen=MAX_LOGGED_FRAMES)
        self.events: list[tuple[float, dict]] = []
        self.session_id: str | None = None
        self.audio_clock: SenderClock | None = None
        self.video_clock: SenderClock | None = None
        self._event_arrived = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._pc = None
        self._channel = None
        self._unix_minus_monotonic_s = time.time() - time.monotonic()

    async def __aenter__(self) -> LiveProbe:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        import aiohttp
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = self._pc = RTCPeerConnection()
        pc.addTrack(self.mic)
        pc.addTransceiver("video", direction="recvonly")
        channel = self._channel = pc.createDataChannel("events")

        @channel.on("message")
        def on_message(message) -> None:
            try:
                self.events.append((time.monotonic(), json.loads(message)))
            except (TypeError, ValueError):
                return
            self._event_arrived.set()

        @pc.on("track")
        def on_track(track) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            if track.kind == "audio":
                self.audio_clock = SenderClock(receiver)
                self._own(self._receive_audio(track))
            else:
                self.video_clock = SenderClock(receiver)
                self._own(self._receive_video(track))

        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(f"{self.url}/offer", json=body, headers=headers) as response,
        ):
            answer = await response.json()
            if response.status != 200:
                raise ConnectionError(f"POST /offer: {response.status} {answer.get('error')}")
        self.session_id = answer.get("session_id")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await self._wait_for(lambda: len(self.video) > 0 and len(self.audio) > 0, timeout_s, "first media")

    def _own(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        # Close the connection first: that ends the received tracks, so the receive loops return
        # on their own instead of being cancelled in the middle of a track read.
        if self._pc is not None:
            await asyncio.wait_for(self._pc.close(), timeout=10.0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10.0)

    @property
    def connected(self) -> bool:
        """The peer connection is up and audio still arrives. A server that closes the session
        (e.g. on ICE consent expiry) may leave our side "connected" with the media stopped."""
        if self._pc is None or self._pc.connectionState != "connected" or not self.audio:
            return False
        return time.monotonic() - self.audio[-1].arrival_s < RECV_TIMEOUT_S

    def send_event(self, event: dict) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(json.dumps(event))

    @staticmethod
    async def _receive(track, record) -> None:
        """Hand every frame and its arrival time to `record` until the track ends or goes quiet."""
        while True:
            try:
                frame = await asyncio.wait_for(track.recv(), RECV_TIMEOUT_S)
            except (MediaStreamError, asyncio.TimeoutError):
                return
            record(frame, time.monotonic())

    async def _receive_audio(self, track) -> None:
        def record(frame, arrival_s: float) -> None:
            pcm = (
                frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0].astype(np.float32) / 32768.0
            )
            loud = np.flatnonzero(np.abs(pcm) >= SPEECH_PEAK)
            self.audio.append(
                AudioArrival(
                    arrival_s,
                    int(frame.pts),
                    int(frame.sample_rate),
                    len(pcm),
                    float(np.abs(pcm).max(initial=0.0)),
                    int(loud[0]) if len(loud) else -1,
                )
            )

        await self._receive(track, record)

    async def _receive_video(self, track) -> None:
        def record(frame, arrival_s: float) -> None:
            grey = frame.to_ndarray(format="gray")[::VIDEO_DOWNSAMPLE, ::VIDEO_DOWNSAMPLE].copy()
            self.video.append(VideoArrival(arrival_s, int(frame.pts), grey))
            if self._colour_window_s[0] <= arrival_s <= self._colour_window_s[1]:
                bgr = frame.to_ndarray(format="bgr24")[::VIDEO_DOWNSAMPLE, ::VIDEO_DOWNSAMPLE].copy()
                self.colour.append(ColourFrame(arrival_s, bgr))

        await self._receive(track, record)

    # --- waiting -----------------------------------------------------------------------------
    async def _wait_for(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"probe {self.client_index}: no {what} within {timeout_s:.0f} s")
            await asyncio.sleep(0.02)

    async def wait_event(
        self, kind: str | tuple[str, ...], after_s: float, timeout_s: float, turn_id: int | None = None
    ) -> dict | None:
        """The first event of `kind` (of `turn_id` if given) that arrived after `after_s`, or None."""
        kinds = (kind,) if isinstance(kind, str) else kind
        deadline = time.monotonic() + timeout_s
        while True:
            for arrival_s, event in self.events:
                if arrival_s < after_s or event.get("type") not in kinds:
                    continue
                if turn_id is None or event.get("turn_id") == turn_id:
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._event_arrived.clear()
            try:
                await asyncio.wait_for(self._event_arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    async def wait_quiet(self, quiet_s: float = 0.6, timeout_s: float = 30.0) -> None:
        """Wait until the avatar has been silent for `quiet_s` (measurements start from quiet)."""

        def quiet() -> bool:
            now_s = time.monotonic()
            recent = [a for a in self.audio if a.arrival_s >= now_s - quiet_s]
            return bool(recent) and all(a.peak < SILENCE_PEAK for a in recent)

        await self._wait_for(quiet, timeout_s, "quiet avatar")

    async def play(self, pcm: np.ndarray, rate_hz: int = MIC_RATE_HZ, timeout_s: float = 60.0) -> Utterance:
        """Send an utterance as the microphone and return once its speech has been sent."""
        utterance = self.mic.play(pcm, rate_hz)
        await self._wait_for(lambda: utterance.end_s is not None, timeout_s, "utterance sent")
        return utterance

    # --- measurements --------------------------------------------------------------------------
    def _sender_monotonic_s(self, clock: SenderClock | None, pts: int, rate_hz: int) -> float | None:
        unix_s = clock.sender_time_s(pts, rate_hz) if clock is not None else None
        return None if unix_s is None else unix_s - self._unix_minus_monotonic_s

    async def measure_turn(self, pcm: np.ndarray, turn: int, reply_timeout_s: float = 30.0) -> TurnResult:
        """Ask one question from quiet, wait for the whole reply, and measure its onset."""
        result = TurnResult(self.client_index, turn)
        await self.wait_quiet()
        if self.landmarker is not None:  # colour frames from now until the reply has started
            self.colour.clear()
            self._colour_window_s = (time.monotonic(), math.inf)
        utterance = await self.play(pcm)
        end_s = utterance.end_s
        self._colour_window_s = (self._colour_window_s[0], end_s + REPLY_WINDOW_S)
        # A recording with long pauses becomes several server turns; the reply to measure is the
        # one whose turn starts after the whole utterance was sent (earlier ones were barged in).
        started = await self.wait_event(("turn_started", "turn_ignored"), end_s, reply_timeout_s)
        turn_id = (started or {}).get("turn_id")
        if turn_id is None or started["type"] != "turn_started":
            result.notes.append(f"no reply turn started: {started}")
            return result
        transcript = await self.wait_event("user_transcript", 0.0, 0.0, turn_id)
        result.transcript = (transcript or {}).get("text", "")
        done = await self.wait_event(
            ("turn_rendered", "turn_failed", "turn_interrupted"), end_s, reply_timeout_s, turn_id
        )
        queued = await self.wait_event("first_audio_queued", end_s, 0.0, turn_id)
        if queued is not None:
            result.server_first_audio_queued_ms = 1000 * queued["latency_s"]
        if done is None or done["type"] != "turn_rendered":
            result.notes.append(f"reply did not render: {done}")
        result.server_timeline_ms = self._server_timeline(turn_id, end_s)
        result.turn_checks = [
            (event["verdict"], event["probability"])
            for arrival_s, event in self.events
            if event.get("type") == "turn_end_check" and arrival_s >= end_s - 0.5
        ]
        await self.wait_quiet(timeout_s=reply_timeout_s)
        self._measure_onset(result, end_s)
        await self._measure_moving_mouth(result, end_s)
        return result

    async def _measure_moving_mouth(self, result: TurnResult, end_s: float) -> None:
        """In a worker thread: the landmarker needs ~1.5 s for a turn's frames, and blocking the
        event loop that long starves aiortc's receivers (the video stopped for good after it)."""
        if self.landmarker is None:
            return
        try:
            onset = await asyncio.to_thread(first_moving_mouth, list(self.colour), end_s, self.landmarker)
        except ValueError as error:
            result.notes.append(f"moving mouth not measured: {error}")
            return
        if onset.arrival_s is None:
            result.notes.append(f"the mouth never left its idle range (max {onset.idle_max_gap:.3f})")
        else:
            result.speech_end_to_moving_mouth_ms = 1000 * (onset.arrival_s - end_s)

    def _server_timeline(self, turn_id: int, end_s: float) -> dict[str, float]:
        timeline: dict[str, float] = {}
        for _, event in self.events:
            if event.get("turn_id") != turn_id or "at_s" not in event:
                continue
            timeline.setdefault(event["type"], 1000 * (event["at_s"] - end_s))
            if "speech_end_at_s" in event:
                timeline.setdefault("speech_end_arrived", 1000 * (event["speech_end_at_s"] - end_s))
        return timeline

    def _measure_onset(self, result: TurnResult, end_s: float) -> None:
        audio, video = list(self.audio), list(self.video)
        a_index = first_loud_audio(audio, end_s)
        if a_index is None:
            result.notes.append("no avatar audio after speech end")
            return
        result.reply_started = True
        first_audio = audio[a_index]
        result.speech_end_to_audio_ms = 1000 * (first_audio.arrival_s - end_s)
        audio_onset_pts = first_audio.pts + max(first_audio.first_loud_sample, 0)
        audio_sender_s = self._sender_monotonic_s(self.audio_clock, audio_onset_pts, first_audio.rate_hz)
        if audio_sender_s is not None:  # when the server sent it (RTCP sender report mapping)
            result.server_timeline_ms["first_voiced_audio_sent"] = 1000 * (audio_sender_s - end_s)

        v_index = first_changed_frame(video, end_s)
        if v_index is None:
            result.notes.append("no face change detected after speech end")
        else:
            result.speech_end_to_face_change_ms = 1000 * (video[v_index].arrival_s - end_s)
        video_sender = [self._sender_monotonic_s(self.video_clock, v.pts, 90000) for v in video]
        if audio_sender_s is not None:
            matched = [(abs(s - audio_sender_s), v) for s, v in zip(video_sender, video, strict=True) if s]
            if matched:
                gap_s, frame = min(matched, key=lambda pair: pair[0])
                result.speech_end_to_frame_ms = 1000 * (frame.arrival_s - end_s)
                if gap_s > 0.5 / 25:
                    result.notes.append(f"nearest frame is {1000 * gap_s:.0f} ms from the audio onset")
        self._measure_av_offset(result, audio[a_index:], video, video_sender, end_s, first_audio.arrival_s)

    def _measure_av_offset(self, result, audio, video, video_sender, end_s: float, onset_s: float) -> None:
        """A/V offset of the reply by envelope correlation, on sender and on arrival times."""
        distance = idle_distance(video, end_s)
        if distance is None:
            result.notes.append("too few idle frames for the A/V offset")
            return
        span = [a for a in audio if a.arrival_s <= onset_s + CORRELATION_SPAN_S]
        keep = [
            i for i, v in enumerate(video) if onset_s - 0.5 <= v.arrival_s <= onset_s + CORRELATION_SPAN_S
        ]
        if len(span) < 10 or len(keep) < 10:
            return
        a_level = np.array([a.peak for a in span])
        v_level = distance[keep]
        a_arrival = np.array([a.arrival_s for a in span])
        v_arrival = np.array([video[i].arrival_s for i in keep])
        lag_s = correlation_lag_s(a_arrival, a_level, v_arrival, v_level)
        result.av_offset_arrival_ms = None if lag_s is None else 1000 * lag_s
        a_sender = [self._sender_monotonic_s(self.audio_clock, a.pts, a.rate_hz) for a in span]
        v_sender = [video_sender[i] for i in keep]
        if all(t is not None for t in a_sender) and all(t is not None for t in v_sender):
            lag_s = correlation_lag_s(np.array(a_sender), a_level, np.array(v_sender), v_level)
            result.av_offset_pts_ms = None if lag_s is None else 1000 * lag_s

    async def measure_barge_in(
        self, question: np.ndarray, barge: np.ndarray, turn: int, talk_before_s: float = 1.0
    ) -> TurnResult:
        """Ask, let the avatar talk `talk_before_s`, then talk over it and time the silence."""
        result = await self._ask_and_wait_for_audio(question, turn)
        if not result.reply_started:
            return result
        await asyncio.sleep(talk_before_s)
        utterance = self.mic.play(barge)
        await self._wait_for(lambda: utterance.onset_s is not None, 10.0, "barge-in onset")
        onset_s = utterance.onset_s
        await self._wait_for(lambda: utterance.end_s is not None, 60.0, "barge-in sent")
        interrupted = await self.wait_event("turn_interrupted", onset_s, 10.0)
        result.heard_text = (interrupted or {}).get("heard")
        if interrupted is None:
            result.notes.append("no turn_interrupted event")
        for _, event in self.events:  # server side of the barge-in, ms after our speech onset
            if event.get("type") in ("playback_held", "turn_interrupted") and event["at_s"] >= onset_s - 0.5:
                result.server_timeline_ms.setdefault(event["type"], 1000 * (event["at_s"] - onset_s))
                if event["type"] == "playback_held" and "mic_lag_ms" in event:  # not a time after onset:
                    result.server_timeline_ms.setdefault("mic_lag_at_hold", event["mic_lag_ms"])  # ms behind
        self._measure_silence(result, onset_s)
        self.send_event({"type": "interrupt"})  # do not wait for the reply to the barge-in
        return result

    async def measure_button_interrupt(
        self, question: np.ndarray, turn: int, talk_before_s: float = 1.0
    ) -> TurnResult:
        """Like `measure_barge_in`, with the data-channel interrupt instead of speech."""
        result = await self._ask_and_wait_for_audio(question, turn)
        if not result.reply_started:
            return result
        await asyncio.sleep(talk_before_s)
        sent_s = time.monotonic()
        self.send_event({"type": "interrupt"})
        interrupted = await self.wait_event("turn_interrupted", sent_s, 10.0)
        result.heard_text = (interrupted or {}).get("heard")
        await asyncio.sleep(SILENCE_HOLD_S + 0.3)
        self._measure_silence(result, sent_s)
        return result

    async def _ask_and_wait_for_audio(self, question: np.ndarray, turn: int) -> TurnResult:
        result = TurnResult(self.client_index, turn)
        await self.wait_quiet()
        utterance = await self.play(question)
        end_s = utterance.end_s
        try:
            await self._wait_for(lambda: first_loud_audio(self.audio, end_s) is not None, 30.0, "reply audio")
        except TimeoutError as exc:
            result.notes.append(str(exc))
            return result
        self._measure_onset(result, end_s)
        return result

    def _measure_silence(self, result: TurnResult, onset_s: float) -> None:
        audio = list(self.audio)
        index = silence_start(audio, onset_s)
        if index is None:
            result.notes.append("avatar never fell silent after the interruption")
            return
        item = audio[index]
        result.barge_in_to_silence_ms = 1000 * (item.arrival_s - onset_s)
        sender_s = self._sender_monotonic_s(self.audio_clock, item.pts, item.rate_hz)
        if sender_s is not None:
            result.barge_in_to_silence_sender_ms = 1000 * (sender_s - onset_s)

    def realtime_stats(self, start_s: float, end_s: float) -> dict:
        """Received video fps and audio continuity over [start_s, end_s] (arrival times)."""
        video = [v for v in self.video if start_s <= v.arrival_s < end_s]
        audio = [a for a in self.audio if start_s <= a.arrival_s < end_s]
        gaps = np.diff([a.arrival_s for a in audio]) if len(audio) > 1 else np.zeros(0)
        pts_jumps = sum(
            1 for prev, cur in itertools.pairwise(audio) if cur.pts - prev.pts > prev.samples * 1.5
        )
        return {
            "video_fps": len(video) / (end_s - start_s),
            "audio_frames": len(audio),
            "audio_max_gap_ms": 1000 * float(gaps.max(initial=0.0)),
            "audio_pts_jumps": pts_jumps,
        }
