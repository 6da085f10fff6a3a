"""What the live probe measures, from its logs: plain functions over received frames.

The client (tests.support.live_probe_client.LiveProbe) logs every received audio and video frame
with its arrival time and pts; these functions compute the measurements afterwards from those
logs, so the receive loops stay cheap and each measurement can be checked on its own.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MIC_RATE_HZ = 16000
MIC_PACKET_S = 0.020
SPEECH_PEAK = 0.02  # -34 dBFS: the avatar's TTS speech peaks far above this, Opus noise far below
SILENCE_PEAK = 0.01  # a received frame quieter than this is silent
SILENCE_HOLD_S = 0.4  # silence must last this long to count as "the avatar stopped"
MOUTH_MARGIN_LEVELS = 25  # grey levels outside the idle envelope that count as a change
MIN_CHANGED_FRACTION = 0.002  # share of (downsampled) pixels that must change: ~130 px of 256x256
IDLE_WINDOW_S = 1.5  # idle frames before speech end that form the envelope
CORRELATION_MAX_LAG_S = 0.2  # A/V offsets searched in [-200, +200] ms
CORRELATION_SPAN_S = 4.0  # reply audio used for the A/V correlation
SPEECH_RANGE_RATIO = 0.01  # -40 dB from the loudest 20 ms frame
SPEECH_FLOOR_RMS = 0.003  # about -50 dBFS: never count a near-silent tail as speech
NOISE_FLOOR_SHARE = 0.3  # loud = this share of the way from a recording's noise floor to its speech level
DIGITAL_SILENCE_DB = -90.0  # frames this quiet are padding or digital silence, left out of the noise floor
ONSET_RUN_FRAMES = 3  # 60 ms of loud frames in a row start speech; shorter is a click


def speech_bounds(pcm: np.ndarray, rate_hz: int = MIC_RATE_HZ) -> tuple[int, int]:
    """(onset, end) sample of the speech in `pcm`, from 20 ms RMS energy; independent of any VAD.

    A frame is loud when it is within 40 dB of the loudest frame, above -50 dBFS, and 30% of the
    way (in dB) from the clip's noise floor (10th percentile) to its speech level (90th). 40 dB,
    not 20: a word's closing fricative is quiet (in "...opening hours?" the final /s/ runs 240 ms
    at 28-30 dB below the peak). The noise-floor term matters for real recordings: the AISHELL
    clip's room noise sits 27-38 dB below its peak, so without it the "speech" began with the
    file (0.00 s instead of 0.48 s) and ended with it (4.28 s instead of 3.64 s), which charged
    barge-ins 480 ms they did not cost and credited replies 640 ms they did not earn. The onset
    needs 60 ms of loud frames in a row (a click is not speech); the end is the last loud frame.
    """
    frame = int(rate_hz * MIC_PACKET_S)
    count = max(len(pcm) // frame, 1)
    frames = np.asarray(pcm[: count * frame], np.float64).reshape(count, -1)
    level_db = 20.0 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-9)
    sounding = level_db[level_db > DIGITAL_SILENCE_DB]  # zero padding is not the room's noise
    floor_db, speech_db = np.percentile(sounding if len(sounding) else level_db, [10, 90])
    threshold_db = max(
        20.0 * np.log10(SPEECH_FLOOR_RMS),
        float(level_db.max()) + 20.0 * np.log10(SPEECH_RANGE_RATIO),
        # never closer than 10 dB to the speech level: a clip with no pauses has no noise floor
        min(floor_db + NOISE_FLOOR_SHARE * (speech_db - floor_db), speech_db - 10.0),
    )
    loud = level_db >= threshold_db
    runs = np.convolve(loud.astype(int), np.ones(ONSET_RUN_FRAMES, dtype=int), mode="valid")
    starts = np.flatnonzero(runs == ONSET_RUN_FRAMES)
    if len(starts) == 0:
        raise ValueError("the utterance has no speech")
    return int(starts[0] * frame), int((np.flatnonzero(loud)[-1] + 1) * frame)


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
    question: str = ""  # which question was asked (the benchmark's label)
    transcript: str = ""
    reply_started: bool = False
    speech_end_to_audio_ms: float | None = None
    speech_end_to_frame_ms: float | None = None  # the frame sent with the first voiced audio
    speech_end_to_face_change_ms: float | None = None  # first frame that leaves the idle envelope
    speech_end_to_moving_mouth_ms: float | None = None  # the landmarker sees the lips open (live_probe_mouth)
    av_offset_pts_ms: float | None = None  # audio minus video, sender clock (RTCP SR), correlation
    av_offset_arrival_ms: float | None = None  # audio minus video, arrival at recv(), correlation
    server_first_audio_queued_ms: float | None = None
    # Server events of the reply turn, ms after our speech end (client and server share the
    # machine's monotonic clock when run on one host, which the benchmark does): where time goes.
    server_timeline_ms: dict[str, float] = field(default_factory=dict)
    # The end-of-turn model's answers during this turn's last pause: (verdict, probability).
    turn_checks: list[tuple[str, float]] = field(default_factory=list)
    barge_in_to_silence_ms: float | None = None  # arrival at the receiver
    barge_in_to_silence_sender_ms: float | None = None  # sender clock, before network and jitter buffer
    heard_text: str | None = None
    notes: list[str] = field(default_factory=list)


def summarize(results: Sequence[TurnResult]) -> dict:
    """p50/p95 of every latency over the turns that measured it."""
    keys = [
        "speech_end_to_audio_ms",
        "speech_end_to_frame_ms",
        "speech_end_to_face_change_ms",
        "speech_end_to_moving_mouth_ms",
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
