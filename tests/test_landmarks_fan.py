"""The face-alignment engine: real loading and inference code on stand-in weights, network blocked.

The stand-ins are face-alignment's own FAN(4) and S3FD classes with random weights, saved as the
plain state dicts face-alignment 1.5 loads, under the names the registry lists. Random weights
give meaningless points; what is tested is the path: files found in $TORCH_HOME, nothing
downloaded, S3FD run, FAN run, one (68, 2) float32 array per face, largest first.

The S3FD stand-in has its score heads set so that only the coarsest level (stride 128) says
"face", with zero box offsets: on a 128 px image that is exactly one box, so the full
detector path is deterministic without a trained detector.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar.core.errors import EngineUnavailable, InputError
from avatar.engines.registry import check_engine
from tests.conftest import SAMPLE_PORTRAIT

pytest.importorskip("face_alignment")
torch = pytest.importorskip("torch")

FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
S3FD_FILE = "s3fd-619a316812.pth"


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    """A TORCH_HOME whose hub/checkpoints holds random-weight FAN and S3FD files."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.set_num_threads(1)
    torch.manual_seed(0)
    home = tmp_path_factory.mktemp("torch-home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(FAN(4).state_dict(), checkpoints / FAN_FILE)
    detector = s3fd().state_dict()
    for key, tensor in detector.items():
        if "_mbox_" in key:
            tensor.zero_()
        if key.endswith("mbox_conf.bias"):  # channel 0 (0-2 for the first head) is background
            face_here = key.startswith("conv7_2")
            tensor[:-1] = -10.0 if face_here else 10.0
            tensor[-1] = 10.0 if face_here else -10.0
    torch.save(detector, checkpoints / S3FD_FILE)
    return home


def block_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every way face-alignment could fetch weights raise, and record the attempts."""
    import face_alignment.api
    import face_alignment.detection.sfd.sfd_detector as sfd_detector
    import face_alignment.utils
    import torch.hub

    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(str(args[:1]))
        raise RuntimeError("network access in a test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", refuse)
    monkeypatch.setattr(face_alignment.api, "load_file_from_url", refuse)
    monkeypatch.setattr(sfd_detector, "load_state_dict_from_url", refuse)
    return attempts


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    return block_network(monkeypatch)


@pytest.fixture(scope="module")
def landmarker(torch_home):
    """Loaded once through $TORCH_HOME (the registry's path), with the network blocked throughout."""
    from avatar.engines.engine_set import fan_landmarker

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        attempts = block_network(patch)
        patch.setenv("TORCH_HOME", str(torch_home))
        with fan_landmarker(device="cpu") as engine:
            yield engine
        assert attempts == []


def portrait(size_px: int) -> np.ndarray:
    image = cv2.imread(str(SAMPLE_PORTRAIT))
    return cv2.resize(image, (size_px, size_px), interpolation=cv2.INTER_AREA)


def test_empty_torch_home_names_the_missing_file_without_downloading(tmp_path, monkeypatch, no_network):
    from avatar.engines.engine_set import fan_landmarker

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(EngineUnavailable) as info:
        fan_landmarker().load()
    assert FAN_FILE in info.value.message and "\n" not in str(info.value)
    assert "avatar models download face-alignment" in info.value.hint
    assert str(tmp_path / "hub" / "checkpoints") in str(info.value)
    assert no_network == []


def test_one_missing_file_is_named(tmp_path, torch_home, no_network):
    from avatar.engines.engine_set import fan_landmarker
    from lipsync.landmarks_fan import FanLandmarker

    partial = tmp_path / "checkpoints"
    partial.mkdir()
    (partial / FAN_FILE).symlink_to(torch_home / "hub" / "checkpoints" / FAN_FILE)
    with pytest.raises(EngineUnavailable, match=S3FD_FILE):
        fan_landmarker(weights_dir=partial).load()
    # the engine itself takes the two paths it is given, and names the one that is missing
    with pytest.raises(EngineUnavailable, match=S3FD_FILE) as info:
        FanLandmarker(partial / FAN_FILE, partial / S3FD_FILE).load()
    assert "avatar models download face-alignment" in info.value.hint
    assert no_network == []


def test_registry_sees_the_weights(torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    status = check_engine("face-alignment")
    assert status.available and status.path == torch_home / "hub" / "checkpoints"


def test_detector_and_landmarks_run_on_a_photo(landmarker):
    faces = landmarker.detect(portrait(128))
    assert len(faces) == 1
    assert faces[0].shape == (68, 2) and faces[0].dtype == np.float32
    assert np.isfinite(faces[0]).all()


def test_given_boxes_skip_the_detector_and_sort_largest_first(landmarker, monkeypatch):
    monkeypatch.setattr(landmarker._aligner.face_detector, "detect_from_image", pytest.fail)
    small, large = (10, 10, 50, 50), (140, 140, 250, 250)
    faces = landmarker.detect(portrait(256), face_boxes_xyxy=[small, large])
    assert [face.shape for face in faces] == [(68, 2), (68, 2)]
    assert all(face.dtype == np.float32 for face in faces)
    centre = {name: np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]) for name, box in
              (("small", small), ("large", large))}  # fmt: skip
    first, second = (face.mean(axis=0) for face in faces)
    # FAN's points stay inside each box's crop, and the two crops do not overlap
    assert np.linalg.norm(first - centre["large"]) < np.linalg.norm(first - centre["small"])
    assert np.linalg.norm(second - centre["small"]) < np.linalg.norm(second - centre["large"])
    assert landmarker.detect(portrait(256), face_boxes_xyxy=[]) == []


def test_no_face_and_bad_input(landmarker, monkeypatch):
    monkeypatch.setattr(landmarker._aligner.face_detector, "detect_from_image", lambda image: [])
    assert landmarker.detect(portrait(128)) == []
    with pytest.raises(InputError):
        landmarker.detect(np.zeros((64, 64), dtype=np.uint8))


def test_preview_draws_the_68_points_through_the_cli(torch_home, tmp_path, monkeypatch, capsys):
    from avatar.cli import main

    attempts = block_network(monkeypatch)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    photo, output = tmp_path / "face.png", tmp_path / "preview.png"
    cv2.imwrite(str(photo), portrait(128))
    assert main(["preview", "--photo", str(photo), "--landmarks", "face-alignment", "-o", str(output)]) == 0
    assert "1 face, 68 points each" in capsys.readouterr().out
    drawn = cv2.imread(str(output))
    assert drawn.shape == (128, 128, 3)
    green = (drawn[:, :, 1] == 255) & (drawn[:, :, 0] == 0) & (drawn[:, :, 2] == 0)
    assert green.sum() >= 20  # the points, painted pure green on the photo
    assert attempts == []
