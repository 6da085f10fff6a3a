"""The Wav2Lip engine with random weights: architecture vs the public checkpoints, loading, mel, rendering.

No checkpoint is downloaded: a random-weight state dict wrapped like the public files is written to
a temporary folder and read back through the real loader. Names and shapes are checked against
tests/wav2lip_reference_keys.py, which is transcribed from the public code, not from our module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avatar.core.errors import EngineUnavailable, InputError  # noqa: E402
from avatar.core.types import AudioChunk, Speech  # noqa: E402
from lipsync.audio_features import frame_count_for  # noqa: E402
from tests.conftest import SAMPLE_PORTRAIT, eval_file  # noqa: E402
from tests.wav2lip_reference_keys import (  # noqa: E402
    EXPECTED_PARAMETER_COUNT,
    reference_parameter_count,
    reference_tensors,
)

SPEECH_FILE = "speech/en_female_ljspeech_LJ050-0131.wav"  # 22.05 kHz: the renderer must resample


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model():
    from lipsync.wav2lip_model import Wav2Lip

    torch.manual_seed(0)
    return Wav2Lip().eval()


def public_style_checkpoint(model, path: Path, with_batch_count: bool = True, **changes) -> Path:
    """Save `model` the way wav2lip_train.py did, under DataParallel's "module." prefix."""
    state = {
        f"module.{k}": v
        for k, v in model.state_dict().items()
        if with_batch_count or not k.endswith("num_batches_tracked")
    }
    for key, value in changes.items():
        if value is None:
            del state[f"module.{key}"]
        else:
            state[f"module.{key}"] = value
    optimizer = {
        "state": {},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0]}],
    }
    torch.save({"state_dict": state, "optimizer": optimizer, "global_step": 0, "global_epoch": 0}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    return public_style_checkpoint(model, tmp_path_factory.mktemp("wav2lip") / "wav2lip.pth")


def test_state_dict_matches_public_checkpoint_names_and_shapes(model):
    ours = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    assert ours == reference_tensors(with_batch_count=True)
    total = sum(p.numel() for p in model.parameters())
    assert total == reference_parameter_count() == EXPECTED_PARAMETER_COUNT  # 36.3 M


def test_forward_shape_and_range(model):
    faces = torch.rand(2, 6, 96, 96)
    mels = torch.rand(2, 1, 80, 16) * 8 - 4
    with torch.inference_mode():
        out = model(mels, faces)
    assert out.shape == (2, 3, 96, 96)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_loads_public_style_checkpoint(model, checkpoint):
    from lipsync.wav2lip_checkpoint import load_wav2lip

    loaded = load_wav2lip(checkpoint)
    assert not loaded.training
    theirs = loaded.state_dict()
    for name, ours in model.state_dict().items():
        assert torch.equal(ours, theirs[name]), name


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("wrap", ["bare", "no_batch_count", "torchscript"])
def test_loads_other_layouts(model, tmp_path, wrap):
    from lipsync.wav2lip_checkpoint import load_wav2lip

    path = tmp_path / "other.pth"
    if wrap == "bare":
        torch.save(model.state_dict(), path)
    elif wrap == "no_batch_count":
        public_style_checkpoint(model, path, with_batch_count=False)
    else:
        torch.jit.script(model).save(str(path))
    loaded = load_wav2lip(path)
    name = "output_block.1.weight"
    assert torch.equal(loaded.state_dict()[name], model.state_dict()[name])


def test_half_precision_plumbing(checkpoint):
    from lipsync.wav2lip_checkpoint import load_wav2lip

    loaded = load_wav2lip(checkpoint, half=True)
    assert next(loaded.parameters()).dtype == torch.float16
    assert loaded.state_dict()["audio_encoder.0.conv_block.1.num_batches_tracked"].dtype == torch.int64


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"audio_encoder.3.conv_block.0.weight": torch.zeros(64, 32, 3, 1)},
            "audio_encoder.3.conv_block.0.weight",
        ),
        (
            {"face_decoder_blocks.6.2.conv_block.1.running_var": None},
            "face_decoder_blocks.6.2.conv_block.1.running_var",
        ),
        (
            {"face_encoder_blocks.7.0.conv_block.0.weight": torch.zeros(3)},
            "face_encoder_blocks.7.0.conv_block.0.weight",
        ),
    ],
    ids=["wrong-shape", "missing", "unexpected"],
)
def test_misfit_checkpoint_names_the_tensor(model, tmp_path, change, named):
    from lipsync.wav2lip_checkpoint import load_wav2lip

    path = public_style_checkpoint(model, tmp_path / "misfit.pth", **change)
    with pytest.raises(InputError) as caught:
        load_wav2lip(path)
    assert named in caught.value.message and "\n" not in str(caught.value)


def test_unreadable_and_missing_files(tmp_path):
    from lipsync.wav2lip_checkpoint import load_wav2lip

    with pytest.raises(EngineUnavailable, match="not found"):
        load_wav2lip(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        load_wav2lip(tmp_path / "junk.pth")
    torch.save({"state_dict": {}, "extra": Path("x")}, tmp_path / "pickled.pth")
    with pytest.raises(InputError, match="besides tensors"):
        load_wav2lip(tmp_path / "pickled.pth")


def test_mel_matches_wav2lip_features():
    from lipsync.wav2lip_audio import mel_chunks, melspectrogram

    rng = np.random.default_rng(0)
    one_second = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    mel = melspectrogram(one_second)
    assert mel.shape == (80, 81) and mel.dtype == np.float32
    assert mel.min() >= -4 and mel.max() <= 4 and mel.max() > -4
    assert melspectrogram(np.zeros(16000, np.float32)).max() == -4  # silence sits on the floor
    chunks = mel_chunks(mel, fps=25)
    assert len(chunks) == frame_count_for(16000, 16000, 25) == 25
    assert all(c.shape == (80, 16) for c in chunks)
    # inference.py's indexing: frame i starts at int(80 / 25 * i) = int(3.2 i)
    np.testing.assert_array_equal(chunks[7], mel[:, 22:38])
    assert (chunks[-1][:, -1] == -4).all(), "the window past the end is padded with silence"


@pytest.fixture(scope="module")
def renderer(checkpoint, landmarker, cache_dir):
    from lipsync.avatar_assets import prepare_avatar
    from lipsync.procedural_renderer import ProceduralRenderer
    from lipsync.wav2lip_renderer import Wav2LipRenderer

    assets = prepare_avatar(SAMPLE_PORTRAIT, size_px=256, cache_dir=cache_dir, landmarker=landmarker)
    return Wav2LipRenderer(ProceduralRenderer(assets, seed=1), checkpoint, batch_size=8).load()


@pytest.fixture(scope="module")
def speech() -> Speech:
    from avatar.core.audio_io import load_audio

    audio = load_audio(eval_file(SPEECH_FILE), 22050)
    start = int(0.4 * audio.sample_rate_hz)
    return Speech(
        AudioChunk(audio.pcm[start : start + int(1.02 * audio.sample_rate_hz)], audio.sample_rate_hz)
    )


def test_render_pastes_inside_the_face_box_only(renderer, speech):
    from lipsync.wav2lip_renderer import lower_face_box, smooth_boxes

    frames = list(renderer.render(speech))
    audio = speech.audio
    assert len(frames) == frame_count_for(len(audio.pcm), audio.sample_rate_hz, renderer.fps) == 26
    weights = renderer.plan(speech)
    boxes = smooth_boxes(
        np.stack([lower_face_box(renderer.base.warper.moved_landmarks(w), renderer.size_wh) for w in weights])
    )
    for i in (0, len(frames) // 2, len(frames) - 1):
        frame, base = frames[i], renderer.base.draw(weights[i])
        assert frame.shape == (renderer.size_wh[1], renderer.size_wh[0], 3) and frame.dtype == np.uint8
        x0, y0, x1, y1 = boxes[i]
        inside = np.zeros(frame.shape[:2], bool)
        inside[y0:y1, x0:x1] = True
        changed = np.any(frame != base, axis=2)
        assert not changed[~inside].any(), "pixels outside the face box must stay the procedural frame"
        mouth_y, mouth_x = renderer.base.warper.moved_landmarks(weights[i])[fm_mouth()].mean(axis=0)[[1, 0]]
        assert changed[int(mouth_y), int(mouth_x)], "the mouth must come from the network"
        assert not changed[y0 : y0 + (y1 - y0) // 3].any(), "the eyes stay the procedural frame"
        assert changed.sum() > 0.15 * (x1 - x0) * (y1 - y0)
    crops = np.stack([renderer._crop(frames[i], boxes[i]) for i in range(4)])
    faces = renderer.predict(crops, renderer.mel_windows(speech, len(frames))[:4])
    assert faces.shape == (4, 96, 96, 3) and np.isfinite(faces).all(), "no NaN may reach the paste-back"


def test_render_plumbing_errors(renderer, checkpoint):
    from lipsync.wav2lip_renderer import Wav2LipRenderer

    unloaded = Wav2LipRenderer(renderer.base, checkpoint)
    assert unloaded.fp16 is False and unloaded.size_wh == renderer.size_wh
    with pytest.raises(EngineUnavailable, match="not loaded"):
        next(unloaded.render(Speech(AudioChunk(np.zeros(1600, np.float32), 16000))))
    with pytest.raises(InputError, match="CUDA"):
        Wav2LipRenderer(renderer.base, checkpoint, fp16=True).load()
    if not torch.cuda.is_available():
        with pytest.raises(EngineUnavailable, match="no CUDA"):
            Wav2LipRenderer(renderer.base, checkpoint, device="cuda").load()


def fm_mouth() -> list[int]:
    from lipsync import face_mesh_indices as fm

    return [*fm.MOUTH_CORNERS, fm.INNER_LIP_MID_UPPER, fm.INNER_LIP_MID_LOWER]


def test_sharpened_paste_stays_in_the_box_with_a_zero_border(renderer, checkpoint):
    from lipsync.wav2lip_renderer import Wav2LipRenderer, lower_face_mask

    mask = lower_face_mask(70, 64)
    assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0
    assert mask[: 70 // 2].max() == 0 and mask.max() > 0.99  # nothing above the nose line
    sharp = Wav2LipRenderer(renderer.base, checkpoint, mouth_sharpen=True)
    frame = renderer.base.draw(renderer.plan(Speech(AudioChunk(np.zeros(640, np.float32), 16000)))[0])
    box = np.array([60, 70, 130, 140])
    face = np.random.default_rng(0).uniform(0, 255, (96, 96, 3)).astype(np.float32)
    out = sharp.paste(frame.copy(), box, face)
    changed = np.any(out != frame, axis=2)
    assert changed[105:135, 70:120].all() and changed.sum() == changed[70:140, 60:130].sum()
