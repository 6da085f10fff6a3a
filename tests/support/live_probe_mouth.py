"""First moving mouth at the receiver, as a viewer sees it: a face landmarker on the received frames.

The probe's older "first lip-synced frame" is the video frame the sender paired with the first
voiced audio (matched through RTCP sender reports): it says when the renderer *meant* the mouth
to move, not whether it visibly did. Here the received pictures themselves are looked at: the
MediaPipe face landmarker (the same one the lip-sync tests use) measures the inner-lip gap, as a
fraction of face height, on every frame around the reply's start, and the mouth "moves" at the
first frame after the speech end whose gap leaves the idle range by a margin and stays out of it
for the next frame too (one frame alone can be a codec artefact).

Why these numbers:
* the idle range is taken from the frames received while the user spoke (the avatar listens with
  its mouth closed, blinking and swaying), so head motion and blinks are inside it;
* the margin, 1% of face height, is ~1/4 of the gap of an unstressed vowel in the procedural
  renderer and ~3x the frame-to-frame jitter of the landmarker on an idle face; a smile blending
  in (the reply's expression) widens the mouth without opening it, so it does not count;
* frames are kept at half resolution (256 px for a 512 px stream): the face fills most of the
  picture, and the landmarker finds it as reliably there as at full size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tests.support.lipsync_measure import mouth_opening

MOVING_MARGIN = 0.01  # inner-lip gap above the idle maximum, as a fraction of face height
IDLE_WINDOW_S = 1.5  # frames before the speech end that give the idle range
REPLY_WINDOW_S = 4.0  # frames after the speech end searched for the first moving mouth
CONFIRM_FRAMES = 2  # consecutive frames beyond the margin


@dataclass(frozen=True)
class ColourFrame:
    arrival_s: float  # time.monotonic() when recv() returned it
    bgr: np.ndarray  # half-resolution picture


@dataclass(frozen=True)
class MouthOnset:
    arrival_s: float | None  # arrival of the first moving-mouth frame (None: the mouth never moved)
    idle_max_gap: float  # idle maximum of the inner-lip gap / face height
    gap_at_onset: float | None
    frames_measured: int
    frames_without_face: int


def mouth_gaps(frames: Sequence[ColourFrame], landmarker) -> np.ndarray:
    """Inner-lip gap / face height per frame (NaN where the landmarker found no face)."""
    gaps = []
    for frame in frames:
        faces = landmarker.detect(frame.bgr)
        gaps.append(mouth_opening(faces[0].landmarks_px) if faces else np.nan)
    return np.array(gaps, dtype=np.float64)


def first_moving_mouth(frames: Sequence[ColourFrame], end_s: float, landmarker) -> MouthOnset:
    """The first frame after `end_s` whose mouth visibly opens beyond the idle range."""
    idle = [f for f in frames if end_s - IDLE_WINDOW_S <= f.arrival_s < end_s]
    reply = [f for f in frames if end_s <= f.arrival_s <= end_s + REPLY_WINDOW_S]
    if len(idle) < 5 or len(reply) < CONFIRM_FRAMES:
        raise ValueError(f"too few frames around the speech end: {len(idle)} idle, {len(reply)} after it")
    idle_gaps = mouth_gaps(idle, landmarker)
    reply_gaps = mouth_gaps(reply, landmarker)
    missing = int(np.isnan(idle_gaps).sum() + np.isnan(reply_gaps).sum())
    if np.all(np.isnan(idle_gaps)):
        raise ValueError("the landmarker found no face in the idle frames")
    idle_max = float(np.nanmax(idle_gaps))
    above = np.nan_to_num(reply_gaps, nan=-1.0) > idle_max + MOVING_MARGIN
    for index in range(len(reply) - CONFIRM_FRAMES + 1):
        if above[index : index + CONFIRM_FRAMES].all():
            return MouthOnset(
                reply[index].arrival_s, idle_max, float(reply_gaps[index]), len(idle) + len(reply), missing
            )
    return MouthOnset(None, idle_max, None, len(idle) + len(reply), missing)
