"""Expressions measured the way a viewer's face tracker sees them (tests and bench/face_expressions.py).

The renderer plans a silent lead-in and a held open vowel once per emotion; two frames are drawn
(mouth closed after the expression blended in, mouth open mid-vowel) and the landmarker's
blendshapes of each are reduced to the scores the rules of issue 14 talk about.
"""

from __future__ import annotations

import numpy as np

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised")
FPS = 25
VOWEL_START_S, VOWEL_END_S, TOTAL_S = 1.8, 2.7, 3.2
MIN_SMILE_GAIN = 0.15
SMILING_ALREADY = 0.9
ALREADY_HIGH = 0.8  # a neutral score this high leaves no room for +MIN_RAISE: reaching 0.9 counts
MIN_RAISE = 0.05  # angry, surprised and sad must move their scores by at least this much


def vowel_speech():
    """Silence, then a loud harmonic vowel held for 0.9 s, with its phoneme timing."""
    from avatar.core.types import AudioChunk, PhonemeTiming, Speech

    rate = 16000
    t = np.arange(int(TOTAL_S * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    on = (t >= VOWEL_START_S) & (t < VOWEL_END_S)
    pcm = np.where(on, 0.25 * voice / np.max(np.abs(voice)), 0.0).astype(np.float32)
    phonemes = (PhonemeTiming("ɑ", VOWEL_START_S, VOWEL_END_S),)
    return Speech(AudioChunk(pcm, rate), "ah", "en", phonemes)


def frame_off_blink(seed: int, count: int, time_s: float) -> int:
    """The frame index nearest `time_s` that no blink of the seeded idle timeline touches."""
    from lipsync.face_motion import IdleMotion

    blinks = IdleMotion(FPS, seed).blinks(0, count)
    frame = int(time_s * FPS)
    for step in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5):
        if blinks[frame + step] == 0:
            return frame + step
    return frame


def frames_without_blink(seed: int, count: int) -> tuple[int, int]:
    """(closed, open) frame indices: the expression blended in, and mid-vowel."""
    return frame_off_blink(seed, count, 1.55), frame_off_blink(seed, count, 2.3)


def scores(blendshapes: dict[str, float]) -> dict[str, float]:
    b = blendshapes

    def pair(name: str) -> float:
        return 0.5 * (b.get(f"{name}Left", 0.0) + b.get(f"{name}Right", 0.0))

    return {
        "smile": pair("mouthSmile"),
        "browDown": pair("browDown"),
        "browInnerUp": b.get("browInnerUp", 0.0),
        "eyeWide": pair("eyeWide"),
        "mouthFrown": pair("mouthFrown"),
        "eyeSquint": pair("eyeSquint"),
        "cheekSquint": pair("cheekSquint"),
        "jawOpen": b.get("jawOpen", 0.0),
    }


def verdicts(by_emotion: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Issue 14's rules, each with a margin a viewer could see (MIN_RAISE on a 0..1 score)."""
    n = by_emotion["neutral"]

    def raised(emotion: str, key: str) -> bool:
        """Up by MIN_RAISE, or, where the photo already scores high, up to SMILING_ALREADY (the
        issue's own rule for a photo that already smiles, applied to every score)."""
        after = by_emotion[emotion][key]
        return after >= n[key] + MIN_RAISE or (n[key] >= ALREADY_HIGH and after >= SMILING_ALREADY)

    happy = by_emotion["happy"]["smile"]
    return {
        "happy": happy >= n["smile"] + MIN_SMILE_GAIN or happy >= SMILING_ALREADY,
        "angry": raised("angry", "browDown"),
        "surprised": raised("surprised", "browInnerUp") or raised("surprised", "eyeWide"),
        "sad": raised("sad", "browInnerUp") or raised("sad", "mouthFrown"),
    }


def render_emotions(renderer, landmarker, seed: int, emotions=EMOTIONS, intensity: float = 1.0):
    """({"closed"|"open": {emotion: scores}}, {(emotion, mouth): frame}) for one renderer."""
    speech = vowel_speech()
    closed, opened = frames_without_blink(seed, int(TOTAL_S * FPS))
    table: dict[str, dict[str, dict[str, float]]] = {"closed": {}, "open": {}}
    frames = {}
    for emotion in emotions:
        span = (0.0, TOTAL_S + 1.0, emotion) if intensity == 1.0 else (0.0, TOTAL_S + 1.0, emotion, intensity)
        weights = renderer.plan(speech, [span])
        for mouth, index in (("closed", closed), ("open", opened)):
            frame = renderer.draw(weights[index])
            faces = landmarker.detect(frame)
            table[mouth][emotion] = scores(faces[0].blendshapes) if faces else {}
            table[mouth][emotion]["fold_margin"] = fold_margin(renderer, weights[index])
            table[mouth][emotion]["stretch"] = stretch_margin(renderer, weights[index])
            frames[(emotion, mouth)] = frame
    return table, frames


def script_scores(renderer, landmarker, script: str, seed: int) -> dict[str, float]:
    """Scores of a closed-mouth frame of `script` rendered the way `avatar render` renders a text:
    the tag parser, `lay_out_pieces`, `text_windows` and `window_frames`, with the held vowel of
    `vowel_speech` standing in for the voice. What a video shows for "[happy:0.3] ..." is
    measured here, not what the renderer does when handed a span directly."""
    from itertools import islice

    from avatar.core.text_script import parse_script, split_sentences
    from avatar.render.windows import text_windows, window_frames
    from avatar.speech.assembly import LEAD_IN_S, lay_out_pieces
    from lipsync.face_motion import IdleMotion

    def same_rate(pcm, from_hz: int, to_hz: int):
        raise AssertionError(f"one voice, one rate: asked to resample {from_hz} -> {to_hz} Hz")

    pieces = lay_out_pieces(
        parse_script(script), lambda text, emotion: vowel_speech(), split_sentences, same_rate
    )
    window = next(text_windows(pieces, FPS))
    closed = frame_off_blink(seed, window.frame_count, LEAD_IN_S + 1.55)
    frame = next(islice(window_frames(renderer, window, IdleMotion(FPS, seed)), closed, None))
    faces = landmarker.detect(frame)
    if not faces:
        raise AssertionError(f"the landmarker found no face in the render of {script!r}")
    return scores(faces[0].blendshapes)


def _area_ratios(renderer, weights: np.ndarray) -> np.ndarray:
    """Local area ratio det(I + J) of the frame's deformation at every node of the warp's grid:
    1 = no stretch; near 0 the warp squeezes pixels together; below 0 it folds over (tears)."""
    warper = renderer.warper
    field = (weights.astype(np.float32) @ warper._fields).reshape(*warper._coarse_shape, 2)
    step = float(warper._field_step)
    dxdy = np.gradient(field[..., 0], step, axis=0)
    dxdx = np.gradient(field[..., 0], step, axis=1)
    dydy = np.gradient(field[..., 1], step, axis=0)
    dydx = np.gradient(field[..., 1], step, axis=1)
    return (1 + dxdx) * (1 + dydy) - dxdy * dydx


def fold_margin(renderer, weights: np.ndarray) -> float:
    """Smallest local area ratio over the head region: below 0 the warp tears."""
    return float(_area_ratios(renderer, weights).min())


def stretch_margin(renderer, weights: np.ndarray) -> float:
    """Largest local area ratio of the deformation: well above 2 a feature is smeared over its
    neighbour (a brow pulled into a second brow, a lid's shadow dragged up)."""
    return float(_area_ratios(renderer, weights).max())
