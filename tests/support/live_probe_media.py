"""The live probe's media ends: a microphone that plays recorded utterances in real time, and
the mapping of received RTP timestamps to the sender's clock (RTCP sender reports).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.support.live_probe_analysis import MIC_PACKET_S, MIC_RATE_HZ, speech_bounds

MIC_PACKET_SAMPLES = int(MIC_RATE_HZ * MIC_PACKET_S)  # 320
MIC_TIME_BASE = fractions.Fraction(1, MIC_RATE_HZ)
NTP_EPOCH_OFFSET_S = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


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
