"""A picture of what the preparation found: face box, landmarks, mouth and eye contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar.core.errors import InputError
from lipsync import face_mesh_indices as fm
from lipsync.avatar_assets import AvatarAssets


def draw_preview(assets: AvatarAssets, output_path: Path) -> np.ndarray:
    """Draw the detection on a copy of the photo and save it (PNG/JPEG by extension)."""
    import cv2

    image = draw_detection(assets)
    if not cv2.imwrite(str(output_path), image):
        raise InputError(f"cannot write preview image {output_path}", "check the folder and use .png or .jpg")
    return image


def draw_detection(assets: AvatarAssets) -> np.ndarray:
    """The photo (BGR copy) with every landmark, the lip/eye/face contours and the face box.

    Separate from saving so the web console can show the picture without a file round trip.
    """
    import cv2

    image = assets.image_bgr.copy()
    lm = assets.landmarks_px[:, :2]
    for x, y in lm[:468]:
        cv2.circle(image, (int(x), int(y)), 1, (200, 200, 200), -1, cv2.LINE_AA)
    for x, y in lm[468:]:  # the two irises
        cv2.circle(image, (int(x), int(y)), 1, (230, 160, 40), -1, cv2.LINE_AA)
    for ids, color in (
        (fm.LIPS_OUTER, (60, 60, 230)),
        (fm.RIGHT_EYE, (230, 160, 40)),
        (fm.LEFT_EYE, (230, 160, 40)),
        (fm.FACE_OVAL, (80, 200, 80)),
    ):
        cv2.polylines(image, [np.round(lm[list(ids)]).astype(np.int32)], True, color, 1, cv2.LINE_AA)
    x0, y0, x1, y1 = (int(v) for v in assets.face_box_xyxy)
    cv2.rectangle(image, (x0, y0), (x1, y1), (0, 220, 255), 2)
    return image


def draw_fan_preview(photo_path: Path, output_path: Path, landmarker) -> int:
    """The 68 face-alignment (2D-FAN) points of every face on the photo, saved; returns the face count.

    `landmarker` is a `lipsync.landmarks_fan.FanLandmarker` (loaded here, closed when done; the
    engine layer builds it with its weight files). The procedural renderer needs MediaPipe's
    478-point mesh, so FAN does not drive rendering: this picture lets a user compare the two
    landmarkers on their own photo."""
    import cv2

    from lipsync.avatar_assets import read_photo

    image = read_photo(Path(photo_path))
    with landmarker:
        faces = landmarker.detect(image)
    if not faces:
        raise InputError(
            f"face-alignment found no face in {Path(photo_path).name}", "use a clear frontal photo"
        )
    canvas = image.copy()
    radius = max(1, round(max(image.shape[:2]) / 400))
    for index, points in enumerate(faces):
        colour = (0, 255, 0) if index == 0 else (0, 160, 255)  # the face that would be animated first
        for x, y in points:
            cv2.circle(canvas, (round(float(x)), round(float(y))), radius, colour, -1, cv2.LINE_AA)
    if not cv2.imwrite(str(output_path), canvas):
        raise InputError(f"cannot write preview image {output_path}", "check the folder and use .png or .jpg")
    return len(faces)
