"""A long video's speech in bounded windows, and each window's frames on one continuous timeline.

Why windows: an hour of speech is 350 MB of float audio at 24 kHz before any feature, plan or
frame exists, and the render used to hold all of it (a 2-hour file grew to 6.9 GB). Here the
speech arrives piece by piece (sentences from TTS, blocks from the decoder), is cut into windows
of about `WINDOW_S`, and each window is planned, drawn and encoded before the next is made, so
memory depends on the window, not on the video.

Cuts fall where nothing moves across them: between sentences for text (inside the pause), at the
quietest frame near the window's end for recordings. A cut is frame-aligned (frame k covers
samples [k*R/F, (k+1)*R/F)), so windows add up to exactly the frames of one long render. Blinks
and head sway come from one timeline keyed by the video's frame index, and expressions are
blended across cuts from the emotion spans on both sides (`CONTEXT_S` of look-ahead is kept
before a cut is made), so a window boundary is invisible. What does differ from one whole-file
plan: the mouth's loudness reference is measured per window (`lipsync.audio_features`), which on
speech windows of 20+ s is the same level within a few dB.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from avatar.core.types import AudioChunk, PhonemeTiming, Speech
from avatar.speech.assembly import EmotionSpan

WINDOW_S = 20.0  # speech per window: Whisper's 30 s context fits one (--audio-timing asr)
CONTEXT_S = 1.0  # look-ahead kept past a cut: more than the expression blend reaches (0.56 s)
QUIET_SEARCH_S = 4.0  # a recording is cut at the quietest frame of the window's last seconds
AUDIO_BLOCK_S = 5.0


@dataclass(frozen=True)
class SpeechWindow:
    """Whole frames of speech, placed on the video's timeline."""

    speech: Speech  # len(pcm) == frame_count * R / F; phoneme times relative to the window
    start_frame: int
    frame_count: int
    spans: tuple[EmotionSpan, ...]  # absolute times (s from the video's start), around the window


class WindowCutter:
    """Speech laid end to end, handed out as frame-aligned windows.

    `add` appends a piece; `cut_at` takes everything before an absolute sample index (rounded
    down to a frame); `finish` takes the rest padded with silence to a whole frame, as a single
    render pads its last frame.
    """

    def __init__(self, rate_hz: int, fps: int) -> None:
        if rate_hz % fps:
            raise ValueError(f"{rate_hz} Hz does not divide into {fps} fps frames")
        self.rate_hz = rate_hz
        self.fps = fps
        self.samples_per_frame = rate_hz // fps
        self.start_sample = 0  # absolute index of the first sample not yet in a window
        self._pcm: list[np.ndarray] = []
        self._pending_samples = 0
        self._phonemes: list[PhonemeTiming] = []  # absolute times
        self._spans: list[EmotionSpan] = []  # absolute, merged when emotion and intensity repeat
        self.pause_cuts: list[int] = []  # absolute sample indices inside pauses

    @property
    def end_sample(self) -> int:
        return self.start_sample + self._pending_samples

    @property
    def pending_s(self) -> float:
        return self._pending_samples / self.rate_hz

    def add(
        self,
        pcm: np.ndarray,
        phonemes: Iterable[PhonemeTiming] = (),
        emotion: str = "neutral",
        intensity: float = 1.0,
    ) -> None:
        """Append speech shown with `emotion` at `intensity` (0..1, the "[happy:0.5]" of a script)."""
        start_s = self.end_sample / self.rate_hz
        pcm = np.asarray(pcm, np.float32)
        self._phonemes.extend(
            PhonemeTiming(p.phoneme, start_s + p.start_s, start_s + p.end_s) for p in phonemes
        )
        end_s = start_s + len(pcm) / self.rate_hz
        if self._spans and self._spans[-1][2:] == (emotion, intensity):
            self._spans[-1] = (self._spans[-1][0], end_s, emotion, intensity)
        else:
            self._spans.append((start_s, end_s, emotion, intensity))
        self._pcm.append(pcm)
        self._pending_samples += len(pcm)

    def add_pause(self, pcm: np.ndarray, emotion: str, intensity: float = 1.0) -> None:
        """Silence between sentences: the middle of it is a place to cut."""
        middle = self.end_sample + len(pcm) // 2
        self.add(pcm, (), emotion, intensity)
        self.pause_cuts.append(middle)

    def quietest_cut(self, window_samples: int) -> int:
        """The absolute sample of the frame boundary, among the last `QUIET_SEARCH_S` of a window
        of `window_samples`, whose two neighbouring frames carry the least energy."""
        spf = self.samples_per_frame
        pcm = self._joined()
        last = window_samples // spf
        first = max(1, last - int(QUIET_SEARCH_S * self.fps))
        frames = pcm[(first - 1) * spf : (last + 1) * spf].reshape(-1, spf).astype(np.float64)
        energy = np.sum(frames**2, axis=1)
        around = energy[:-1] + energy[1:]  # boundary b sits between frame b-1 and frame b
        return self.start_sample + (first + int(np.argmin(around))) * spf

    def _joined(self) -> np.ndarray:
        if len(self._pcm) > 1:
            self._pcm = [np.concatenate(self._pcm)]
        return self._pcm[0] if self._pcm else np.zeros(0, np.float32)

    def cut_at(self, sample: int) -> SpeechWindow | None:
        frames = (sample - self.start_sample) // self.samples_per_frame
        if frames <= 0:
            return None
        return self._take(frames * self.samples_per_frame)

    def finish(self) -> SpeechWindow | None:
        if self._pending_samples == 0:
            return None
        short = -self._pending_samples % self.samples_per_frame
        if short:
            self._pcm.append(np.zeros(short, np.float32))
            self._pending_samples += short
        return self._take(self._pending_samples)

    def _take(self, count: int) -> SpeechWindow:
        pcm = self._joined()
        window_pcm, rest = pcm[:count], pcm[count:]
        self._pcm = [rest] if len(rest) else []
        self._pending_samples = len(rest)
        start_s = self.start_sample / self.rate_hz
        end_s = (self.start_sample + count) / self.rate_hz
        phonemes = tuple(
            PhonemeTiming(p.phoneme, p.start_s - start_s, p.end_s - start_s)
            for p in self._phonemes
            if p.start_s < end_s
        )
        self._phonemes = [p for p in self._phonemes if p.end_s > end_s]
        spans = tuple(s for s in self._spans if s[1] > start_s - CONTEXT_S)
        self._spans = [s for s in self._spans if s[1] > end_s - CONTEXT_S]
        window = SpeechWindow(
            Speech(AudioChunk(np.ascontiguousarray(window_pcm), self.rate_hz), phonemes=phonemes),
            start_frame=self.start_sample // self.samples_per_frame,
            frame_count=count // self.samples_per_frame,
            spans=spans,
        )
        self.start_sample += count
        self.pause_cuts = [cut for cut in self.pause_cuts if cut > self.start_sample]
        return window


def text_windows(pieces: Iterable, fps: int, window_s: float | None = None) -> Iterator[SpeechWindow]:
    """Windows from `avatar.speech.assembly.lay_out_pieces`, cut in the pause nearest after
    `window_s` (default `WINDOW_S`) once `CONTEXT_S` of what follows is known."""
    window_s = window_s or WINDOW_S
    cutter: WindowCutter | None = None
    for piece in pieces:
        if cutter is None:
            cutter = WindowCutter(piece.rate_hz, fps)
        if piece.is_pause:
            cutter.add_pause(piece.pcm, piece.emotion, piece.intensity)
        else:
            cutter.add(piece.pcm, piece.phonemes, piece.emotion, piece.intensity)
        target = cutter.start_sample + int(window_s * cutter.rate_hz)
        cuts = [cut for cut in cutter.pause_cuts if cut >= target]
        if cuts and cutter.end_sample - cuts[0] >= CONTEXT_S * cutter.rate_hz:
            window = cutter.cut_at(cuts[0])
            if window is not None:
                yield window
    if cutter is not None:
        window = cutter.finish()
        if window is not None:
            yield window


def audio_windows(
    blocks: Iterable[np.ndarray], rate_hz: int, fps: int, emotion: str, window_s: float | None = None
) -> Iterator[SpeechWindow]:
    """Windows from decoded blocks of a recording (`avatar.core.audio_io.iter_audio`) of about
    `window_s` (default `WINDOW_S`), each cut at the quietest frame of its last `QUIET_SEARCH_S`."""
    window_s = window_s or WINDOW_S
    cutter = WindowCutter(rate_hz, fps)
    window_samples = int(window_s * rate_hz)
    for block in blocks:
        cutter.add(block, (), emotion)
        while cutter.pending_s >= window_s + CONTEXT_S:
            window = cutter.cut_at(cutter.quietest_cut(window_samples))
            if window is not None:
                yield window
    window = cutter.finish()
    if window is not None:
        yield window


def expression_rows(renderer, window: SpeechWindow) -> np.ndarray:
    """(frames, bases) expression weights of the window, blended with the spans on both sides
    exactly as one plan of the whole video blends them (the renderer's own `expression_plan`,
    evaluated over the window plus `CONTEXT_S` each side, then cut to the window)."""
    fps = renderer.fps
    context = int(CONTEXT_S * fps)
    first = max(0, window.start_frame - context)
    count = window.start_frame + window.frame_count + context - first
    offset_s = first / fps
    spans = [(span[0] - offset_s, span[1] - offset_s, *span[2:]) for span in window.spans]
    track = renderer.expression_plan(spans, count)
    start = window.start_frame - first
    return np.ascontiguousarray(track[start : start + window.frame_count])


def window_frames(renderer, window: SpeechWindow, motion) -> Iterator[np.ndarray]:
    """The window's frames, lazily. The procedural renderer is planned on the video's timeline
    (its blinks, sway and expressions continue across windows); another renderer (Wav2Lip)
    renders each window as a clip of its own: its idle motion restarts at every window."""
    from lipsync.procedural_renderer import ProceduralRenderer

    if not isinstance(renderer, ProceduralRenderer):
        offset_s = window.start_frame / renderer.fps
        spans = [(span[0] - offset_s, span[1] - offset_s, *span[2:]) for span in window.spans]
        yield from renderer.render(window.speech, spans)
        return
    weights = expression_rows(renderer, window)
    energy = renderer.add_mouth(weights, window.speech)
    renderer.add_idle_motion(weights, window.start_frame, motion, energy)
    for row in weights:
        yield renderer.draw(row)
