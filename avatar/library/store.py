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

import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from avatar.core.errors import InputError
from avatar.core.storage import fsync_dir, write_text_atomically
from avatar.library.archive import (
    archive_settings,
    check_extracted,
    extract_avatar,
    open_archive,
    write_archive,
)
from avatar.library.files import (
    CHECK_SIZE_PX,
    check_knowledge,
    copy_synced,
    file_suffix,
    input_file,
    photo_suffix,
    profile_json,
    profile_voice_sample,
    write_synced,
    write_thumbnail,
)
from avatar.library.records import (
    KNOWN_FILE,
    MAX_PERSONA_CHARS,
    MAX_SLUG_CHARS,
    MAX_TRANSCRIPT_CHARS,
    PROFILE_FILE,
    SETTINGS_FILE,
    SLUG_PATTERN,
    THUMBNAIL_FILE,
    AvatarInputs,
    AvatarRecord,
    AvatarSettings,
    default_library_root,
    now_iso,
    read_record,
    slugify,
    unique_slug,
    validate_face_index,
    validate_language,
    validate_name,
    validate_text,
)

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
DELETING_PREFIX = ".deleting-"
STALE_STAGING_AGE_S = 600.0  # a save takes seconds; ten idle minutes means its process is gone


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
                records.append(read_record(folder))
            except InputError as error:
                log.warning("skipping avatar folder %s: %s", folder, error)
        return sorted(records, key=lambda record: (record.settings.name.casefold(), record.slug))

    def get(self, name_or_slug: str) -> AvatarRecord:
        """By slug, else by display name (exact, then ignoring case); errors list what exists."""
        key = str(name_or_slug).strip()
        # A slug is at most MAX_SLUG_CHARS: a longer key made is_file() raise "File name too long".
        slug_like = len(key) <= MAX_SLUG_CHARS and SLUG_PATTERN.match(key)
        if slug_like and (self.root / key / SETTINGS_FILE).is_file():
            return read_record(self.root / key)
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

    def inputs(self, name_or_slug: str) -> AvatarInputs:
        """The avatar's engine inputs (see AvatarInputs); errors as for get()."""
        return self.get(name_or_slug).inputs()

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
            language=validate_language(language),
            persona=validate_text(persona, "persona", MAX_PERSONA_CHARS),
            voice_transcript=validate_text(transcript, "voice transcript", MAX_TRANSCRIPT_CHARS).strip(),
            face_index=validate_face_index(face_index),
            created_at=now_iso(),
        )
        photo = input_file(photo, "photo")
        photo_check = self._check_photo(photo, settings.face_index)
        warnings = list(photo_check.warnings)
        profile = None
        if voice_sample is not None:
            voice_sample = input_file(voice_sample, "voice sample")
            profile, voice_warnings = profile_voice_sample(voice_sample, settings.name)
            warnings += voice_warnings
        if knowledge is not None:
            knowledge = input_file(knowledge, "knowledge base")
            check_knowledge(knowledge)
        with self._staging() as staging:
            copy_synced(photo, staging / f"photo{photo_suffix(photo)}")
            write_thumbnail(staging / THUMBNAIL_FILE, photo, photo_check.face_box_xyxy)
            if voice_sample is not None:
                copy_synced(voice_sample, staging / f"voice_sample{file_suffix(voice_sample, '.audio')}")
                write_synced(staging / PROFILE_FILE, profile_json(profile))
            if knowledge is not None:
                copy_synced(knowledge, staging / f"knowledge{knowledge.suffix.lower()}")
            write_synced(staging / SETTINGS_FILE, settings.to_json())  # last: the folder is complete
            folder = self._commit(staging, slugify(settings.name))
        return replace(read_record(folder), warnings=tuple(warnings))

    def rename(self, slug: str, new_name: str) -> AvatarRecord:
        """Change the display name, and the folder name with it (unless it already fits)."""
        record = self.get(slug)
        settings = replace(record.settings, name=validate_name(new_name))
        # avatar.json first: a crash before the folder rename leaves a valid avatar, old slug
        write_text_atomically(record.folder / SETTINGS_FILE, settings.to_json())
        base = slugify(settings.name)
        if re.fullmatch(rf"{re.escape(base)}(-\d+)?", record.slug):
            return read_record(record.folder)
        return read_record(self._commit(record.folder, base))

    def duplicate(self, slug: str, new_name: str) -> AvatarRecord:
        """A copy with its own name and folder (for trying another persona on the same face)."""
        record = self.get(slug)
        settings = replace(record.settings, name=validate_name(new_name), created_at=now_iso())
        with self._staging() as staging:
            for path in sorted(record.folder.iterdir()):
                if path.is_file() and path.name != SETTINGS_FILE and KNOWN_FILE.match(path.name):
                    copy_synced(path, staging / path.name)
            write_synced(staging / SETTINGS_FILE, settings.to_json())
            folder = self._commit(staging, slugify(settings.name))
        return read_record(folder)

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
        fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)

    # -- archives --------------------------------------------------------------------------------

    def export(self, slug: str, destination: Path) -> Path:
        """Write the avatar as one .zip (a folder destination gets `<slug>.zip`); returns its path."""
        return write_archive(self.get(slug), destination)

    def import_archive(self, archive: Path, name: str | None = None) -> AvatarRecord:
        """Add an avatar from an exported .zip, checked like a new upload; `name` renames it.

        Refuses archives with absolute paths, '..', links, too many or too large members, or
        without a valid avatar.json. The thumbnail is always redrawn from the photo.
        """
        archive = Path(archive)
        with open_archive(archive) as opened, self._staging() as staging:
            extract_avatar(opened, archive.name, staging)
            settings = archive_settings(staging / SETTINGS_FILE, archive.name)
            if name is not None:
                settings = replace(settings, name=validate_name(name))
            warnings = check_extracted(staging, settings, archive.name, self._check_photo)
            write_synced(staging / SETTINGS_FILE, settings.to_json(), overwrite=True)
            folder = self._commit(staging, slugify(settings.name))
        return replace(read_record(folder), warnings=tuple(warnings))

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
        fsync_dir(folder)
        for _ in range(100):
            taken = {path.name for path in self.root.iterdir()}
            target = self.root / unique_slug(base_slug, taken)
            try:
                os.rename(folder, target)  # refuses an existing non-empty folder: never overwrites
            except OSError as error:
                if target.exists():
                    continue  # taken between the listing and the rename
                raise InputError(f"cannot save the avatar in {self.root}: {error.strerror}") from error
            fsync_dir(self.root)
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

    Pass an `EngineSet` to reuse loaded engines: the first call pays ~1-2 s of loading,
    then a sentence renders in about its own duration at 256 px on 2 cores.
    """
    from avatar.render.job import render_video
    from avatar.render.request import RenderRequest

    avatar = record.inputs()
    request = RenderRequest(
        photo_path=avatar.photo_path,
        output_path=Path(output_path),
        text=text,
        voice_sample_path=avatar.voice_reference(cloning=False)[0],
        language=avatar.language,
        size_px=size_px,
        face_index=avatar.face_index,
    )
    return render_video(request, engines=engines).output_path
