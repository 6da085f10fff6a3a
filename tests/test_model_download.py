"""`avatar models download` with the hub clients replaced by fakes that write stand-in files.

Nothing here reaches the network: `_hub_client` is swapped for a function that writes the files a
hub would, or raises the way an unreachable hub does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types
from pathlib import Path

import pytest

from avatar.cli import main
from avatar.core.errors import EngineUnavailable, InputError
from avatar.engines import download as model_download
from avatar.engines import registry as model_registry
from avatar.engines.registry import check_engine, engine_dir

CONTENT = b"stand-in weights"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in model_registry.engine_names():
        env_var = model_registry.get_spec(name).env_var
        if env_var:
            monkeypatch.delenv(env_var, raising=False)
    monkeypatch.setenv("AVATAR_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def fake_hub(monkeypatch, layouts: dict[str, list[str]] | None = None, fail: set[str] = frozenset()):
    """Replace the hub clients: repo_id -> files it holds; repos in `fail` raise like a dead network."""
    calls: list[tuple[str, str, Path, tuple[str, ...]]] = []

    def client(hub: str):
        def fetch(repo_id: str, local_dir: Path, filenames: tuple[str, ...]) -> None:
            calls.append((hub, repo_id, local_dir, filenames))
            if repo_id in fail:
                raise OSError("[Errno 101] Network is unreachable\nTraceback (most recent call last): ...")
            for relative in filenames or layouts[repo_id]:
                path = Path(local_dir) / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(CONTENT)

        return fetch

    monkeypatch.setattr(model_download, "_hub_client", client)
    return calls


def with_hash(monkeypatch, name: str, sha256: str) -> None:
    """Make the registry's published hash for `name` the hash of the stand-in bytes."""
    spec = model_registry.get_spec(name)
    files = tuple(dataclasses.replace(model_file, sha256=sha256) for model_file in spec.files)
    patched = dataclasses.replace(spec, files=files)
    monkeypatch.setattr(
        model_download,
        "get_spec",
        lambda engine: patched if engine == name else model_registry.get_spec(engine),
    )


SENSEVOICE_REPO = ["model.pt", "config.yaml", "configuration.json", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model",
                   "README.md", "example/zh.mp3"]  # fmt: skip


def test_snapshot_lands_where_check_engine_looks(monkeypatch, tmp_path):
    calls = fake_hub(
        monkeypatch, {"FunAudioLLM/SenseVoiceSmall": SENSEVOICE_REPO, "iic/SenseVoiceSmall": SENSEVOICE_REPO}
    )
    messages: list[str] = []
    directory = model_download.download_engine("sensevoice", progress=messages.append)
    assert directory == engine_dir("sensevoice") == tmp_path / "models" / "sensevoice"
    assert calls == [("huggingface", "FunAudioLLM/SenseVoiceSmall", directory, ())]
    assert check_engine("sensevoice").missing == ()  # funasr + torch are installed in the dev venv
    assert messages and "huggingface" in messages[0]

    calls.clear()
    model_download.download_engine("sensevoice", hub="modelscope", root=tmp_path / "elsewhere")
    assert calls[0][:2] == ("modelscope", "iic/SenseVoiceSmall")
    assert check_engine("sensevoice", root=tmp_path / "elsewhere").missing == ()


def test_single_files_are_moved_into_place_and_verified(monkeypatch):
    fake_hub(monkeypatch)
    with_hash(monkeypatch, "wav2lip", hashlib.sha256(CONTENT).hexdigest())
    directory = model_download.download_engine("wav2lip")
    assert (directory / "wav2lip.pth").read_bytes() == CONTENT
    assert not (directory / "Wav2lip").exists()  # the hub's folder is not left behind
    assert check_engine("wav2lip").missing == ()


def test_second_source_on_the_same_hub_is_tried(monkeypatch):
    calls = fake_hub(monkeypatch, fail={"numz/wav2lip_studio-0.2"})
    with_hash(monkeypatch, "wav2lip_gan", hashlib.sha256(CONTENT).hexdigest())
    directory = model_download.download_engine("wav2lip_gan")
    assert [call[1] for call in calls] == ["numz/wav2lip_studio-0.2", "camenduru/Wav2Lip"]
    assert (directory / "wav2lip_gan.pth").is_file() and not (directory / "checkpoints").exists()


def test_hash_mismatch_is_reported(monkeypatch):
    fake_hub(monkeypatch)  # stand-in bytes, checked against the real published sha256
    with pytest.raises(EngineUnavailable) as info:
        model_download.download_engine("wav2lip")
    assert "wav2lip.pth" in info.value.message and "sha256" in info.value.message
    assert "\n" not in str(info.value)


def test_unreachable_hub_is_one_line_naming_the_other_hub(monkeypatch):
    fake_hub(monkeypatch, fail={"FunAudioLLM/SenseVoiceSmall"})
    with pytest.raises(EngineUnavailable) as info:
        model_download.download_engine("sensevoice")
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    assert "huggingface" in info.value.message and "Network is unreachable" in info.value.message
    assert "--hub modelscope" in info.value.hint


def test_unreachable_hub_without_alternative_suggests_copying(monkeypatch, tmp_path):
    fake_hub(monkeypatch, fail={"chunyu-li/face-alignment"})
    with pytest.raises(EngineUnavailable) as info:
        model_download.download_engine("face-alignment")
    assert "copy 2DFAN4-11f355bf06.pth.tar" in info.value.hint
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in info.value.hint


def test_incomplete_repository_is_reported(monkeypatch):
    fake_hub(monkeypatch, {"FunAudioLLM/SenseVoiceSmall": ["model.pt", "config.yaml"]})
    with pytest.raises(EngineUnavailable, match=r"configuration\.json is missing after the download"):
        model_download.download_engine("sensevoice")


def test_bad_requests_are_input_errors(monkeypatch):
    fake_hub(monkeypatch)
    with pytest.raises(InputError, match="no files to download"):
        model_download.download_engine("openai-llm")
    with pytest.raises(InputError, match="unknown hub"):
        model_download.download_engine("sensevoice", hub="github")
    with pytest.raises(InputError, match="not published on modelscope"):
        model_download.download_engine("wav2lip", hub="modelscope")


def test_real_clients_pass_local_dir_and_patterns(monkeypatch, tmp_path):
    """The thin adapters call the hub libraries with local_dir (no hidden cache) and exact files."""
    seen: list[dict] = []
    hf = types.ModuleType("huggingface_hub")
    hf.snapshot_download = lambda **kwargs: seen.append(kwargs)
    ms = types.ModuleType("modelscope")
    ms.snapshot_download = lambda **kwargs: seen.append(kwargs)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hf)
    monkeypatch.setitem(sys.modules, "modelscope", ms)
    model_download._hub_client("huggingface")("numz/wav2lip_studio", tmp_path, ("Wav2lip/wav2lip.pth",))
    model_download._hub_client("modelscope")("iic/SenseVoiceSmall", tmp_path, ())
    assert seen == [
        {
            "repo_id": "numz/wav2lip_studio",
            "local_dir": str(tmp_path),
            "allow_patterns": ["Wav2lip/wav2lip.pth"],
        },
        {"model_id": "iic/SenseVoiceSmall", "local_dir": str(tmp_path), "allow_patterns": None},
    ]


def test_cli_download(monkeypatch, tmp_path, capsys):
    fake_hub(monkeypatch, {"iic/SenseVoiceSmall": SENSEVOICE_REPO}, fail={"FunAudioLLM/SenseVoiceSmall"})
    assert (
        main(["models", "download", "sensevoice", "--hub", "modelscope", "--dir", str(tmp_path / "m")]) == 0
    )
    captured = capsys.readouterr()
    assert f"ready in {tmp_path / 'm' / 'sensevoice'}" in captured.out
    assert "AVATAR_MODELS_DIR" in captured.err  # --dir is not where engines look by default
    assert main(["models", "download", "sensevoice"]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the "fetching ..." progress line
    assert err.startswith("error: could not download sensevoice from huggingface") and "by hand" in err
