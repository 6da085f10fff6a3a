"""What an avatar is on disk: its settings (avatar.json), its record, and what it brings to the engines.

`AvatarSettings` is what the user chose, validated field by field; `AvatarRecord` is one stored
avatar folder; `AvatarInputs` is the one view of an avatar that renders, live sessions and streams
take (see avatar.library.store for the folder layout and how changes stay atomic).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from avatar.core.errors import InputError

SCHEMA_VERSION = 1
MAX_NAME_CHARS = 64
MAX_PERSONA_CHARS = 4000
MAX_TRANSCRIPT_CHARS = 2000
MAX_SLUG_CHARS = 48
LANGUAGES = ("en", "zh")
SETTINGS_FILE = "avatar.json"
THUMBNAIL_FILE = "thumbnail.png"
PROFILE_FILE = "voice_profile.json"
KNOWN_FILE = re.compile(
    r"^(avatar\.json|thumbnail\.png|voice_profile\.json|(photo|voice_sample|knowledge)\.[a-z0-9]{1,8})$"
)
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


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
            language=validate_language(data.get("language")),
            persona=validate_text(data.get("persona", ""), "persona", MAX_PERSONA_CHARS),
            voice_transcript=validate_text(
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

    def inputs(self) -> AvatarInputs:
        """What this avatar brings to a render, a live session or a stream."""
        settings = self.settings
        return AvatarInputs(
            label=self.label,
            name=settings.name,
            photo_path=self.photo_path,
            face_index=settings.face_index,
            language=settings.language,
            persona_prompt=settings.persona,
            voice_sample_path=self.voice_sample_path,
            voice_transcript=settings.voice_transcript,
            voice_profile_path=self.voice_profile_path,
            knowledge_paths=(self.knowledge_path,) if self.knowledge_path is not None else (),
        )


@dataclass(frozen=True)
class AvatarInputs:
    """A library avatar as the engines see it: photo, face, voice, persona, knowledge, language.

    The one place that turns a stored avatar into engine inputs, so `avatar render --avatar`,
    `avatar serve --avatar`, the livestream's avatar switch and the console agree on it.
    """

    label: str  # 'Mona Lisa (mona-lisa)': how messages, pages and /health name it
    name: str  # display name, the default persona name
    photo_path: Path
    face_index: int | None
    language: str | None  # "en", "zh" or None (detect per sentence)
    persona_prompt: str  # "" when none
    voice_sample_path: Path | None  # the recording, for cloning engines
    voice_transcript: str  # what the recording says, "" when unknown
    voice_profile_path: Path | None  # its DSP voice profile, for the embedded voice
    knowledge_paths: tuple[Path, ...]

    def voice_reference(self, *, cloning: bool) -> tuple[Path | None, str | None]:
        """(voice file, what it says): cloning needs the recording and its transcript; DSP voice
        matching takes the saved profile (no re-analysis), else the recording."""
        if cloning:
            return self.voice_sample_path, self.voice_transcript or None
        return self.voice_profile_path or self.voice_sample_path, None


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


def unique_slug(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def validate_language(language: object) -> str | None:
    if language in (None, ""):
        return None
    if language not in LANGUAGES:
        raise InputError(
            f"unsupported language {language!r}", "use en or zh, or leave it empty to detect per sentence"
        )
    return str(language)


def validate_text(text: object, what: str, max_chars: int) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InputError(f"the {what} must be text")
    if len(text) > max_chars:
        raise InputError(f"the {what} is too long ({len(text)} characters)", f"keep it under {max_chars}")
    return text


def validate_face_index(face_index: object) -> int | None:
    if face_index is None:
        return None
    if isinstance(face_index, bool) or not isinstance(face_index, int) or face_index < 0:
        raise InputError(
            f"face index must be a whole number >= 0, got {face_index!r}", "0 = the largest face"
        )
    return face_index


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(folder: Path) -> AvatarRecord:
    settings_path = folder / SETTINGS_FILE
    try:
        data = json.loads(settings_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InputError(f"{folder} has no {SETTINGS_FILE}") from error
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{settings_path} is unreadable ({error})") from error
    settings = AvatarSettings.from_dict(data, str(settings_path))
    thumbnail = folder / THUMBNAIL_FILE
    if not thumbnail.is_file():
        raise InputError(f"{folder} has no {THUMBNAIL_FILE}")
    profile = folder / PROFILE_FILE
    return AvatarRecord(
        slug=folder.name,
        folder=folder,
        settings=settings,
        photo_path=single_file(folder, "photo", required=True),
        thumbnail_path=thumbnail,
        voice_sample_path=single_file(folder, "voice_sample"),
        voice_profile_path=profile if profile.is_file() else None,
        knowledge_path=single_file(folder, "knowledge"),
    )


def single_file(folder: Path, stem: str, required: bool = False) -> Path | None:
    found = [path for path in folder.glob(f"{stem}.*") if path.is_file()]
    if len(found) > 1:
        raise InputError(f"{folder} has several {stem} files: {', '.join(sorted(p.name for p in found))}")
    if not found and required:
        raise InputError(f"{folder} has no {stem} file")
    return found[0] if found else None
