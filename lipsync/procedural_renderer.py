"""The embedded lip-sync renderer: one photo + speech -> frames, on the CPU, no network weights.

It plans every frame's deformation weights first (mouth from phonemes or loudness, expression
spans, blinks, head sway), then draws each frame with one warp and the inner-mouth painter.
Planning ahead is what lets the mouth anticipate speech without lagging the audio.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from avatar.core.types import Speech
from lipsync import face_mesh_indices as fm
from lipsync.audio_features import FrameFeatures, frame_count_for, measure_frames
from lipsync.avatar_assets import AvatarAssets
from lipsync.deformation_basis import BASIS_INDEX, BASIS_NAMES
from lipsync.expressions import ExpressionProfile
from lipsync.face_motion import IdleMotion, expression_track, speech_nod
from lipsync.face_warp import FaceWarper
from lipsync.inner_mouth import InnerMouthPainter
from lipsync.mouth_track import MouthTrack, loudness_openness, track_from_audio, track_from_phonemes

DEFAULT_FPS = 25
PHOTO_OPEN_GAP = 0.012  # inner-lip gap / face height above which the photo mouth counts as open
PHOTO_TEETH_GAP = 0.03  # ... and above which it shows teeth (a broad smile)

JAW_PER_OPEN = 0.62  # jaw_open weight for a fully open mouth track
JAW_GAP = 0.12  # inner-lip gap / face height that jaw_open = 1 adds
WIDEST_SPEECH_GAP = 0.10  # a wide-open speaking mouth, inner-lip gap / face height (GRID: 10-12%)
EmotionSpans = list[tuple]  # (start_s, end_s, emotion) or (start_s, end_s, emotion, intensity 0..1)


class ProceduralRenderer:
    """Create once per avatar (it samples the deformation fields), then render many clips."""

    def __init__(self, assets: AvatarAssets, fps: int = DEFAULT_FPS, seed: int = 0) -> None:
        self.assets = assets
        self.fps = fps
        self.seed = seed
        self.warper = FaceWarper(assets)
        self.painter = InnerMouthPainter(assets.image_bgr, self.warper.geometry)
        geometry = self.warper.geometry
        lm = geometry.landmarks
        gap_px = float((lm[fm.INNER_LIP_MID_LOWER] - lm[fm.INNER_LIP_MID_UPPER]) @ geometry.mouth.v)
        gap_fraction = gap_px / geometry.face_height_px
        # A photo taken mid-word shows slightly parted lips: silence must press them shut. A broad
        # smile showing teeth is different: squashing real teeth looks worse than keeping them, so
        # its rest pose is the photo's own mouth; opening stretches the real teeth a little, and
        # beyond that the painted inside fades in (stretched lips would read as a tongue).
        self.photo_shows_teeth = bool(gap_fraction > PHOTO_TEETH_GAP)
        self.photo_mouth_open = bool(gap_fraction > PHOTO_OPEN_GAP) and not self.photo_shows_teeth
        self.painter.photo_gap_px = max(gap_px, 0.0)
        # A mouth already open in the photo (its rest pose when it shows teeth) has less left to
        # open before it passes a wide-open speaking mouth (GRID speakers: 10-12% of face height).
        rest_gap = gap_fraction if self.photo_shows_teeth else 0.0
        self.jaw_room = float(np.clip((WIDEST_SPEECH_GAP - rest_gap) / (JAW_PER_OPEN * JAW_GAP), 0.35, 1.0))
        self.expressions = ExpressionProfile.for_face(geometry, assets.blendshapes)

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.assets.size_wh

    def mouth_track(self, speech: Speech, frame_count: int) -> tuple[MouthTrack, FrameFeatures]:
        audio = speech.audio
        features = measure_frames(audio.pcm, audio.sample_rate_hz, self.fps, frame_count)
        if speech.phonemes:
            return track_from_phonemes(speech.phonemes, features, self.fps), features
        return track_from_audio(features, self.fps), features

    def plan(
        self,
        speech: Speech,
        emotion_spans: EmotionSpans | None = None,
        start_frame: int = 0,
        motion: IdleMotion | None = None,
    ) -> np.ndarray:
        """(frames, bases) weights covering the whole speech at the video rate.

        `start_frame` and `motion` place the clip on a longer timeline (a live session), so its
        blinks and sway continue those of the previous clip.
        """
        audio = speech.audio
        frame_count = frame_count_for(len(audio.pcm), audio.sample_rate_hz, self.fps)
        weights = self.expression_plan(emotion_spans, frame_count)
        energy = self.add_mouth(weights, speech)
        self.add_idle_motion(weights, start_frame, motion or IdleMotion(self.fps, self.seed), energy)
        return weights

    def expression_weights(self, emotion: str, intensity: float = 1.0) -> np.ndarray:
        """This face's basis weights for one emotion (scaled to its geometry and starting state)."""
        return self.expressions.weights(emotion, intensity)

    def expression_plan(self, emotion_spans: EmotionSpans | None, frame_count: int) -> np.ndarray:
        """(frames, bases) expression weights only, blended in and out at span changes."""
        spans = emotion_spans or [(0.0, frame_count / self.fps, "neutral")]
        return expression_track(spans, frame_count, self.fps, self.expression_weights)

    def add_mouth(self, weights: np.ndarray, speech: Speech) -> np.ndarray:
        """Add the mouth track for `speech` to `weights` (one row per frame); returns speech energy."""
        mouth, features = self.mouth_track(speech, len(weights))
        self._add_mouth(weights, mouth)
        return loudness_openness(features)

    def add_idle_motion(
        self, weights: np.ndarray, start_frame: int, motion: IdleMotion, energy: np.ndarray | None = None
    ) -> None:
        """Blinks (on top of any expression's lid position), head sway and speech nods."""
        count = len(weights)
        blinks = motion.blinks(start_frame, count)
        for eye in ("blink_left", "blink_right"):
            column = weights[:, BASIS_INDEX[eye]]
            weights[:, BASIS_INDEX[eye]] = np.clip(
                column + blinks * (1.0 - np.maximum(column, 0.0)), -0.5, 1.0
            )
        head = motion.sway(start_frame, count)
        if energy is not None and len(energy) == count:
            head[:, 2] += speech_nod(energy, self.fps)
        weights[:, BASIS_INDEX["head_roll"]] += head[:, 0]
        weights[:, BASIS_INDEX["head_tx"]] += head[:, 1]
        weights[:, BASIS_INDEX["head_ty"]] += head[:, 2]

    def _add_mouth(self, weights: np.ndarray, mouth: MouthTrack) -> None:
        """Jaw and lips separately: the jaw opens by `open`; `press` closes the lips over it."""
        jaw = JAW_PER_OPEN * self.jaw_room * mouth.open
        weights[:, BASIS_INDEX["jaw_open"]] += jaw
        weights[:, BASIS_INDEX["lip_seal"]] += jaw * np.clip(mouth.press, 0.0, 1.0)
        weights[:, BASIS_INDEX["lip_wide"]] += 0.8 * mouth.wide
        weights[:, BASIS_INDEX["lip_round"]] += 0.8 * mouth.round
        weights[:, BASIS_INDEX["upper_lip_raise"]] += 0.5 * mouth.teeth
        press = mouth.press
        if self.photo_mouth_open:
            press = np.maximum(press, 1.0 - np.clip(mouth.open / 0.25, 0.0, 1.0))
        weights[:, BASIS_INDEX["lip_press"]] += press

    def draw(self, weights: np.ndarray) -> np.ndarray:
        """One BGR frame for one weight vector."""
        image = self.warper.warp(weights)
        return self.painter.paint(image, self.warper.moved_landmarks(weights))

    def render(self, speech: Speech, emotion_spans: EmotionSpans | None = None) -> Iterator[np.ndarray]:
        """Frames for the speech, lazily, so the writer can stream them to the encoder."""
        for weights in self.plan(speech, emotion_spans):
            yield self.draw(weights)


def zero_weights() -> np.ndarray:
    return np.zeros(len(BASIS_NAMES), np.float32)
