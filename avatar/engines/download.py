"""`avatar models download NAME`: the one place that may fetch weights, and only when asked.

Nothing in the toolkit downloads implicitly (engines only read local folders), so this is an
explicit step for users who have internet. It fetches from Hugging Face or ModelScope straight
into the engine's directory (no hub cache to hunt for later), moves files whose hub path differs
from the expected name into place, then checks every expected file and every published sha256:
a truncated or substituted download is reported, never loaded.

Failures are one line: which hub failed and what to try instead (the other hub, or copying the
files by hand), because a Python traceback from an HTTP library tells a user nothing useful.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from avatar.core.errors import AvatarError, EngineUnavailable, InputError
from avatar.engines.registry import HUBS, EngineSpec, HubSource, engine_dir, get_spec, missing_files

# fetch(repo_id, local_dir, filenames): put the repo's files (all when filenames is empty) in local_dir
Fetcher = Callable[[str, Path, tuple[str, ...]], None]
Progress = Callable[[str], None]


# hub -> (package, its snapshot function, that function's name for the repository argument).
# Both hubs have the same call shape, so one fetcher serves both.
_HUB_CLIENTS = {
    "huggingface": ("huggingface_hub", "snapshot_download", "repo_id"),
    "modelscope": ("modelscope", "snapshot_download", "model_id"),
}


def _hub_client(hub: str) -> Fetcher:
    """The fetch function for one hub; the hub package is imported only here, on demand."""
    import importlib

    package, function, repo_argument = _HUB_CLIENTS[hub]
    try:
        snapshot_download = getattr(importlib.import_module(package), function)
    except ImportError as exc:
        other = next(name for name in _HUB_CLIENTS if name != hub)
        raise EngineUnavailable(
            f"{package} is not installed", f"pip install {package}, or use --hub {other}"
        ) from exc

    def fetch(repo_id: str, local_dir: Path, filenames: tuple[str, ...]) -> None:
        snapshot_download(
            **{repo_argument: repo_id}, local_dir=str(local_dir), allow_patterns=list(filenames) or None
        )

    return fetch


def _sources_for(spec: EngineSpec, hub: str | None) -> tuple[str, list[HubSource]]:
    if not spec.hub_sources:
        raise InputError(
            f"{spec.name} has no files to download", f"nothing to fetch; use {spec.how_to_enable}"
        )
    if hub is not None and hub not in HUBS:
        raise InputError(f"unknown hub {hub!r}", f"use one of: {', '.join(HUBS)}")
    chosen = hub or spec.hub_sources[0].hub
    sources = [source for source in spec.hub_sources if source.hub == chosen]
    if not sources:
        others = sorted({source.hub for source in spec.hub_sources})
        raise InputError(f"{spec.name} is not published on {chosen}", f"use --hub {' or '.join(others)}")
    return chosen, sources


def _place_files(spec: EngineSpec, source: HubSource, directory: Path) -> None:
    """Move hub files whose path differs from the expected one (e.g. `Wav2lip/x.pth` -> `x.pth`)."""
    expected = {Path(model_file.relative_path).name: model_file.relative_path for model_file in spec.files}
    for hub_name in source.filenames:
        target_relative = expected.get(Path(hub_name).name)
        if target_relative is None or target_relative == hub_name:
            continue
        fetched, target = directory / hub_name, directory / target_relative
        if fetched.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fetched.replace(target)
            for parent in Path(hub_name).parents:  # remove the now-empty hub folders
                if parent != Path(".") and not any((directory / parent).iterdir()):
                    (directory / parent).rmdir()


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def download_engine(
    name: str, hub: str | None = None, root: Path | None = None, progress: Progress | None = None
) -> Path:
    """Fetch an engine's files into engine_dir(name, root), verify them, return that directory.

    `hub` is "huggingface" or "modelscope" (default: the engine's first listed hub). Several
    sources on one hub are tried in order. Raises EngineUnavailable with a one-line fix when the
    hub cannot be reached, a file is missing afterwards, or a published sha256 does not match.
    """
    spec = get_spec(name)
    chosen, sources = _sources_for(spec, hub)
    directory = engine_dir(name, root)
    other = [candidate for candidate in HUBS if candidate != chosen and any(
        source.hub == candidate for source in spec.hub_sources)]  # fmt: skip
    manual = f"copy {', '.join(model_file.relative_path for model_file in spec.files[:3])} into {directory} by hand"
    fallback = f"try --hub {other[0]}, or {manual}" if other else manual
    fetch = _hub_client(chosen)
    directory.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    for source in sources:
        if progress:
            progress(f"fetching {name} from {chosen}: {source.repo_id} -> {directory}")
        try:
            fetch(source.repo_id, directory, source.filenames)
        except AvatarError:
            raise
        except Exception as exc:  # network, auth, missing repo: all become one line
            failures.append(f"{source.repo_id}: {_short(exc)}")
            continue
        _place_files(spec, source, directory)
        if not missing_files(spec, directory):
            break
    if len(failures) == len(sources):
        raise EngineUnavailable(
            f"could not download {name} from {chosen} ({'; '.join(failures)})",
            f"check the network, {fallback}",
        )

    absent = missing_files(spec, directory)
    if absent:
        raise EngineUnavailable(
            f"{name}: {absent[0]} is missing after the download from {chosen}",
            f"the repository layout may have changed; {fallback}",
        )
    if progress:
        progress(f"verifying sha256 of {name}")
    damaged = missing_files(spec, directory, verify_hashes=True)
    if damaged:
        bad = damaged[0].removesuffix(" (sha256 mismatch)")
        raise EngineUnavailable(
            f"{name}: {bad} in {directory} does not match its published sha256",
            f"delete it and download again, or {fallback}",
        )
    return directory
