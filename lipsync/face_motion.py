"""Life beyond the mouth: blinks, idle head motion and emotion-driven expressions, per frame.

Randomness comes from a seeded generator owned by the caller, so a render is reproducible and
two avatars on one server do not blink in lockstep.
"""

from __future__ import annotations

import numpy as np

from lipsync.deformation_basis import BASIS_INDEX, BASIS_NAMES

# Basis weights of each emotion at full strength.
EXPRESSION_WEIGHTS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile": 1.0, "lid_raise_lower": 0.25, "brow_raise": 0.15},
    "sad": {"frown": 0.9, "brow_inner_up": 1.0, "blink_left": 0.18, "blink_right": 0.18},
    "angry": {"brow_lower": 1.0, "lid_raise_lower": 0.55, "frown": 0.35, "lip_press": 0.25},
    "surprised": {"brow_raise": 1.0, "blink_left": -0.28, "blink_right": -0.28, "jaw_open": 0.12},
}
EXPRESSION_BLEND_S = 0.6  # time to blend from one expression to the next
BLINK_PROFILE = (0.45, 1.0, 0.85, 0.45, 0.15)  # eyelid closure over the frames of one blink


def emotion_weights(emotion: str, strength: float = 1.0) -> np.ndarray:
    """Basis weight vector of one emotion."""
    weights = np.zeros(len(BASIS_NAMES), np.float32)
    for name, value in EXPRESSION_WEIGHTS[emotion].items():
        weights[BASIS_INDEX[name]] = value * strength
    return weights


def expression_track(emotion_spans: list[tuple[float, float, str]], frame_count: int, fps: int) -> np.ndarray:
    """(frames, bases) weights; each span is (start_s, end_s, emotion), blended smoothly at changes."""
    target = np.zeros((frame_count, len(BASIS_NAMES)), np.float32)
    times = (np.arange(frame_count) + 0.5) / fps
    for start_s, end_s, emotion in emotion_spans:
        target[(times >= start_s) & (times < end_s)] = emotion_weights(emotion)
    if emotion_spans:
        last_end, last_emotion = emotion_spans[-1][1], emotion_spans[-1][2]
        target[times >= last_end] = emotion_weights(last_emotion)
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


def blink_track(frame_count: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure 0..1 per frame: blinks every 2-6 s, sometimes a double blink."""
    closure = np.zeros(frame_count, np.float32)
    t = rng.uniform(0.8, 2.5)
    while True:
        start = int(t * fps)
        if start >= frame_count:
            break
        for i, value in enumerate(BLINK_PROFILE):
            if start + i < frame_count:
                closure[start + i] = max(closure[start + i], value)
        t += len(BLINK_PROFILE) / fps + (0.12 if rng.random() < 0.15 else rng.uniform(2.0, 6.0))
    return closure


def head_motion_track(
    frame_count: int, fps: int, rng: np.random.Generator, speech_energy: np.ndarray | None = None
) -> np.ndarray:
    """(frames, 3) roll in degrees, x and y shift in % of face size: slow sway plus speech nods."""
    times = np.arange(frame_count) / fps
    motion = np.zeros((frame_count, 3), np.float32)
    amplitudes = (0.9, 1.0, 0.7)
    for axis, amplitude in enumerate(amplitudes):
        for period_s in (7.3, 3.1, 1.7):
            phase = rng.uniform(0, 2 * np.pi)
            period = period_s * rng.uniform(0.85, 1.15)
            motion[:, axis] += amplitude / 3 * np.sin(2 * np.pi * times / period + phase)
    if speech_energy is not None and len(speech_energy) == frame_count:
        width = max(1, int(0.3 * fps))
        nod = np.convolve(speech_energy, np.ones(width) / width, mode="same")
        motion[:, 2] += 1.2 * nod  # the head dips slightly on emphasis
    return motion
