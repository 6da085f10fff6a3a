"""Avatar archives: one .zip per avatar (export), read back with every check of a new upload (import).

An archive holds the avatar's files at the top level (or inside one folder, for a re-zipped avatar
folder). Reading one refuses absolute paths, '..', links, encrypted members, too many or too large
members, members that unpack to far more than they take in the zip (a zip bomb), and a missing or
invalid avatar.json, all before anything is written, so an archive from anywhere can be opened
safely.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avatar.core.errors import InputError
from avatar.core.storage import open_atomically
from avatar.library.files import (
    MAX_INPUT_FILE_BYTES,
    check_knowledge,
    input_file,
    profile_json,
    profile_voice_sample,
    write_synced,
    write_thumbnail,
)
from avatar.library.records import (
    KNOWN_FILE,
    PROFILE_FILE,
    SETTINGS_FILE,
    THUMBNAIL_FILE,
    AvatarRecord,
    AvatarSettings,
    single_file,
)

# A real avatar is a few MB; the limits stop zip bombs and mistaken uploads early.
MAX_ARCHIVE_MEMBERS = 64
MAX_ARCHIVE_TOTAL_BYTES = 4 * MAX_INPUT_FILE_BYTES
# Photos, recordings and JSON compress 1-10x; a zip bomb compresses 1000x. Members this small
# cannot hurt whatever their ratio (an avatar.json of one repeated space).
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_FROM_BYTES = 1 << 20
ENCRYPTED_FLAG = 0x1  # general purpose bit 0 (ZipCrypto or AES)


def write_archive(record: AvatarRecord, destination: Path) -> Path:
    """Write the avatar as one .zip (a folder destination gets `<slug>.zip`); returns its path."""
    destination = Path(destination).expanduser()
    target = destination / f"{record.slug}.zip" if destination.is_dir() else destination
    if target.suffix.lower() != ".zip":
        raise InputError(f"export file must end in .zip, got {target.name}", f"e.g. {record.slug}.zip")
    if not target.parent.is_dir():
        raise InputError(f"folder does not exist: {target.parent}", "create it first")
    with open_atomically(target) as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(record.folder / SETTINGS_FILE, SETTINGS_FILE)
        for path in sorted(record.folder.iterdir()):
            if path.is_file() and path.name != SETTINGS_FILE and KNOWN_FILE.match(path.name):
                archive.write(path, path.name)
    return target


@contextmanager
def open_archive(path: Path) -> Iterator[zipfile.ZipFile]:
    """The checked archive file, opened; one line saying why when it is not a zip."""
    path = input_file(path, "archive", max_bytes=MAX_ARCHIVE_TOTAL_BYTES)
    try:
        opened = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise InputError(
            f"{path.name} is not a zip archive", "export the avatar again with `avatar library export`"
        ) from error
    with opened:
        yield opened


def check_extracted(folder: Path, settings: AvatarSettings, source: str, check_photo) -> list[str]:
    """The same checks as create(), on the files that came out of an archive; `check_photo(photo,
    face_index)` is the library's photo check (it returns a PhotoCheck)."""
    try:
        photo = single_file(folder, "photo")
        if photo is None:
            raise InputError("the archive has no photo", "export the avatar again")
        photo_check = check_photo(photo, settings.face_index)
        warnings = list(photo_check.warnings)
        (folder / THUMBNAIL_FILE).unlink(missing_ok=True)
        write_thumbnail(folder / THUMBNAIL_FILE, photo, photo_check.face_box_xyxy)
        sample = single_file(folder, "voice_sample")
        profile_path = folder / PROFILE_FILE
        if profile_path.is_file():
            from voices.voice_profile import VoiceProfile

            VoiceProfile.load(profile_path)
        if sample is not None and profile_path.is_file():
            from avatar.library.checks import check_voice_sample

            warnings += check_voice_sample(sample, transcribe=False).warnings
        elif sample is not None:  # an archive edited by hand: rebuild the missing profile
            profile, voice_warnings = profile_voice_sample(sample, settings.name)
            warnings += voice_warnings
            write_synced(profile_path, profile_json(profile))
        knowledge = single_file(folder, "knowledge")
        if knowledge is not None:
            check_knowledge(knowledge)
    except InputError as error:
        raise InputError(f"{source}: {error.message}", error.hint or "re-export the avatar") from error
    return warnings


def archive_settings(path: Path, source: str) -> AvatarSettings:
    where = f"avatar.json in {source}"
    try:
        return AvatarSettings.from_dict(json.loads(path.read_text(encoding="utf-8")), where)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:  # `[[[[...` 60 000 deep
        raise InputError(f"{where} is not valid JSON", "export the avatar again") from error
    except InputError as error:
        if error.message.startswith(where):
            raise
        raise InputError(f"{where}: {error.message}", error.hint or "export the avatar again") from error


def extract_avatar(archive: zipfile.ZipFile, source: str, target: Path) -> None:
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
        if info.flag_bits & ENCRYPTED_FLAG:
            raise InputError(
                f"{source} is encrypted ({name} needs a password)",
                "zip the avatar without a password, or export it again with `avatar library export`",
            )
        total_bytes += info.file_size
        if info.file_size > MAX_INPUT_FILE_BYTES or total_bytes > MAX_ARCHIVE_TOTAL_BYTES:
            raise InputError(f"{source} is too large once unpacked", "an avatar archive is a few MB")
        if info.file_size >= RATIO_CHECK_FROM_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1
        ):
            raise InputError(
                f"{source}: {name} unpacks to {info.file_size / max(info.compress_size, 1):.0f} times "
                f"its packed size (the limit is {MAX_COMPRESSION_RATIO}x): a zip bomb?",
                "only use archives made by export",
            )
        wanted[name] = info
    settings = [name for name in wanted if re.split(r"[\\/]", name)[-1] == SETTINGS_FILE]
    if not settings:
        raise InputError(f"{source} has no avatar.json", "export the avatar with `avatar library export`")
    if len(settings) > 1:
        raise InputError(f"{source} holds several avatars ({len(settings)} avatar.json files)", "import one")
    prefix = settings[0][: -len(SETTINGS_FILE)]
    if prefix.count("/") + prefix.count("\\") > 1:
        raise InputError(
            f"avatar.json in {source} is nested too deep ({settings[0]})", "re-export the avatar"
        )
    for name, info in wanted.items():
        base = name[len(prefix) :]
        if not name.startswith(prefix) or not KNOWN_FILE.match(base):
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
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            NotImplementedError,
            OSError,
            EOFError,
            RuntimeError,  # zipfile's "password required" for an encryption flag only the header shows
        ) as error:
            raise InputError(f"{source} is damaged ({base}: {error})", "export the avatar again") from error
