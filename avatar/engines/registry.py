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

The table itself is `avatar.engines.catalog.ENGINES`; this module is the only way the rest of the
toolkit reads it: the names each flag accepts (`engine_options`), an engine's folder and files,
and whether it can run here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.optional import module_available
from avatar.engines.catalog import (  # noqa: F401  (the table's types are read through here too)
    ENGINES,
    HUBS,
    LOCATION_MODELS,
    LOCATION_NONE,
    LOCATION_TORCH_HUB,
    STAGE_ROLES,
    STAGES,
    EngineSpec,
    HubSource,
    ModelFile,
    SourceCheckout,
)

MODELS_DIR_ENV = "AVATAR_MODELS_DIR"


@dataclass(frozen=True)
class EngineStatus:
    name: str
    available: bool
    path: Path
    missing: tuple[str, ...]  # module names, relative file paths ("x (sha256 mismatch)"), or $VARS
    fix: str  # one line; "" when available


_BY_NAME = {spec.name: spec for spec in ENGINES}


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
    return tuple(spec.name for spec in ENGINES)


def engine_specs(stage: str | None = None) -> tuple[EngineSpec, ...]:
    """Every engine in table order, or those of one stage."""
    return tuple(spec for spec in ENGINES if stage is None or spec.stage == stage)


def engine_options(stage: str) -> tuple[str, ...]:
    """The values the stage's flag accepts (`--tts`, `--asr`, `--llm`, ...): the embedded engines'
    first (the first of all is the stage's default), then the others in table order."""
    specs = sorted(engine_specs(stage), key=lambda spec: spec.tier != "embedded")  # stable
    return tuple(dict.fromkeys(spec.option for spec in specs if spec.option is not None))


def cloning_options() -> tuple[str, ...]:
    """The `--tts` values that clone a voice from a recording and what it says."""
    return tuple(
        dict.fromkeys(spec.option for spec in engine_specs("tts") if spec.clones_voice and spec.option)
    )


def file_names(name: str) -> tuple[str, ...]:
    """The engine's files, relative to its directory, in table order."""
    return tuple(model_file.relative_path for model_file in get_spec(name).files)


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
    if module_available(module):
        return True
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
    if spec.install_command:
        return spec.install_command
    if spec.extra:
        return f"pip install '.[{spec.extra}]'"
    pip_names = dict(spec.pip_names)
    return f"pip install {' '.join(pip_names.get(module, module) for module in modules)}"


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
