"""`avatar probe`: a headless WebRTC client that talks to `avatar serve` and measures it.

It connects like the browser page (docs/live_protocol.md: microphone track on a sendrecv audio
transceiver, recvonly video, an `events` data channel, `POST /offer`), plays recorded utterances
as its microphone in real time, and logs every received audio and video frame with its arrival
time and pts. Measurements are computed afterwards from those logs, so the receive loops stay
cheap and the analysis is plain functions that can be checked on their own.

What is measured, and how (the "why" behind each choice):

* speech end: the last 20 ms frame of the sent utterance whose level is speech, timed when the
  microphone track hands that frame to the encoder (so the server's end-of-turn silence wait is
  part of the latency, as it is for a person).
* first avatar audio: arrival (at `recv()`, after aiortc's ~80 ms audio jitter buffer) of the
  first received frame whose peak reaches `SPEECH_PEAK`.
* first lip-synced frame: the received video frame that the sender sent with the first voiced
  audio sample (nearest sender time, see below), i.e. the frame a browser presents with that
  sound. The first frame whose pixels leave the envelope (per-pixel min/max) of the idle frames
  seen while the user spoke is reported too ("face change"): it proves the picture moves, but it
  can precede the voice, because the reply's expression (a smile) blends in during the TTS's
  leading silence, so it is not used as the lip-sync time.
* sender time: RTP timestamps are mapped to the sender's wall clock with its RTCP sender reports
  (what a browser uses for lip sync). The receiver's pts start at 0 per stream (aiortc subtracts
  the first RTP timestamp), so the raw RTP origin is read from the receiver to apply the reports.
  Server and probe on one machine share the wall clock, so sender times compare with ours.
* A/V offset, audio minus video (positive: audio later): the lag that best aligns the audio
  envelope with the mouth activity (distance of each frame from the idle median) over the first
  4 s of the reply, by cross-correlation after removing trends slower than 200 ms. pts-based:
  on sender times (what the transport carries, before any receive buffering); arrival-based:
  on `recv()` arrival times, which includes aiortc's ~80 ms audio jitter buffer that a browser
  compensates with the sender reports. A constant lead of the renderer's mouth over the sound
  would show up here too, which is the point: it is what a viewer sees.
* barge-in: from the onset of a second utterance sent while the avatar talks to the first
  received audio frame that starts a run of silence at least `SILENCE_HOLD_S` long.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import itertools
import json
import math
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

MIC_RATE_HZ = 16000
MIC_PACKET_S = 0.020
MIC_PACKET_SAMPLES = int(MIC_RATE_HZ * MIC_PACKET_S)  # 320
MIC_TIME_BASE = fractions.Fraction(1, MIC_RATE_HZ)
SPEECH_PEAK = 0.02  # -34 dBFS: the avatar's TTS speech peaks far above this, Opus noise far below
SILENCE_PEAK = 0.01  # a received frame quieter than this is silent
SILENCE_HOLD_S = 0.4  # silence must last this long to count as "the avatar stopped"
MOUTH_MARGIN_LEVELS = 25  # grey levels outside the idle envelope that count as a change
MIN_CHANGED_FRACTION = 0.002  # share of (downsampled) pixels that must change: ~130 px of 256x256
IDLE_WINDOW_S = 1.5  # idle frames before speech end that form the envelope
CORRELATION_MAX_LAG_S = 0.2  # A/V offsets searched in [-200, +200] ms
CORRELATION_SPAN_S = 4.0  # reply audio used for the A/V correlation
VIDEO_DOWNSAMPLE = 2  # keep every 2nd pixel of the grey frame: enough for a mouth, 4x cheaper
MAX_LOGGED_FRAMES = 25 * 180  # three minutes of video per client
RECV_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 20.0
SPEECH_RANGE_RATIO = 0.01  # -40 dB from the loudest 20 ms frame
SPEECH_FLOOR_RMS = 0.003  # about -50 dBFS: never count a near-silent tail as speech
NTP_EPOCH_OFFSET_S = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


# --- microphone ---------------------------------------------------------------------------------
def speech_bounds(pcm: np.ndarray, rate_hz: int = MIC_RATE_HZ) -> tuple[int, int]:
    """(onset, end) sample of the speech in `pcm`: first and last 20 ms frame within 40 dB of the peak.

    40 dB, not 20: a word's closing fricative is quiet. In the benchmark question "...opening
    hours?" the final /s/ runs 240 ms at 28-30 dB below the peak; a 20 dB threshold (used before
    session 2) put the speech end before it and so credited the avatar with 240 ms it did not earn.
    """
    frame = int(rate_hz * MIC_PACKET_S)
    count = max(len(pcm) // frame, 1)
    rms = np.sqrt(np.mean(pcm[: count * frame].reshape(count, -1) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms >= max(SPEECH_FLOOR_RMS, SPEECH_RANGE_RATIO * float(rms.max())))
    if len(loud) == 0:
        raise ValueError("the utterance has no speech")
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


@dataclass
class Utterance:
    """One recorded utterance being sent; times are `time.monotonic()` seconds, None until sent."""

    pcm: np.ndarray  # float32 mono 16 kHz
    onset_sample: int
    end_sample: int
    onset_s: float | None = None
    end_s: float | None = None
    sent: asyncio.Event = field(default_factory=asyncio.Event)


class UtteranceMicTrack(MediaStreamTrack):
    """A microphone that plays queued utterances in real time and silence in between.

    Frames are 20 ms of s16 mono at 16 kHz, paced on `time.monotonic()` from the first `recv()`,
    so utterance onset and end times are the moments those samples leave for the encoder.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending: deque[Utterance] = deque()
        self._current: Utterance | None = None
        self._position = 0  # next sample of the current utterance
        self._origin_s: float | None = None
        self._packet_index = 0

    def play(self, pcm: np.ndarray, rate_hz: int = MIC_RATE_HZ) -> Utterance:
        """Queue `pcm` (16 or 48 kHz mono float) to play after what is already queued."""
        if rate_hz not in (16000, 48000):
            raise ValueError("the probe plays 16 kHz or 48 kHz PCM")
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        if rate_hz == 48000:
            pcm = pcm[: len(pcm) // 3 * 3].reshape(-1, 3).mean(axis=1)
        onset, end = speech_bounds(pcm)
        utterance = Utterance(pcm, onset, end)
        self._pending.append(utterance)
        return utterance

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now_s = time.monotonic()
        if self._origin_s is None:
            self._origin_s = now_s
        due_s = self._origin_s + self._packet_index * MIC_PACKET_S
        await asyncio.sleep(max(0.0, due_s - now_s))
        samples = self._next_samples(due_s)
        pcm_s16 = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm_s16, format="s16", layout="mono")
        frame.sample_rate = MIC_RATE_HZ
        frame.pts = self._packet_index * MIC_PACKET_SAMPLES
        frame.time_base = MIC_TIME_BASE
        self._packet_index += 1
        return frame

    def _next_samples(self, due_s: float) -> np.ndarray:
        if self._current is None and self._pending:
            self._current, self._position = self._pending.popleft(), 0
        utterance = self._current
        if utterance is None:
            return np.zeros(MIC_PACKET_SAMPLES, np.float32)
        start, stop = self._position, self._position + MIC_PACKET_SAMPLES
        if utterance.onset_s is None and start <= utterance.onset_sample < stop:
            utterance.onset_s = due_s + (utterance.onset_sample - start) / MIC_RATE_HZ
        if utterance.end_s is None and start < utterance.end_sample <= stop:
            utterance.end_s = due_s + (utterance.end_sample - start) / MIC_RATE_HZ
        chunk = utterance.pcm[start:stop]
        self._position = stop
        if stop >= len(utterance.pcm):
            utterance.sent.set()
            self._current = None
        return np.pad(chunk, (0, MIC_PACKET_SAMPLES - len(chunk)))


# --- receive logs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioArrival:
    arrival_s: float  # time.monotonic() when recv() returned it
    pts: int  # receiver pts, 1/rate_hz units from the first received packet
    rate_hz: int
    samples: int
    peak: float  # 0..1
    first_loud_sample: int  # index of the first sample >= SPEECH_PEAK, -1 if none


@dataclass(frozen=True)
class VideoArrival:
    arrival_s: float
    pts: int  # 1/90000 units from the first received packet
    grey: np.ndarray  # downsampled luma, uint8


@dataclass(frozen=True)
class SenderReport:
    ntp_s: float  # sender wall clock (Unix seconds)
    rtp_timestamp: int


class SenderClock:
    """Maps one received stream's pts to the sender's clock with its RTCP sender reports."""

    def __init__(self, receiver) -> None:
        self._receiver = receiver
        self.reports: list[SenderReport] = []
        original = receiver._handle_rtcp_packet

        async def handle(packet) -> None:
            from aiortc.rtp import RtcpSrPacket

            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                self.reports.append(
                    SenderReport(info.ntp_timestamp / 2**32 - NTP_EPOCH_OFFSET_S, info.rtp_timestamp)
                )
            await original(packet)

        receiver._handle_rtcp_packet = handle  # instance attribute: the transport looks it up per packet

    def sender_time_s(self, pts: int, rate_hz: int) -> float | None:
        """Sender Unix time of receiver `pts`, or None before any sender report."""
        origin = getattr(getattr(self._receiver, "_RTCRtpReceiver__timestamp_mapper", None), "_origin", None)
        if not self.reports or origin is None:
            return None
        rtp = (origin + pts) % 2**32
        report = self.reports[-1]
        delta = (rtp - report.rtp_timestamp + 2**31) % 2**32 - 2**31  # signed 32-bit difference
        return report.ntp_s + delta / rate_hz


# --- analysis ------------------------------------------------------------------------------------
def first_loud_audio(audio: Sequence[AudioArrival], after_s: float) -> int | None:
    """Index of the first received frame after `after_s` that carries speech."""
    for index, item in enumerate(audio):
        if item.arrival_s >= after_s and item.peak >= SPEECH_PEAK:
            return index
    return None


def silence_start(
    audio: Sequence[AudioArrival], after_s: float, hold_s: float = SILENCE_HOLD_S
) -> int | None:
    """Index of the first frame after `after_s` that begins at least `hold_s` of silence."""
    run_start, run_s = None, 0.0
    for index, item in enumerate(audio):
        if item.arrival_s < after_s:
            continue
        if item.peak < SILENCE_PEAK:
            if run_start is None:
                run_start, run_s = index, 0.0
            run_s += item.samples / item.rate_hz
            if run_s >= hold_s:
                return run_start
        else:
            run_start = None
    return None


def first_changed_frame(
    video: Sequence[VideoArrival], speech_end_s: float, idle_window_s: float = IDLE_WINDOW_S
) -> int | None:
    """Index of the first frame after `speech_end_s` that leaves the idle frames' pixel envelope."""
    idle = [v.grey for v in video if speech_end_s - idle_window_s <= v.arrival_s < speech_end_s]
    if len(idle) < 5:
        return None
    stack = np.stack(idle).astype(np.int16)
    low, high = stack.min(axis=0) - MOUTH_MARGIN_LEVELS, stack.max(axis=0) + MOUTH_MARGIN_LEVELS
    for index, item in enumerate(video):
        if item.arrival_s < speech_end_s or item.grey.shape != low.shape:
            continue
        grey = item.grey.astype(np.int16)
        changed = np.count_nonzero((grey < low) | (grey > high))
        if changed >= MIN_CHANGED_FRACTION * grey.size:
            return index
    return None


def idle_distance(video: Sequence[VideoArrival], speech_end_s: float) -> np.ndarray | None:
    """Per frame, how far the picture is from the idle median (mean absolute grey difference).

    Speech modulates this with the syllable rhythm, which is what the A/V correlation locks onto.
    """
    idle = [v.grey for v in video if speech_end_s - IDLE_WINDOW_S <= v.arrival_s < speech_end_s]
    if len(idle) < 5:
        return None
    median = np.median(np.stack(idle), axis=0)
    return np.array(
        [float(np.abs(v.grey - median).mean()) if v.grey.shape == median.shape else 0.0 for v in video]
    )


def correlation_lag_s(
    audio_times_s: np.ndarray,
    audio_level: np.ndarray,
    video_times_s: np.ndarray,
    video_level: np.ndarray,
    max_lag_s: float = CORRELATION_MAX_LAG_S,
) -> float | None:
    """Delay of the audio envelope behind the video's mouth activity (positive: audio later).

    Both signals go onto one 5 ms grid, lose their slow trend (expression changes, breathing)
    through a 200 ms moving average, and the lag of the cross-correlation peak is the offset.
    Using the whole reply rather than one onset makes it robust to a smile that starts before
    the voice and to the 40 ms frame quantisation.
    """
    if len(audio_times_s) < 10 or len(video_times_s) < 10:
        return None
    step_s = 0.005
    start_s = max(audio_times_s[0], video_times_s[0])
    stop_s = min(audio_times_s[-1], video_times_s[-1])
    if stop_s - start_s < 1.0:
        return None
    grid = np.arange(start_s, stop_s, step_s)
    width = int(0.2 / step_s)
    kernel = np.ones(width) / width

    def prepared(times, level):
        series = np.interp(grid, times, level)
        series = series - np.convolve(series, kernel, mode="same")
        return (series - series.mean()) / (series.std() + 1e-9)

    a, v = prepared(audio_times_s, audio_level), prepared(video_times_s, video_level)
    max_lag = int(max_lag_s / step_s)
    lags = np.arange(-max_lag, max_lag + 1)
    scores = [
        float(np.dot(a[max(lag, 0) : len(a) + min(lag, 0)], v[max(-lag, 0) : len(v) + min(-lag, 0)]))
        for lag in lags
    ]
    return float(lags[int(np.argmax(scores))] * step_s)


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.percentile(clean, q)) if clean else None


@dataclass
class TurnResult:
    """One question and the avatar's reply, latencies in milliseconds (None: not observed)."""

    client: int
    turn: int
    transcript: str = ""
    reply_started: bool = False
    speech_end_to_audio_ms: float | None = None
    speech_end_to_frame_ms: float | None = None  # the frame sent with the first voiced audio
    speech_end_to_face_change_ms: float | None = None  # first frame that leaves the idle envelope
    av_offset_pts_ms: float | None = None  # audio minus video, sender clock (RTCP SR), correlation
    av_offset_arrival_ms: float | None = None  # audio minus video, arrival at recv(), correlation
    server_first_audio_queued_ms: float | None = None
    # Server events of the reply turn, ms after our speech end (client and server share the
    # machine's monotonic clock when run on one host, which the benchmark does): where time goes.
    server_timeline_ms: dict[str, float] = field(default_factory=dict)
    barge_in_to_silence_ms: float | None = None  # arrival at the receiver
    barge_in_to_silence_sender_ms: float | None = None  # sender clock, before network and jitter buffer
    heard_text: str | None = None
    notes: list[str] = field(default_factory=list)


# --- the client ----------------------------------------------------------------------------------
class LiveProbe:
    """One headless client session. Use `async with LiveProbe(url) as probe:`."""

    def __init__(self, url: str, token: str | None = None, client_index: int = 0) -> None:
        self.url = url.rstrip("/")
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
        utterance = await self.play(pcm)
        end_s = utterance.end_s
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
        await self.wait_quiet(timeout_s=reply_timeout_s)
        self._measure_onset(result, end_s)
        return result

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


# --- CLI -----------------------------------------------------------------------------------------
def summarize(results: Sequence[TurnResult]) -> dict:
    """p50/p95 of every latency over the turns that measured it."""
    keys = [
        "speech_end_to_audio_ms",
        "speech_end_to_frame_ms",
        "speech_end_to_face_change_ms",
        "av_offset_pts_ms",
        "av_offset_arrival_ms",
        "server_first_audio_queued_ms",
        "barge_in_to_silence_ms",
        "barge_in_to_silence_sender_ms",
    ]
    summary = {}
    for key in keys:
        values = [getattr(r, key) for r in results if getattr(r, key) is not None]
        if values:
            summary[key] = {
                "n": len(values),
                "p50": percentile_ms(values, 50),
                "p95": percentile_ms(values, 95),
                "max": max(values),
            }
    stages = sorted({stage for r in results for stage in r.server_timeline_ms})
    timeline = {}
    for stage in stages:
        values = [r.server_timeline_ms[stage] for r in results if stage in r.server_timeline_ms]
        timeline[stage] = {
            "n": len(values),
            "p50": percentile_ms(values, 50),
            "p95": percentile_ms(values, 95),
        }
    if timeline:  # where the time goes, ms after the speech end, in order of the median
        summary["server_timeline_ms"] = dict(sorted(timeline.items(), key=lambda item: item[1]["p50"]))
    return summary


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar probe", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--audio", type=Path, required=True, help="recorded question (any format ffmpeg reads)"
    )
    parser.add_argument("--turns", type=int, default=5, help="questions per client")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients")
    parser.add_argument("--barge-in", action="store_true", help="talk over every reply and time the silence")
    parser.add_argument("--token", help="bearer token when the server requires one")
    parser.add_argument("--json", type=Path, help="write every turn and the summary as JSON here")
    parser.add_argument(
        "--loopback-only", action="store_true", help="gather ICE on 127.0.0.1 only (server on this machine)"
    )
    return parser


async def run_clients(
    url: str, question: np.ndarray, *, turns: int, clients: int, barge_in: bool, token: str | None = None
) -> list[TurnResult]:
    """`clients` probes in parallel, `turns` turns each; all tasks are awaited."""

    async def one(index: int) -> list[TurnResult]:
        async with LiveProbe(url, token, index) as probe:
            out = []
            for turn in range(turns):
                if barge_in:
                    out.append(await probe.measure_barge_in(question, question, turn))
                else:
                    out.append(await probe.measure_turn(question, turn))
            return out

    per_client = await asyncio.gather(*(one(i) for i in range(clients)))
    return [r for results in per_client for r in results]


def probe_main(argv: list[str] | None = None) -> int:
    """Entry of `avatar probe`: prints one line per turn and a p50/p95 summary."""
    from avatar.core.audio_io import load_audio

    args = _build_parser().parse_args(argv)
    if args.loopback_only:
        from tests.support.loopback_ice import install_loopback_only

        install_loopback_only()
    question = load_audio(args.audio, MIC_RATE_HZ).pcm.astype(np.float32)
    question = np.concatenate([question, np.zeros(MIC_RATE_HZ // 2, np.float32)])
    results = asyncio.run(
        run_clients(
            args.url,
            question,
            turns=args.turns,
            clients=args.clients,
            barge_in=args.barge_in,
            token=args.token,
        )
    )
    for r in results:
        print(json.dumps({k: v for k, v in asdict(r).items() if v not in (None, [], "")}, ensure_ascii=False))
    summary = summarize(results)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(
            json.dumps({"turns": [asdict(r) for r in results], "summary": summary}, indent=1)
        )
    return 0 if all(r.reply_started for r in results) else 1


if __name__ == "__main__":
    sys.exit(probe_main())
