"""Life beyond the mouth: blinks, idle head motion and emotion-driven expressions, per frame.

Randomness comes from a seeded generator owned by the caller, so a render is reproducible and
two avatars on one server do not blink in lockstep.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np

from lipsync.deformation_basis import BASIS_INDEX, BASIS_NAMES

# Basis weights of each emotion at full strength.
EXPRESSION_WEIGHTS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile": 1.0, "lid_raise_lower": 0.25, "brow_raise": 0.15},
    "sad": {"frown": 0.9, "brow_inner_up": 1.0, "brow_raise": 0.2, "blink_left": 0.18, "blink_right": 0.18},
    "angry": {"brow_lower": 1.0, "lid_raise_lower": 0.55, "frown": 0.35, "lip_press": 0.25},
    "surprised": {
        "brow_raise": 1.0,
        "brow_inner_up": 0.7,  # the inner ends rise most (FACS AU1 + AU2)
        "blink_left": -0.32,
        "blink_right": -0.32,
        "jaw_open": 0.12,
    },
}
EXPRESSION_BLEND_S = 0.6  # time to blend from one expression to the next
BLINK_PROFILE = (0.45, 1.0, 0.85, 0.45, 0.15)  # eyelid closure over the frames of one blink


INTENSITY_EXPONENT = 0.5  # share of the full weights shown = intensity ** this


def intensity_scale(intensity: float) -> float:
    """Share of an emotion's full basis weights shown at `intensity` 0..1 ("[happy:0.3]").

    Not linear: the first third of a smile's corner lift does not read as a smile. Measured on
    the bundled portrait, the landmarker's smile score at 0.2 / 0.3 / 0.5 / 1.0 of the smile
    basis was 0.006 / 0.018 / 0.135 / 0.54 (0.001 neutral), so a linear "[happy:0.3]" looked
    neutral. The square root gives 0.3 about 55% of the weights, which reads as a mild smile."""
    return float(np.clip(intensity, 0.0, 1.0)) ** INTENSITY_EXPONENT


def emotion_weights(emotion: str, strength: float = 1.0) -> np.ndarray:
    """Basis weight vector of one emotion (design weights, no face scaling)."""
    weights = np.zeros(len(BASIS_NAMES), np.float32)
    for name, value in EXPRESSION_WEIGHTS[emotion].items():
        weights[BASIS_INDEX[name]] = value * intensity_scale(strength)
    return weights


def expression_track(
    emotion_spans: list[tuple],
    frame_count: int,
    fps: int,
    weights_of: Callable[[str, float], np.ndarray] = emotion_weights,
) -> np.ndarray:
    """(frames, bases) weights, blended smoothly at changes.

    Each span is (start_s, end_s, emotion) or (start_s, end_s, emotion, intensity 0..1);
    `weights_of(emotion, intensity)` gives the target weights (a renderer passes its face's own)."""
    target = np.zeros((frame_count, len(BASIS_NAMES)), np.float32)
    times = (np.arange(frame_count) + 0.5) / fps

    def of(span: tuple) -> np.ndarray:
        return weights_of(span[2], float(span[3]) if len(span) > 3 else 1.0)

    for span in emotion_spans:
        target[(times >= span[0]) & (times < span[1])] = of(span)
    if emotion_spans:
        target[times >= emotion_spans[-1][1]] = of(emotion_spans[-1])
    # Raised-cosine smoothing: a moving average twice makes the changes ease in and out.
    width = max(1, int(round(EXPRESSION_BLEND_S * fps / 2)))
    kernel = np.ones(width) / width
    for _ in range(2):
        padded = np.pad(target, ((width, width), (0, 0)), mode="edge")
        target = np.stack(
            [np.convolve(padded[:, j], kernel, mode="same")[width:-width] for j in range(target.shape[1])],
            axis=1,
        )
    return target.astype(np.float32)


class IdleMotion:
    """Blinks and head sway as functions of a global frame index.

    A live session renders sentence after sentence and idles in between; drawing blinks and sway
    from one timeline keyed by the session's frame counter joins the pieces without jumps.
    Blink times are drawn lazily from the seeded generator, so the timeline is reproducible.
    """

    SWAY_AMPLITUDES = (0.9, 1.0, 0.7)  # roll in degrees, x and y shift in % of face size
    SWAY_PERIODS_S = (7.3, 3.1, 1.7)

    def __init__(self, fps: int, seed: int) -> None:
        self.fps = fps
        self._rng = np.random.default_rng(seed)
        shape = (len(self.SWAY_AMPLITUDES), len(self.SWAY_PERIODS_S))
        self._phases = self._rng.uniform(0, 2 * np.pi, shape)
        self._periods_s = np.array(self.SWAY_PERIODS_S) * self._rng.uniform(0.85, 1.15, shape)
        self._blink_starts: list[int] = []
        self._next_blink_s = self._rng.uniform(0.8, 2.5)

    def _schedule_blinks_until(self, frame: int) -> None:
        while self._next_blink_s * self.fps <= frame:
            self._blink_starts.append(int(self._next_blink_s * self.fps))
            double = self._rng.random() < 0.15
            gap_s = 0.12 if double else self._rng.uniform(2.0, 6.0)
            self._next_blink_s += len(BLINK_PROFILE) / self.fps + gap_s

    def blinks(self, start_frame: int, count: int) -> np.ndarray:
        """Eyelid closure 0..1 for frames [start_frame, start_frame + count)."""
        self._schedule_blinks_until(start_frame + count)
        closure = np.zeros(count, np.float32)
        # Only the blinks overlapping these frames (the list is in time order): a livestream
        # collects ~900 blinks an hour, and scanning all of them for every frame grew without end.
        first = bisect.bisect_left(self._blink_starts, start_frame - len(BLINK_PROFILE) + 1)
        last = bisect.bisect_left(self._blink_starts, start_frame + count)
        for blink_start in self._blink_starts[first:last]:
            for i, value in enumerate(BLINK_PROFILE):
                k = blink_start + i - start_frame
                if 0 <= k < count:
                    closure[k] = max(closure[k], value)
        return closure

    def sway(self, start_frame: int, count: int) -> np.ndarray:
        """(count, 3) slow head sway: roll degrees, x and y shift in % of face size."""
        times = (start_frame + np.arange(count)) / self.fps
        motion = np.zeros((count, 3), np.float32)
        for axis, amplitude in enumerate(self.SWAY_AMPLITUDES):
            for j in range(len(self.SWAY_PERIODS_S)):
                motion[:, axis] += (
                    amplitude
                    / 3
                    * np.sin(2 * np.pi * times / self._periods_s[axis, j] + self._phases[axis, j])
                )
        return motion


def speech_nod(speech_energy: np.ndarray, fps: int) -> np.ndarray:
    """Vertical head dip (in % of face height) following the smoothed speech energy."""
    width = max(1, int(0.3 * fps))
    smoothed = np.convolve(speech_energy, np.ones(width) / width, mode="full")
    start = (width - 1) // 2  # centred, and as long as the input even when shorter than the window
    return 1.2 * smoothed[start : start + len(speech_energy)]
