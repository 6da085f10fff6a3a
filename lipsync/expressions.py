"""Emotions scaled to the face they are shown on.

One fixed set of basis weights reads well on one portrait and barely at all on another: a photo
that already smiles has no smile left to add, lips parted in the photo hide a corner lift, a
moustache covers the lips, a narrow mouth moves little in mouth-width units, and a small or
painted face shows a 2-pixel brow lift to nobody. `ExpressionProfile` derives per-face gains from
the face's own geometry and starting state (the landmarker's blendshapes of the photo), so every
emotion moves each face by a visible amount, measured in the face's own height, and stops short
of tearing (the gains are capped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipsync import face_mesh_indices as fm
from lipsync.deformation_basis import BASIS_INDEX, BASIS_NAMES
from lipsync.face_geometry import FaceGeometry
from lipsync.face_motion import EXPRESSION_WEIGHTS, intensity_scale

# A reference face: mouth width / face height and eye opening / face height of a typical frontal
# adult portrait. The bases move in mouth-width and eye-opening units; a face that departs from
# these proportions is brought back to the same motion in face-height units.
TYPICAL_MOUTH_TO_FACE = 0.36
TYPICAL_EYE_TO_FACE = 0.045
TYPICAL_BROW_TO_EYE = 0.075
BROW_RAISE_GAIN = 1.2
BROW_DOWN_GAIN = 0.3  # more lowering per unit of browDown the photo already shows
SMALL_FACE_PX = 160.0  # below this face height a few pixels of motion vanish in the pixel grid
MAX_GAIN = 1.8
UNSMILE = {
    "sad": 1.1,
    "angry": 0.4,
    "surprised": 0.5,
}  # share of the photo's smile taken back  # no basis is pushed past this multiple of its design weight (tearing)


def _pair(blendshapes: dict[str, float], name: str) -> float:
    return 0.5 * (blendshapes.get(f"{name}Left", 0.0) + blendshapes.get(f"{name}Right", 0.0))


def _brow_to_eye(geometry: FaceGeometry) -> float:
    lm = geometry.landmarks
    gaps = [
        float((lm[list(lid)].mean(axis=0) - lm[list(brow)].mean(axis=0)) @ geometry.face.v)
        for brow, lid in ((fm.RIGHT_BROW, fm.RIGHT_EYE_UPPER_LID), (fm.LEFT_BROW, fm.LEFT_EYE_UPPER_LID))
    ]
    return max(float(np.mean(gaps)), 1.0) / geometry.face_height_px


@dataclass(frozen=True)
class FaceState:
    """What the photo already shows, from the landmarker's blendshapes and the geometry."""

    smile: float
    frown: float
    jaw_open: float
    brow_up: float
    brow_down: float
    eye_wide: float
    squint: float
    lip_gap: float  # inner-lip gap / face height
    mouth_to_face: float
    eye_to_face: float
    face_height_px: float
    brow_to_eye: float  # brow centre above the upper lid / face height: the room brows move in

    @classmethod
    def measure(cls, geometry: FaceGeometry, blendshapes: dict[str, float]) -> FaceState:
        lm = geometry.landmarks
        gap_px = float((lm[fm.INNER_LIP_MID_LOWER] - lm[fm.INNER_LIP_MID_UPPER]) @ geometry.mouth.v)
        fh = geometry.face_height_px
        return cls(
            smile=_pair(blendshapes, "mouthSmile"),
            frown=_pair(blendshapes, "mouthFrown"),
            jaw_open=blendshapes.get("jawOpen", 0.0),
            brow_up=blendshapes.get("browInnerUp", 0.0),
            brow_down=_pair(blendshapes, "browDown"),
            eye_wide=_pair(blendshapes, "eyeWide"),
            squint=_pair(blendshapes, "eyeSquint"),
            lip_gap=max(gap_px, 0.0) / fh,
            mouth_to_face=geometry.mouth_width_px / fh,
            eye_to_face=0.5 * (geometry.right_eye_open_px + geometry.left_eye_open_px) / fh,
            face_height_px=fh,
            brow_to_eye=_brow_to_eye(geometry),
        )


class ExpressionProfile:
    """Per-face emotion weights: `weights(emotion, intensity)` -> basis weight vector."""

    def __init__(self, state: FaceState) -> None:
        self.state = state
        self._gains = {emotion: self._gains_for(emotion) for emotion in EXPRESSION_WEIGHTS}

    @classmethod
    def for_face(cls, geometry: FaceGeometry, blendshapes: dict[str, float]) -> ExpressionProfile:
        return cls(FaceState.measure(geometry, blendshapes))

    def _gains_for(self, emotion: str) -> dict[str, float]:
        """Design weight x gain per basis; each factor says which part of the face hides what."""
        s = self.state
        # Mouth bases move in mouth widths: a narrow mouth needs more to move the corners by the
        # same share of the face, a wide one less.
        mouth_units = float(np.clip(TYPICAL_MOUTH_TO_FACE / max(s.mouth_to_face, 1e-3), 0.8, 1.5))
        eye_units = float(np.clip(TYPICAL_EYE_TO_FACE / max(s.eye_to_face, 1e-3), 0.8, 1.4))
        small = float(np.clip((SMALL_FACE_PX / s.face_height_px) ** 0.5, 1.0, 1.3))
        # Brows high above the eyes must come down further to read as lowered; low, heavy brows
        # (or a smiling photo's squint) must go up further to read as raised.
        brow_room = float(np.clip(s.brow_to_eye / TYPICAL_BROW_TO_EYE, 0.6, 1.8))
        # A smiling photo's squint bunches the skin between brow and eye: brows moved there by
        # the usual amount do not read, in either direction.
        squinting = 1.0 + 0.5 * min(s.squint, 1.0)
        parted = s.lip_gap > 0.012 or s.jaw_open > 0.15  # lips apart in the photo hide a corner lift
        factors: dict[str, float] = {
            # an already smiling photo needs less added smile; parted lips need more
            "smile": mouth_units * (1.0 - 0.5 * min(s.smile, 1.0)) * (1.5 if parted else 1.0),
            # pulling a smiling mouth down far enough to read as sad takes more
            "frown": mouth_units * (1.0 + 1.2 * min(s.smile, 1.0)),
            "lip_wide": mouth_units,
            "lip_round": mouth_units,
            # Raised brows stretch the skin between brow and lid: a low brow over a squint has
            # little of it, and pulled further the lid's shadow smears up into a second brow.
            "brow_raise": min(brow_room, 1.0) * BROW_RAISE_GAIN,
            "brow_inner_up": min(brow_room, 1.0) * BROW_RAISE_GAIN,
            # Brows that already read as lowered (a grin's squint pulls them down: Obama's photo
            # scores browDown 0.84) sit near the top of what a tracker reads; a frown must go
            # further to show on top of them. Raised brows in the photo have their own way to go.
            "brow_lower": (1.0 + 0.4 * min(s.brow_up, 1.0) + BROW_DOWN_GAIN * min(s.brow_down, 1.0))
            * squinting**2
            * brow_room,
            "blink_left": eye_units,
            "blink_right": eye_units,
            "lid_raise_lower": eye_units,
        }
        gains = {}
        for name, value in EXPRESSION_WEIGHTS[emotion].items():
            factor = factors.get(name, 1.0)
            if name.startswith("blink") and value < 0:
                # Widening a squinting eye has no white to reveal: it drags the lid's shadow up.
                factor = min(eye_units, 1.0) * (1.0 - 0.5 * min(s.squint, 1.0))
            gains[name] = value * min(factor * small, MAX_GAIN)
        # A photo taken grinning keeps grinning under a frown: sad, angry and surprised first take
        # back part of the photo's own smile (corners down and in, cheeks down).
        if emotion in UNSMILE and s.smile > 0.2:
            gains["smile"] = gains.get("smile", 0.0) - UNSMILE[emotion] * min(s.smile, 1.0) * mouth_units
        return gains

    def weights(self, emotion: str, intensity: float = 1.0) -> np.ndarray:
        if emotion not in self._gains:
            raise ValueError(f"unknown emotion {emotion!r}; use one of {', '.join(EXPRESSION_WEIGHTS)}")
        vector = np.zeros(len(BASIS_NAMES), np.float32)
        share = intensity_scale(intensity)
        for name, value in self._gains[emotion].items():
            vector[BASIS_INDEX[name]] = value * share
        return vector
