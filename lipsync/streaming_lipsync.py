"""Live lip-sync: speech chunks in, paired audio + frames out, on the session's 16 kHz / 25 fps clock.

A live session synthesizes a reply sentence by sentence and must start showing the first one at
once. This adapter renders each chunk as it arrives, keeps blinks, sway and expression continuous
across chunks and idle time (one timeline keyed by the session frame counter), and hands out
audio in exact 640-sample frames so that audio and video are paired by construction.
"""

from __future__ import annotations

import threading

import numpy as np

from avatar.core.types import AudioChunk, Speech
from lipsync.deformation_basis import BASIS_NAMES
from lipsync.face_motion import EXPRESSION_WEIGHTS, IdleMotion
from lipsync.procedural_renderer import ProceduralRenderer

OUTPUT_RATE_HZ = 16000
FPS = 25
SAMPLES_PER_FRAME = OUTPUT_RATE_HZ // FPS  # 640: frame k covers samples [640k, 640(k+1))
EXPRESSION_TIME_CONSTANT_S = 0.15  # expressions ease toward their target with this time constant
# An idle frame is redrawn only when some pixel would move by at least this much since the last
# drawn one; below it the previous frame is shown again (the error never accumulates, the bound is
# against the drawn frame). Measured on the sample portrait: about half the idle draws saved.
IDLE_REDRAW_MIN_PX = 0.25


class StreamingLipSync:
    """One per live session; holds the session's frame counter, idle timeline and expression."""

    def __init__(self, renderer: ProceduralRenderer, seed: int = 0) -> None:
        if renderer.fps != FPS:
            raise ValueError(f"live output runs at {FPS} fps, the renderer at {renderer.fps}")
        self.renderer = renderer
        self.motion = IdleMotion(FPS, seed)
        self.next_frame = 0  # session frame index of the next frame this adapter produces
        self._pending = np.zeros(0, np.float32)  # samples that do not fill a whole frame yet
        self._target = np.zeros(len(BASIS_NAMES), np.float32)
        self._expression = np.zeros(len(BASIS_NAMES), np.float32)
        self._pixels_per_weight = renderer.warper.max_shift_px_per_unit
        self._last_idle: tuple[np.ndarray, np.ndarray] | None = None  # (weights, frame) last drawn
        # Replies render in a worker thread while the transport asks for idle frames on the event
        # loop: the counters and expression state change under this lock; drawing happens outside.
        self._lock = threading.Lock()

    def set_expression(self, emotion: str, strength: float = 1.0) -> None:
        """Ease toward this emotion from the next frame on (speaking or idle)."""
        if emotion not in EXPRESSION_WEIGHTS:
            raise ValueError(f"unknown emotion {emotion!r}; use one of {', '.join(EXPRESSION_WEIGHTS)}")
        self._target = self.renderer.expression_weights(emotion, strength)

    def _expression_rows(self, count: int) -> np.ndarray:
        alpha = 1.0 - np.exp(-1.0 / (FPS * EXPRESSION_TIME_CONSTANT_S))
        rows = np.empty((count, len(BASIS_NAMES)), np.float32)
        for k in range(count):
            self._expression += alpha * (self._target - self._expression)
            rows[k] = self._expression
        return rows

    def push(self, speech: Speech) -> tuple[np.ndarray, list[np.ndarray]]:
        """Render the whole frames this chunk completes: (audio, frames), len(audio) == 640 * len(frames)."""
        audio, weights = self.prepare(speech)
        return audio, self.draw(weights)

    def prepare(self, speech: Speech) -> tuple[np.ndarray, np.ndarray]:
        """Plan (cheap) the whole frames this chunk completes: (audio, one weight row per frame).

        Planning a whole sentence at once keeps its loudness normalisation and co-articulation
        consistent; `draw` can then render the rows in small batches so playback starts after
        the first batch instead of the whole sentence.

        Samples that do not complete a frame wait for the next chunk (or `flush`), so consecutive
        chunks join without gaps or clicks.
        """
        from avatar.core.audio_io import resample

        pcm = speech.audio.pcm.astype(np.float32)
        if speech.audio.sample_rate_hz != OUTPUT_RATE_HZ:
            pcm = resample(pcm, speech.audio.sample_rate_hz, OUTPUT_RATE_HZ)
        with self._lock:
            offset_s = len(self._pending) / OUTPUT_RATE_HZ
            audio = np.concatenate([self._pending, pcm])
            whole = len(audio) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
            self._pending = audio[whole:]
        if whole == 0:
            return np.zeros(0, np.float32), np.zeros((0, len(BASIS_NAMES)), np.float32)
        # Phoneme times are relative to this chunk; the carried samples play first.
        phonemes = tuple(
            type(p)(p.phoneme, p.start_s + offset_s, p.end_s + offset_s) for p in speech.phonemes
        )
        return self._plan(
            Speech(AudioChunk(audio[:whole], OUTPUT_RATE_HZ), speech.text, speech.language, phonemes)
        )

    def flush(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """End of a reply: pad the carried samples with silence to a whole frame and render it."""
        with self._lock:
            if len(self._pending) == 0:
                return np.zeros(0, np.float32), []
            padded = np.zeros(SAMPLES_PER_FRAME, np.float32)
            padded[: len(self._pending)] = self._pending
            self._pending = np.zeros(0, np.float32)
        audio, weights = self._plan(Speech(AudioChunk(padded, OUTPUT_RATE_HZ)))
        return audio, self.draw(weights)

    def reset(self) -> None:
        """Barge-in: forget carried audio; the face keeps its timeline and closes its mouth next frame."""
        with self._lock:
            self._pending = np.zeros(0, np.float32)

    def idle_frame(self, frame_index: int | None = None) -> np.ndarray:
        """A silent frame: closed mouth, current expression, blinks and sway at that session frame."""
        with self._lock:
            index = self.next_frame if frame_index is None else frame_index
            weights = self._expression_rows(1)
            self.renderer.add_idle_motion(weights, index, self.motion)
            if frame_index is None:
                self.next_frame += 1
            last = self._last_idle
        row = weights[0]
        if last is not None and float(np.abs(row - last[0]) @ self._pixels_per_weight) < IDLE_REDRAW_MIN_PX:
            return last[1]
        frame = self.renderer.draw(row)
        frame.flags.writeable = False  # may be shown again: nobody may paint on it
        with self._lock:
            self._last_idle = (row, frame)
        return frame

    def draw(self, weights: np.ndarray) -> list[np.ndarray]:
        """Frames for planned weight rows (thread-safe; the heavy part of rendering)."""
        return [self.renderer.draw(row) for row in weights]

    def _plan(self, speech: Speech) -> tuple[np.ndarray, np.ndarray]:
        count = len(speech.audio.pcm) // SAMPLES_PER_FRAME
        with self._lock:
            weights = self._expression_rows(count)
            start_frame = self.next_frame
            self.next_frame += count
            energy = self.renderer.add_mouth(weights, speech)
            self.renderer.add_idle_motion(weights, start_frame, self.motion, energy)
        return speech.audio.pcm, weights
