"""SenseVoiceSmall through funasr, on tiny model folders made in the test (tests/tiny_sensevoice.py).

The real loading path runs: funasr's AutoModel reads config.yaml + configuration.json, builds the
tokenizer, the WavFrontend with am.mvn and funasr's own SenseVoiceSmall, loads model.pt, and
recognises real speech from ../shared/eval. Every test runs with the network cut off.
"""

from __future__ import annotations

import importlib
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from avatar.asr.sensevoice import DOWNLOAD_COMMAND, INSTALL_COMMAND, SenseVoiceASR
from avatar.asr.sensevoice_tags import EMOTIONS, EVENTS
from avatar.core import optional
from avatar.core.audio_io import load_audio, resample
from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import AudioChunk, Transcript
from avatar.engines.registry import file_names
from tests.conftest import eval_file
from tests.tiny_sensevoice import (
    PUBLIC_ENCODER,
    PUBLIC_MODEL_PT_BYTES,
    PUBLIC_VOCAB_SIZE,
    TOKENIZER_FILE,
    ForcedOutput,
    build_tiny_sensevoice,
    config_yaml,
    make_model,
)

MODEL_FILES = file_names("sensevoice")  # the public checkpoint, as the model registry lists it
SPEECH_CLIP = "speech/en_female_librispeech_1995-1837-0001.wav"  # 16 kHz mono, 8.7 s
FORCED = Transcript(text="Hello", language="en", emotion="happy", events=("Laughter",))


@pytest.fixture(scope="module", autouse=True)
def network_attempts():
    """Cut every way out (sockets, DNS, the hub downloaders funasr would call, its PyPI version
    check) and record attempts: funasr catches a failed download and carries on, so a raise
    alone would not show that it tried."""
    import funasr.download.download_model_from_hub as funasr_hub
    import funasr.utils.version_checker as funasr_version
    import huggingface_hub
    import torch

    # `modelscope.hub.snapshot_download` the attribute is the function, shadowing the module.
    modelscope_download = importlib.import_module("modelscope.hub.snapshot_download")

    torch.set_num_threads(1)
    attempts: list[str] = []

    def refuse(name):
        def refused(*args, **kwargs):
            attempts.append(name)
            raise OSError(f"network disabled in tests: {name}")

        return refused

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse("socket.connect"))
        patch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
        patch.setattr(socket, "create_connection", refuse("socket.create_connection"))
        patch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
        patch.setattr(funasr_hub, "get_or_download_model_dir", refuse("funasr ModelScope download"))
        patch.setattr(funasr_hub, "get_or_download_model_dir_hf", refuse("funasr Hugging Face download"))
        patch.setattr(funasr_version, "get_pypi_version", refuse("funasr PyPI version check"))
        patch.setattr(modelscope_download, "snapshot_download", refuse("modelscope snapshot_download"))
        patch.setattr(huggingface_hub, "snapshot_download", refuse("huggingface_hub snapshot_download"))
        patch.setattr(huggingface_hub, "hf_hub_download", refuse("huggingface_hub hf_hub_download"))
        yield attempts


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory) -> Path:
    return build_tiny_sensevoice(tmp_path_factory.mktemp("sensevoice") / "random")


@pytest.fixture(scope="module")
def forced_dir(tmp_path_factory) -> Path:
    return build_tiny_sensevoice(tmp_path_factory.mktemp("sensevoice") / "forced", forced=ForcedOutput())


@pytest.fixture(scope="module")
def forced_asr(forced_dir) -> SenseVoiceASR:
    return SenseVoiceASR(forced_dir, cpu_threads=1).load()


@pytest.fixture(scope="module")
def speech() -> AudioChunk:
    return load_audio(eval_file(SPEECH_CLIP), 16000)


def test_tiny_folder_has_the_public_layout(random_dir):
    assert {path.name for path in random_dir.iterdir()} == set(MODEL_FILES)
    assert TOKENIZER_FILE in MODEL_FILES


def test_config_format_with_public_sizes_describes_the_public_checkpoint():
    """The same config.yaml with the public encoder sizes gives float32 tensors that fill the public
    model.pt to within its zip/pickle overhead (~300 bytes a tensor), with the tensor names
    funasr's loader and third-party ports read (embed, encoder.*, ctc.ctc_lo)."""
    import torch

    with torch.device("meta"):  # shapes only, no memory
        state = make_model(config_yaml(PUBLIC_ENCODER), PUBLIC_VOCAB_SIZE).state_dict()
    tensor_bytes = 4 * sum(tensor.numel() for tensor in state.values())
    assert 0 < PUBLIC_MODEL_PT_BYTES - tensor_bytes < 400 * len(state)
    assert tuple(state["embed.weight"].shape) == (16, 560)
    assert tuple(state["ctc.ctc_lo.weight"].shape) == (PUBLIC_VOCAB_SIZE, 512)
    assert tuple(state["encoder.encoders0.0.self_attn.linear_q_k_v.weight"].shape) == (1536, 560)
    assert {
        "encoder.encoders.48.norm1.weight",
        "encoder.tp_encoders.19.norm1.weight",
        "encoder.tp_norm.bias",
    } <= set(state)


def test_random_weights_run_the_whole_real_path(random_dir, speech, network_attempts):
    transcript = SenseVoiceASR(random_dir, cpu_threads=1).load().transcribe(speech)
    assert isinstance(transcript, Transcript)
    assert isinstance(transcript.text, str) and transcript.text  # gibberish, but decoded pieces
    assert transcript.language in ("zh", "en", "yue", "ja", "ko", "")
    assert transcript.emotion is None or transcript.emotion in EMOTIONS
    assert isinstance(transcript.events, tuple) and set(transcript.events) <= set(EVENTS)
    assert transcript.is_final is True
    assert network_attempts == []


def test_forced_output_decodes_to_known_tags_and_text(forced_asr, speech, network_attempts):
    assert forced_asr.transcribe(speech) == FORCED
    tags = forced_asr.transcribe_tags(speech)
    assert (tags.itn, tags.other_tags, len(tags.segments)) == (True, (), 1)
    assert network_attempts == []


def test_language_hint_and_itn_reach_the_model(forced_dir, forced_asr, speech):
    """The forced model writes the tag of whichever query embedding funasr put in front, so
    these only pass if our language and use_itn arguments arrive in SenseVoiceSmall.inference."""
    assert forced_asr.transcribe(speech, language="zh").language == "zh"
    assert forced_asr.transcribe(speech, language="EN").language == "en"
    plain = SenseVoiceASR(forced_dir, use_itn=False, language="zh", cpu_threads=1).load()
    tags = plain.transcribe_tags(speech)
    assert (tags.language, tags.itn, tags.text) == ("zh", False, "Hello")


def test_48_khz_audio_is_resampled_to_16_khz(forced_asr, speech, monkeypatch):
    audio_48k = AudioChunk(resample(speech.pcm, 16000, 48000), 48000)
    seen: list[np.ndarray] = []
    generate = forced_asr._model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs["input"])
        return generate(*args, **kwargs)

    monkeypatch.setattr(forced_asr._model, "generate", spy)
    assert forced_asr.transcribe(audio_48k) == FORCED
    assert len(seen[0]) == round(len(audio_48k.pcm) / 3)
    assert seen[0].dtype == np.float32
    assert abs(len(seen[0]) - len(speech.pcm)) <= 1


@pytest.mark.parametrize("name", MODEL_FILES)
def test_missing_file_is_named_with_the_fix(random_dir, tmp_path, name):
    folder = tmp_path / "sensevoice"
    shutil.copytree(random_dir, folder)
    (folder / name).unlink()
    with pytest.raises(EngineUnavailable) as caught:
        SenseVoiceASR(folder).load()
    assert name in caught.value.message
    assert DOWNLOAD_COMMAND in caught.value.hint
    # built by the engine layer, the engine expects the registry's files and names them all
    from avatar.engines.engine_set import sensevoice_asr

    with pytest.raises(EngineUnavailable) as caught:
        sensevoice_asr(folder).load()
    assert name in caught.value.message
    assert all(expected in caught.value.hint for expected in MODEL_FILES)


def test_missing_folder_and_foreign_config(random_dir, tmp_path):
    with pytest.raises(EngineUnavailable, match="does not exist"):
        SenseVoiceASR(tmp_path / "nowhere").load()
    folder = tmp_path / "paraformer"
    shutil.copytree(random_dir, folder)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("model: SenseVoiceSmall", "model: Paraformer"))
    with pytest.raises(EngineUnavailable, match="'Paraformer', not SenseVoiceSmall"):
        SenseVoiceASR(folder).load()


def test_tokenizer_named_by_configuration_json_is_checked(random_dir, tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(random_dir, folder)
    metas = folder / "configuration.json"
    metas.write_text(metas.read_text().replace(TOKENIZER_FILE, "other.bpe.model"))
    with pytest.raises(EngineUnavailable, match=r"missing other\.bpe\.model"):
        SenseVoiceASR(folder).load()


def test_weights_that_do_not_fit_the_config_fail_instead_of_running_random(random_dir, tmp_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(random_dir, folder)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("output_size: 32", "output_size: 48"))
    with pytest.raises(EngineUnavailable, match="could not build SenseVoiceSmall") as caught:
        SenseVoiceASR(folder, cpu_threads=1).load()
    assert DOWNLOAD_COMMAND in caught.value.hint


def test_missing_funasr_names_the_extra(random_dir, monkeypatch):
    real_find_spec = optional.importlib_util.find_spec
    monkeypatch.setattr(
        optional.importlib_util,
        "find_spec",
        lambda name, *args: None if name == "funasr" else real_find_spec(name, *args),
    )
    with pytest.raises(EngineUnavailable, match="'funasr'") as caught:
        SenseVoiceASR(random_dir).load()
    assert caught.value.hint == INSTALL_COMMAND


def test_missing_fbank_backend_names_the_extra(random_dir, monkeypatch):
    real_find_spec = optional.importlib_util.find_spec
    absent = ("kaldi_native_fbank", "torchaudio")
    monkeypatch.setattr(
        optional.importlib_util,
        "find_spec",
        lambda name, *args: None if name in absent else real_find_spec(name, *args),
    )
    with pytest.raises(EngineUnavailable, match="kaldi-native-fbank") as caught:
        SenseVoiceASR(random_dir).load()
    assert caught.value.hint == INSTALL_COMMAND


def test_cuda_without_a_gpu_is_refused(random_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(EngineUnavailable, match="no CUDA GPU"):
        SenseVoiceASR(random_dir, device="cuda").load()


@pytest.mark.parametrize(
    ("pcm", "message"),
    [
        (np.zeros(0, np.float32), "empty audio"),
        (np.zeros(16000, np.float32), "silent audio"),
        (np.full(16000, 1e-4, np.float32), "silent audio"),
        (np.full(100, 0.5, np.float32), "shorter than one 25 ms frame"),
        (np.full((2, 16000), 0.5, np.float32), "mono audio"),
        (np.array([0.5, np.nan] * 8000, np.float32), "NaN"),
    ],
)
def test_unusable_audio_is_an_input_error(random_dir, pcm, message):
    asr = SenseVoiceASR(random_dir)  # not loaded: audio is checked before any model work
    with pytest.raises(InputError, match=message):
        asr.transcribe(AudioChunk(pcm, 16000))
    assert asr._model is None


def test_unknown_language_is_an_input_error(random_dir):
    with pytest.raises(InputError, match="no language 'fr'") as caught:
        SenseVoiceASR(random_dir, language="fr")
    assert "auto, zh, en" in caught.value.hint
    with pytest.raises(InputError):
        SenseVoiceASR(random_dir).transcribe(
            AudioChunk(np.full(16000, 0.5, np.float32), 16000), language="de"
        )


def test_chosen_by_name_in_the_cli_and_the_live_config(forced_dir, capsys):
    from avatar.cli import main
    from avatar.engines.engine_set import EngineSet
    from avatar.engines.live_set import LiveConfig

    clip = str(eval_file(SPEECH_CLIP))
    assert main(["transcribe", "--asr", "sensevoice", "--asr-model-dir", str(forced_dir), clip]) == 0
    assert capsys.readouterr().out.strip() == "[en | happy | Laughter] Hello"
    config = LiveConfig(Path("assets/sample_portrait.jpg"), asr="sensevoice", asr_model_dir=forced_dir)
    asr = EngineSet().recognizer(config.asr, config.asr_model_dir)  # what the live server loads
    assert isinstance(asr, SenseVoiceASR) and asr.model_dir == forced_dir
