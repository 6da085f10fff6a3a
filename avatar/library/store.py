"""The avatar library: named avatars (photo, voice, persona, knowledge) kept in one folder each.

The CLI (`avatar library ...`, `--avatar NAME`) and the web console both go through
`AvatarLibrary`, so an avatar made in one is usable in the other. Layout:

    <root>/<slug>/avatar.json         AvatarSettings (schema version 1)
                  photo.<ext>         the photo as uploaded, bytes unchanged
                  thumbnail.png       160 px, centred on the face
                  voice_sample.<ext>  optional, as uploaded
                  voice_profile.json  optional, voices.voice_profile.VoiceProfile of the sample
                  knowledge.<ext>     optional, FAQ / markdown / text for the offline answerer

Every change is atomic at the folder level: a new avatar is built in a hidden `.staging-*`
folder inside the root (same file system, so the final `os.rename` is atomic), with every file
and the folder fsynced first, and `avatar.json` written last. A crash therefore leaves either no
avatar or a complete one; `list()` ignores hidden folders and opening the library removes
staging folders old enough to be abandoned (a fresh one may belong to another process saving
right now). Deletion renames the folder to a hidden `.deleting-*` name before removing it, so a
half-deleted avatar is never listed either.

Inputs are validated before anything is written: the photo with the face landmarker, the voice
sample against the 3-30 s limits and by building its profile, the knowledge file by parsing it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from avatar.core.errors import InputError
from avatar.core.storage import open_atomically, write_text_atomically

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_NAME_CHARS = 64
MAX_PERSONA_CHARS = 4000
MAX_TRANSCRIPT_CHARS = 2000
MAX_SLUG_CHARS = 48
LANGUAGES = ("en", "zh")
THUMBNAIL_PX = 160
CHECK_SIZE_PX = 512  # photos are checked (and thumbnails cut) at the live server's default size
MAX_INPUT_FILE_BYTES = 64 * 1024 * 1024  # any one uploaded file; keeps exports importable
# Archives: a real avatar is a few MB; the limits stop zip bombs and mistaken uploads early.
MAX_ARCHIVE_MEMBERS = 64
MAX_ARCHIVE_TOTAL_BYTES = 4 * MAX_INPUT_FILE_BYTES
STAGING_PREFIX = ".staging-"
DELETING_PREFIX = ".deleting-"
STALE_STAGING_AGE_S = 600.0  # a save takes seconds; ten idle minutes means its process is gone
_SETTINGS_FILE = "avatar.json"
_THUMBNAIL_FILE = "thumbnail.png"
_PROFILE_FILE = "voice_profile.json"
_KNOWN_FILE = re.compile(
    r"^(avatar\.json|thumbnail\.png|voice_profile\.json|(photo|voice_sample|knowledge)\.[a-z0-9]{1,8})$"
)
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def default_library_root() -> Path:
    """`$AVATAR_LIBRARY`, else `$XDG_DATA_HOME/talking-avatar/avatars` (~/.local/share/...).

    User data, not cache: a library must survive "clear the cache" (`cache_root()` holds only what
    can be rebuilt: prepared landmarks, reassembled model weights)."""
    root = os.environ.get("AVATAR_LIBRARY")
    if root:
        return Path(root).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "talking-avatar" / "avatars"


@dataclass(frozen=True)
class AvatarSettings:
    """What the user chose for an avatar; stored as avatar.json."""

    name: str  # display name, as typed (any script), 1-64 chars
    language: str | None  # "en", "zh" or None (detect per sentence)
    persona: str  # persona / system prompt, <= 4000 chars
    voice_transcript: str  # transcript of the voice sample (editable), "" if none
    face_index: int | None
    created_at: str  # ISO 8601 UTC
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: object, source: str) -> AvatarSettings:
        """Validate every field, so a hand-edited or foreign avatar.json fails with a reason."""
        if not isinstance(data, dict):
            raise InputError(f"{source} is not an avatar settings object", "re-export the avatar")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"{source} has schema version {version!r}, this program reads version {SCHEMA_VERSION}",
                "update talking-avatar, or re-export the avatar with this version",
            )
        face_index = data.get("face_index")
        if face_index is not None and (not isinstance(face_index, int) or face_index < 0):
            raise InputError(f"{source}: face_index must be a whole number >= 0 or null")
        created_at = data.get("created_at")
        if not isinstance(created_at, str):
            raise InputError(f"{source}: created_at must be an ISO 8601 date string")
        return cls(
            name=validate_name(data.get("name")),
            language=_validate_language(data.get("language")),
            persona=_validate_text(data.get("persona", ""), "persona", MAX_PERSONA_CHARS),
            voice_transcript=_validate_text(
                data.get("voice_transcript", ""), "voice transcript", MAX_TRANSCRIPT_CHARS
            ),
            face_index=face_index,
            created_at=created_at,
        )


@dataclass(frozen=True)
class AvatarRecord:
    """One stored avatar: its folder, settings and the paths of its files."""

    slug: str  # folder name: lower-case ASCII letters, digits and '-', unique
    folder: Path
    settings: AvatarSettings
    photo_path: Path
    thumbnail_path: Path
    voice_sample_path: Path | None
    voice_profile_path: Path | None
    knowledge_path: Path | None
    warnings: tuple[str, ...] = ()  # from the checks at create/import time (not stored)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def label(self) -> str:
        """How messages and pages name it: 'Mona Lisa (mona-lisa)'."""
        return f"{self.settings.name} ({self.slug})"


def validate_name(name: object) -> str:
    """A display name: any script, 1-64 characters after trimming, one line, no control codes."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("the avatar name is empty", "type a name, e.g. Mona or 小美")
    name = unicodedata.normalize("NFC", name.strip())
    if len(name) > MAX_NAME_CHARS:
        raise InputError(
            f"the avatar name is too long ({len(name)} characters)",
            f"use at most {MAX_NAME_CHARS} characters",
        )
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise InputError("the avatar name contains control characters or line breaks", "use one plain line")
    return name


def slugify(name: str) -> str:
    """The folder-name form of a display name: 'Zoë Smith!' -> 'zoe-smith'; '小美' -> 'avatar'.

    ASCII only, so folder names survive every file system, zip tool and shell unquoted;
    names without Latin letters fall back to 'avatar' (made unique with -2, -3, ...).
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    slug = slug[:MAX_SLUG_CHARS].rstrip("-")
    return slug or "avatar"


def _unique_slug(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _validate_language(language: object) -> str | None:
    if language in (None, ""):
        return None
    if language not in LANGUAGES:
        raise InputError(
            f"unsupported language {language!r}", "use en or zh, or leave it empty to detect per sentence"
        )
    return str(language)


def _validate_text(text: object, what: str, max_chars: int) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InputError(f"the {what} must be text")
    if len(text) > max_chars:
        raise InputError(f"the {what} is too long ({len(text)} characters)", f"keep it under {max_chars}")
    return text


def _validate_face_index(face_index: object) -> int | None:
    if face_index is None:
        return None
    if isinstance(face_index, bool) or not isinstance(face_index, int) or face_index < 0:
        raise InputError(
            f"face index must be a whole number >= 0, got {face_index!r}", "0 = the largest face"
        )
    return face_index


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class AvatarLibrary:
    """A folder of avatars. Cheap to create; every method reads the disk, nothing is cached.

    `landmarker` (a loaded lipsync.face_landmarker.FaceLandmarker) is optional: pass one to
    save its ~1 s load on every create/import; without it each call loads its own.
    """

    def __init__(self, root: Path | None = None, *, landmarker=None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_library_root()
        self._landmarker = landmarker
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"avatar library path is not a folder: {self.root}", "pick another folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(
                f"cannot create the avatar library folder {self.root}: {error.strerror}",
                "set AVATAR_LIBRARY to a writable folder",
            ) from error
        self._remove_abandoned()

    # -- reading ---------------------------------------------------------------------------------

    def list(self) -> list[AvatarRecord]:
        """Every readable avatar, sorted by display name; damaged folders are logged and skipped."""
        records = []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # staging / deleting folders, and the photo cache's .npz files
            try:
                records.append(_read_record(folder))
            except InputError as error:
                log.warning("skipping avatar folder %s: %s", folder, error)
        return sorted(records, key=lambda record: (record.settings.name.casefold(), record.slug))

    def get(self, name_or_slug: str) -> AvatarRecord:
        """By slug, else by display name (exact, then ignoring case); errors list what exists."""
        key = str(name_or_slug).strip()
        if _SLUG.match(key) and (self.root / key / _SETTINGS_FILE).is_file():
            return _read_record(self.root / key)
        records = self.list()
        matches = [record for record in records if record.settings.name == key]
        if not matches:
            matches = [record for record in records if record.settings.name.casefold() == key.casefold()]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise InputError(
                f"{len(matches)} avatars are named {key!r}",
                f"use the slug instead: {', '.join(record.slug for record in matches)}",
            )
        if not records:
            raise InputError(
                f"no avatar named {key!r}: the library at {self.root} is empty",
                "create one first: avatar library create NAME --photo PHOTO",
            )
        available = ", ".join(record.label for record in records[:20])
        more = f" and {len(records) - 20} more" if len(records) > 20 else ""
        raise InputError(f"no avatar named {key!r}", f"available: {available}{more}")

    # -- creating --------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        photo: Path,
        voice_sample: Path | None = None,
        *,
        transcript: str = "",
        language: str | None = None,
        persona: str = "",
        knowledge: Path | None = None,
        face_index: int | None = None,
    ) -> AvatarRecord:
        """Check every input, then save the avatar atomically. Nothing is written on an error.

        Takes ~1-2 s (face landmarker, plus ~1.5 s to analyse a voice sample). The transcript
        is stored as given: get Whisper's with avatar.library.checks.check_voice_sample.
        """
        settings = AvatarSettings(
            name=validate_name(name),
            language=_validate_language(language),
            persona=_validate_text(persona, "persona", MAX_PERSONA_CHARS),
            voice_transcript=_validate_text(transcript, "voice transcript", MAX_TRANSCRIPT_CHARS).strip(),
            face_index=_validate_face_index(face_index),
            created_at=_now_iso(),
        )
        photo = _input_file(photo, "photo")
        photo_check = self._check_photo(photo, settings.face_index)
        warnings = list(photo_check.warnings)
        profile = None
        if voice_sample is not None:
            voice_sample = _input_file(voice_sample, "voice sample")
            profile, voice_warnings = _voice_profile(voice_sample, settings.name)
            warnings += voice_warnings
        if knowledge is not None:
            knowledge = _input_file(knowledge, "knowledge base")
            _check_knowledge(knowledge)
        with self._staging() as staging:
            _copy_synced(photo, staging / f"photo{_photo_suffix(photo)}")
            _write_thumbnail(staging / _THUMBNAIL_FILE, photo, photo_check.face_box_xyxy)
            if voice_sample is not None:
                _copy_synced(voice_sample, staging / f"voice_sample{_file_suffix(voice_sample, '.audio')}")
                _write_synced(staging / _PROFILE_FILE, _profile_json(profile))
            if knowledge is not None:
                _copy_synced(knowledge, staging / f"knowledge{knowledge.suffix.lower()}")
            _write_synced(staging / _SETTINGS_FILE, settings.to_json())  # last: the folder is complete
            folder = self._commit(staging, slugify(settings.name))
        return replace(_read_record(folder), warnings=tuple(warnings))

    def rename(self, slug: str, new_name: str) -> AvatarRecord:
        """Change the display name, and the folder name with it (unless it already fits)."""
        record = self.get(slug)
        settings = replace(record.settings, name=validate_name(new_name))
        # avatar.json first: a crash before the folder rename leaves a valid avatar, old slug
        write_text_atomically(record.folder / _SETTINGS_FILE, settings.to_json())
        base = slugify(settings.name)
        if re.fullmatch(rf"{re.escape(base)}(-\d+)?", record.slug):
            return _read_record(record.folder)
        return _read_record(self._commit(record.folder, base))

    def duplicate(self, slug: str, new_name: str) -> AvatarRecord:
        """A copy with its own name and folder (for trying another persona on the same face)."""
        record = self.get(slug)
        settings = replace(record.settings, name=validate_name(new_name), created_at=_now_iso())
        with self._staging() as staging:
            for path in sorted(record.folder.iterdir()):
                if path.is_file() and path.name != _SETTINGS_FILE and _KNOWN_FILE.match(path.name):
                    _copy_synced(path, staging / path.name)
            _write_synced(staging / _SETTINGS_FILE, settings.to_json())
            folder = self._commit(staging, slugify(settings.name))
        return _read_record(folder)

    def delete(self, slug: str) -> None:
        """Remove an avatar: hidden first (one rename), then deleted, so it never half-exists."""
        record = self.get(slug)
        doomed = self.root / f"{DELETING_PREFIX}{secrets.token_hex(6)}"
        try:
            os.rename(record.folder, doomed)
        except OSError as error:
            raise InputError(
                f"cannot delete {record.slug}: {error.strerror}", f"check the permissions of {self.root}"
            ) from error
        _fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)

    # -- archives --------------------------------------------------------------------------------

    def export(self, slug: str, destination: Path) -> Path:
        """Write the avatar as one .zip (a folder destination gets `<slug>.zip`); returns its path."""
        record = self.get(slug)
        destination = Path(destination).expanduser()
        target = destination / f"{record.slug}.zip" if destination.is_dir() else destination
        if target.suffix.lower() != ".zip":
            raise InputError(f"export file must end in .zip, got {target.name}", f"e.g. {record.slug}.zip")
        if not target.parent.is_dir():
            raise InputError(f"folder does not exist: {target.parent}", "create it first")
        with open_atomically(target) as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(record.folder / _SETTINGS_FILE, _SETTINGS_FILE)
            for path in sorted(record.folder.iterdir()):
                if path.is_file() and path.name != _SETTINGS_FILE and _KNOWN_FILE.match(path.name):
                    archive.write(path, path.name)
        return target

    def import_archive(self, archive: Path, name: str | None = None) -> AvatarRecord:
        """Add an avatar from an exported .zip, checked like a new upload; `name` renames it.

        Refuses archives with absolute paths, '..', links, too many or too large members, or
        without a valid avatar.json. The thumbnail is always redrawn from the photo.
        """
        archive = _input_file(archive, "archive", max_bytes=MAX_ARCHIVE_TOTAL_BYTES)
        try:
            opened = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as error:
            raise InputError(
                f"{archive.name} is not a zip archive", "export the avatar again with `avatar library export`"
            ) from error
        with opened, self._staging() as staging:
            _extract_avatar(opened, archive.name, staging)
            settings = _archive_settings(staging / _SETTINGS_FILE, archive.name)
            if name is not None:
                settings = replace(settings, name=validate_name(name))
            warnings = self._check_extracted(staging, settings, archive.name)
            _write_synced(staging / _SETTINGS_FILE, settings.to_json(), overwrite=True)
            folder = self._commit(staging, slugify(settings.name))
        return replace(_read_record(folder), warnings=tuple(warnings))

    def _check_extracted(self, folder: Path, settings: AvatarSettings, source: str) -> list[str]:
        """The same checks as create(), on the files that came out of an archive."""
        try:
            photo = _single(folder, "photo")
            if photo is None:
                raise InputError("the archive has no photo", "export the avatar again")
            photo_check = self._check_photo(photo, settings.face_index)
            warnings = list(photo_check.warnings)
            (folder / _THUMBNAIL_FILE).unlink(missing_ok=True)
            _write_thumbnail(folder / _THUMBNAIL_FILE, photo, photo_check.face_box_xyxy)
            sample = _single(folder, "voice_sample")
            profile_path = folder / _PROFILE_FILE
            if profile_path.is_file():
                from voices.voice_profile import VoiceProfile

                VoiceProfile.load(profile_path)
            if sample is not None and profile_path.is_file():
                from avatar.library.checks import check_voice_sample

                warnings += check_voice_sample(sample, transcribe=False).warnings
            elif sample is not None:  # an archive edited by hand: rebuild the missing profile
                profile, voice_warnings = _voice_profile(sample, settings.name)
                warnings += voice_warnings
                _write_synced(profile_path, _profile_json(profile))
            knowledge = _single(folder, "knowledge")
            if knowledge is not None:
                _check_knowledge(knowledge)
        except InputError as error:
            raise InputError(f"{source}: {error.message}", error.hint or "re-export the avatar") from error
        return warnings

    # -- internals -------------------------------------------------------------------------------

    def _check_photo(self, photo: Path, face_index: int | None):
        from avatar.library.checks import check_photo

        return check_photo(photo, face_index, CHECK_SIZE_PX, landmarker=self._landmarker)

    @contextmanager
    def _staging(self) -> Iterator[Path]:
        """A hidden folder in the root, removed unless it was renamed into place."""
        staging = self.root / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
        staging.mkdir()
        try:
            yield staging
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _commit(self, folder: Path, base_slug: str) -> Path:
        """Rename `folder` to the first free `base_slug[-N]`, retrying if another process wins."""
        _fsync_dir(folder)
        for _ in range(100):
            taken = {path.name for path in self.root.iterdir()}
            target = self.root / _unique_slug(base_slug, taken)
            try:
                os.rename(folder, target)  # refuses an existing non-empty folder: never overwrites
            except OSError as error:
                if target.exists():
                    continue  # taken between the listing and the rename
                raise InputError(f"cannot save the avatar in {self.root}: {error.strerror}") from error
            _fsync_dir(self.root)
            return target
        raise InputError(f"cannot find a free folder name for {base_slug!r} in {self.root}")

    def _remove_abandoned(self) -> None:
        """Delete what crashed saves and deletes left behind (staging only once clearly stale)."""
        now_s = time.time()
        for path in self.root.iterdir():
            if path.name.startswith(DELETING_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(STAGING_PREFIX) and path.is_dir():
                try:
                    age_s = now_s - max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.iterdir()])
                except OSError:
                    continue
                if age_s > STALE_STAGING_AGE_S:
                    log.info("removing abandoned staging folder %s", path)
                    shutil.rmtree(path, ignore_errors=True)


def render_preview(
    record: AvatarRecord, text: str, output_path: Path, size_px: int = 256, *, engines=None
) -> Path:
    """A short MP4 of the avatar saying `text` in its matched voice, for the console's preview.

    Pass a `RenderEngines` to reuse loaded engines: the first call pays ~1-2 s of loading,
    then a sentence renders in about its own duration at 256 px on 2 cores.
    """
    from avatar.render.job import render_video
    from avatar.render.request import RenderRequest

    request = RenderRequest(
        photo_path=record.photo_path,
        output_path=Path(output_path),
        text=text,
        voice_sample_path=record.voice_profile_path,  # a saved profile: no re-analysis
        language=record.settings.language,
        size_px=size_px,
        face_index=record.settings.face_index,
    )
    return render_video(request, engines=engines).output_path


# -- files ---------------------------------------------------------------------------------------


def _read_record(folder: Path) -> AvatarRecord:
    settings_path = folder / _SETTINGS_FILE
    try:
        data = json.loads(settings_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InputError(f"{folder} has no {_SETTINGS_FILE}") from error
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{settings_path} is unreadable ({error})") from error
    settings = AvatarSettings.from_dict(data, str(settings_path))
    thumbnail = folder / _THUMBNAIL_FILE
    if not thumbnail.is_file():
        raise InputError(f"{folder} has no {_THUMBNAIL_FILE}")
    profile = folder / _PROFILE_FILE
    return AvatarRecord(
        slug=folder.name,
        folder=folder,
        settings=settings,
        photo_path=_single(folder, "photo", required=True),
        thumbnail_path=thumbnail,
        voice_sample_path=_single(folder, "voice_sample"),
        voice_profile_path=profile if profile.is_file() else None,
        knowledge_path=_single(folder, "knowledge"),
    )


def _archive_settings(path: Path, source: str) -> AvatarSettings:
    where = f"avatar.json in {source}"
    try:
        return AvatarSettings.from_dict(json.loads(path.read_text(encoding="utf-8")), where)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{where} is not valid JSON", "export the avatar again") from error
    except InputError as error:
        if error.message.startswith(where):
            raise
        raise InputError(f"{where}: {error.message}", error.hint or "export the avatar again") from error


def _single(folder: Path, stem: str, required: bool = False) -> Path | None:
    found = [path for path in folder.glob(f"{stem}.*") if path.is_file()]
    if len(found) > 1:
        raise InputError(f"{folder} has several {stem} files: {', '.join(sorted(p.name for p in found))}")
    if not found and required:
        raise InputError(f"{folder} has no {stem} file")
    return found[0] if found else None


def _input_file(path: Path, what: str, max_bytes: int = MAX_INPUT_FILE_BYTES) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{what} not found: {path}", "check the path")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}", "pass a file, not a folder")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{what} file is empty: {path}", "upload or export it again")
    if size > max_bytes:
        raise InputError(
            f"{what} file is too large ({size / 2**20:.0f} MB): {path}",
            f"use a file under {max_bytes // 2**20} MB",
        )
    return path


def _voice_profile(sample: Path, name: str):
    """Check the sample's limits, then analyse it: both raise InputError before anything is saved."""
    from avatar.library.checks import check_voice_sample
    from voices.voice_profile import build_voice_profile

    check = check_voice_sample(sample, transcribe=False)
    return build_voice_profile(sample, name=name), list(check.warnings)


def _profile_json(profile) -> str:
    return json.dumps(profile.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _check_knowledge(path: Path) -> None:
    from avatar.llm.knowledge import parse_knowledge_file

    try:
        parse_knowledge_file(path)
    except InputError as error:
        if error.hint:
            raise
        raise InputError(
            error.message, "use a UTF-8 .md, .txt or .faq file with Q:/A: lines, headings or paragraphs"
        ) from error


def _photo_suffix(photo: Path) -> str:
    """The real format from the file's magic bytes (uploads often arrive as 'image' or '.tmp')."""
    with photo.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head.startswith(b"BM"):
        return ".bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return _file_suffix(photo, ".img")


def _file_suffix(path: Path, fallback: str) -> str:
    suffix = path.suffix.lower()
    return suffix if _SAFE_SUFFIX.match(suffix) else fallback


def _write_thumbnail(path: Path, photo: Path, face_box_xyxy) -> None:
    """A square crop centred on the face (1.8 face heights wide), 160 px, PNG."""
    import cv2

    from lipsync.avatar_assets import fit_to_size, read_photo

    image = fit_to_size(read_photo(photo), CHECK_SIZE_PX)  # the image the face box refers to
    height, width = image.shape[:2]
    x0, y0, x1, y1 = face_box_xyxy
    side = int(min(max(1.8 * max(x1 - x0, y1 - y0), 16), height, width))
    left = int(min(max(round((x0 + x1) / 2 - side / 2), 0), width - side))
    top = int(min(max(round((y0 + y1) / 2 - side / 2), 0), height - side))
    crop = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > THUMBNAIL_PX else cv2.INTER_CUBIC
    thumbnail = cv2.resize(crop, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=interpolation)
    ok, encoded = cv2.imencode(".png", thumbnail)
    if not ok:
        raise InputError("cannot encode the thumbnail")
    _write_synced(path, encoded.tobytes())


def _write_synced(path: Path, data: str | bytes, overwrite: bool = False) -> None:
    """Write and fsync: the folder rename that follows must never publish unflushed data."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with path.open("wb" if overwrite else "xb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_synced(source: Path, target: Path) -> None:
    with source.open("rb") as reader, target.open("xb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fsync(writer.fileno())


def _fsync_dir(folder: Path) -> None:
    """Persist a folder's entries (new names, renames); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _extract_avatar(archive: zipfile.ZipFile, source: str, target: Path) -> None:
    """Copy the avatar's files out of `archive` into `target`, refusing anything unsafe.

    Accepts the files at the top level (as exported) or inside one folder (a re-zipped avatar
    folder); skips macOS metadata; reads at most the declared size of each member, so a lying
    header cannot fill the disk.
    """
    members = archive.infolist()
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise InputError(f"{source} has {len(members)} entries, an avatar has at most 6", "re-export it")
    wanted: dict[str, zipfile.ZipInfo] = {}
    total_bytes = 0
    for info in members:
        name = info.filename
        parts = re.split(r"[\\/]", name)
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise InputError(
                f"{source} contains an absolute path ({name})", "only use archives made by export"
            )
        if ".." in parts:
            raise InputError(
                f"{source} contains a path with '..' ({name})", "only use archives made by export"
            )
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise InputError(
                f"{source} contains a symbolic link ({name})", "only use archives made by export"
            )
        if info.is_dir() or parts[0] == "__MACOSX" or parts[-1].startswith("."):
            continue
        total_bytes += info.file_size
        if info.file_size > MAX_INPUT_FILE_BYTES or total_bytes > MAX_ARCHIVE_TOTAL_BYTES:
            raise InputError(f"{source} is too large once unpacked", "an avatar archive is a few MB")
        wanted[name] = info
    settings = [name for name in wanted if re.split(r"[\\/]", name)[-1] == _SETTINGS_FILE]
    if not settings:
        raise InputError(f"{source} has no avatar.json", "export the avatar with `avatar library export`")
    if len(settings) > 1:
        raise InputError(f"{source} holds several avatars ({len(settings)} avatar.json files)", "import one")
    prefix = settings[0][: -len(_SETTINGS_FILE)]
    if prefix.count("/") + prefix.count("\\") > 1:
        raise InputError(
            f"avatar.json in {source} is nested too deep ({settings[0]})", "re-export the avatar"
        )
    for name, info in wanted.items():
        base = name[len(prefix) :]
        if not name.startswith(prefix) or not _KNOWN_FILE.match(base):
            continue  # not part of an avatar (a README, other folders): ignored
        try:
            with archive.open(info) as reader, (target / base).open("xb") as writer:
                copied = 0
                while block := reader.read(1 << 20):
                    copied += len(block)
                    if copied > info.file_size:
                        raise InputError(f"{source}: {base} is larger than its header says", "re-export it")
                    writer.write(block)
                writer.flush()
                os.fsync(writer.fileno())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as error:
            raise InputError(f"{source} is damaged ({base}: {error})", "export the avatar again") from error
