"""Photo preparation: landmarks found, sizes handled, cache reused, every bad photo explained."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.core.errors import InputError
from lipsync.avatar_assets import prepare_avatar
from tests.conftest import SAMPLE_PORTRAIT, eval_file


def test_sample_portrait_prepares_with_478_landmarks(sample_assets):
    assert sample_assets.landmarks_px.shape == (478, 3)
    width, height = sample_assets.size_wh
    assert max(width, height) == 512 and width % 2 == 0 and height % 2 == 0
    x0, y0, x1, y1 = sample_assets.face_box_xyxy
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert len(sample_assets.blendshapes) == 52
    assert sample_assets.notes == ()


class CountingLandmarker:
    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return self.inner.detect(image)


def test_preparation_is_cached_on_disk(tmp_path, landmarker):
    counting = CountingLandmarker(landmarker)
    first = prepare_avatar(SAMPLE_PORTRAIT, size_px=320, cache_dir=tmp_path, landmarker=counting)
    second = prepare_avatar(SAMPLE_PORTRAIT, size_px=320, cache_dir=tmp_path, landmarker=counting)
    assert counting.calls == 1
    np.testing.assert_array_equal(first.landmarks_px, second.landmarks_px)
    np.testing.assert_array_equal(first.image_bgr, second.image_bgr)
    assert list((tmp_path / "avatars").glob("*.npz"))


def test_odd_sized_wide_photo_keeps_whole_frame(tmp_path, landmarker):
    import cv2

    photo = cv2.imread(str(SAMPLE_PORTRAIT))
    wide = cv2.copyMakeBorder(photo, 0, 1, 301, 300, cv2.BORDER_REFLECT)  # 1113 x 641, odd sizes
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), wide)
    assets = prepare_avatar(path, size_px=None, cache_dir=tmp_path, landmarker=landmarker)
    assert assets.size_wh == (1024, 590)  # longest side capped at 1024, both sides even


def test_no_face_is_a_clear_error(tmp_path, landmarker):
    with pytest.raises(InputError, match=r"no face found in no_face_coffee_cup\.png"):
        prepare_avatar(eval_file("faces/no_face_coffee_cup.png"), cache_dir=tmp_path, landmarker=landmarker)


def test_cat_is_not_a_human_face(tmp_path, landmarker):
    with pytest.raises(InputError, match="no face found"):
        prepare_avatar(
            eval_file("faces/no_human_face_cat_chelsea.png"), cache_dir=tmp_path, landmarker=landmarker
        )


def test_two_faces_pick_largest_and_say_so(tmp_path, landmarker):
    photo = eval_file("faces/two_faces_obama_biden.jpg")
    assets = prepare_avatar(photo, cache_dir=tmp_path, landmarker=landmarker)
    assert len(assets.notes) == 1 and "2 faces found" in assets.notes[0] and "--face" in assets.notes[0]
    second = prepare_avatar(photo, face_index=1, cache_dir=tmp_path, landmarker=landmarker)
    assert second.notes == ()
    assert not np.allclose(assets.landmarks_px, second.landmarks_px)
    with pytest.raises(InputError, match=r"--face 5 does not exist: .* has 2 face\(s\)"):
        prepare_avatar(photo, face_index=5, cache_dir=tmp_path, landmarker=landmarker)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "photo file is empty"),
        (b"this is not an image at all", r"cannot read bad\.jpg as an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, r"cannot read bad\.jpg as an image"),  # truncated JPEG
    ],
)
def test_unreadable_photos(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        prepare_avatar(path, cache_dir=tmp_path)


def test_missing_and_folder_and_tiny_photos(tmp_path):
    import cv2

    with pytest.raises(InputError, match="photo not found"):
        prepare_avatar(tmp_path / "nope.jpg", cache_dir=tmp_path)
    with pytest.raises(InputError, match="is a folder"):
        prepare_avatar(tmp_path, cache_dir=tmp_path)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((40, 30, 3), np.uint8))
    with pytest.raises(InputError, match="photo is too small"):
        prepare_avatar(tiny, cache_dir=tmp_path)


def test_face_too_small_at_requested_size(tmp_path, landmarker):
    with pytest.raises(InputError, match="too small"):
        prepare_avatar(SAMPLE_PORTRAIT, size_px=128, cache_dir=tmp_path, landmarker=landmarker)
