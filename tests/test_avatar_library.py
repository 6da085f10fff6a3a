"""The avatar library: files on disk, atomic saves, slugs, archives, and every bad input refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from avatar.core.errors import InputError
from avatar.library.records import default_library_root, slugify
from avatar.library.store import STALE_STAGING_AGE_S, AvatarLibrary, render_preview
from tests.conftest import ASSETS, ROOT, SAMPLE_PORTRAIT, SAMPLE_VOICE, eval_file

KNOWLEDGE = ASSETS / "knowledge" / "shop_faq.md"
PERSONA = "You are Mona, a calm museum guide. Answer in two sentences."


def _input_error(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as caught:
        call(*args, **kwargs)
    assert caught.value.hint, f"no hint for: {caught.value.message}"
    return caught.value


def _entries(root: Path) -> list[str]:
    """Everything in the library folder except the photo-preparation cache files."""
    return sorted(path.name for path in root.iterdir())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def full(tmp_path_factory, landmarker):
    """A library with one avatar that has everything: voice, transcript, persona, knowledge."""
    library = AvatarLibrary(tmp_path_factory.mktemp("library"), landmarker=landmarker)
    record = library.create(
        "Mona Lisa",
        SAMPLE_PORTRAIT,
        SAMPLE_VOICE,
        transcript="unless a system is established",
        language="en",
        persona=PERSONA,
        knowledge=KNOWLEDGE,
    )
    return library, record


@pytest.fixture
def library(tmp_path, landmarker):
    return AvatarLibrary(tmp_path / "library", landmarker=landmarker)


def test_create_writes_the_documented_folder(full):
    library, record = full
    assert record.slug == "mona-lisa" and record.folder == library.root / "mona-lisa"
    assert _entries(record.folder) == [
        "avatar.json",
        "knowledge.md",
        "photo.jpg",
        "thumbnail.png",
        "voice_profile.json",
        "voice_sample.flac",
    ]
    assert _entries(library.root) == ["mona-lisa"], "no staging folder left behind"
    assert record.photo_path.read_bytes() == SAMPLE_PORTRAIT.read_bytes()
    assert record.voice_sample_path.read_bytes() == SAMPLE_VOICE.read_bytes()
    assert record.knowledge_path.read_bytes() == KNOWLEDGE.read_bytes()
    stored = json.loads((record.folder / "avatar.json").read_text(encoding="utf-8"))
    assert stored == {
        "name": "Mona Lisa",
        "language": "en",
        "persona": PERSONA,
        "voice_transcript": "unless a system is established",
        "face_index": None,
        "created_at": stored["created_at"],
        "schema_version": 1,
    }
    assert datetime.fromisoformat(stored["created_at"]).utcoffset().total_seconds() == 0
    assert record.warnings == ()


def test_thumbnail_is_a_160px_face_crop(full):
    import cv2

    _, record = full
    thumbnail = cv2.imread(str(record.thumbnail_path))
    assert thumbnail.shape == (160, 160, 3)
    from lipsync.face_landmarker import FaceLandmarker

    with FaceLandmarker() as landmarker:
        (face,) = landmarker.detect(thumbnail)
    x0, y0, x1, y1 = face.box_xyxy
    assert 60 < (y1 - y0) < 120, "the face fills about half the thumbnail"
    assert abs((x0 + x1) / 2 - 80) < 20 and abs((y0 + y1) / 2 - 80) < 20, "centred on the face"


def test_voice_profile_reopens_and_names_the_sample(full):
    from voices.voice_profile import VoiceProfile

    _, record = full
    profile = VoiceProfile.load(record.voice_profile_path)
    assert profile.sample_sha256 == _sha256(SAMPLE_VOICE)
    assert profile.sample_duration_s == pytest.approx(7.66, abs=0.01)
    assert 150 < profile.f0.median_f0_hz < 230  # a female reader


def test_get_by_slug_name_and_case_and_unknown_lists_names(full):
    library, record = full
    assert library.get("mona-lisa") == record
    assert library.get("Mona Lisa").slug == "mona-lisa"
    assert library.get("  mona lisa ").slug == "mona-lisa"
    error = _input_error(library.get, "Leonardo")
    assert error.message == "no avatar named 'Leonardo'"
    assert error.hint == "available: Mona Lisa (mona-lisa)"


def test_inputs_are_what_the_engines_take_from_an_avatar(full, library):
    """One view of an avatar for renders, live sessions and streams: cloning takes the recording
    and its transcript, DSP matching the saved profile; a voiceless avatar brings neither."""
    library_full, record = full
    avatar = library_full.inputs("Mona Lisa")
    assert avatar == record.inputs()
    assert (avatar.label, avatar.name, avatar.photo_path) == (record.label, "Mona Lisa", record.photo_path)
    assert (avatar.language, avatar.persona_prompt) == ("en", PERSONA)
    assert avatar.knowledge_paths == (record.knowledge_path,)
    assert avatar.voice_reference(cloning=False) == (record.voice_profile_path, None)
    assert avatar.voice_reference(cloning=True) == (
        record.voice_sample_path,
        "unless a system is established",
    )
    with pytest.raises(AttributeError):
        avatar.photo_path = record.thumbnail_path  # frozen: a caller cannot change the library's view
    voiceless = library.create("Plain", SAMPLE_PORTRAIT).inputs()
    assert voiceless.voice_reference(cloning=False) == (None, None) and voiceless.knowledge_paths == ()


def test_empty_library_says_how_to_create(library):
    error = _input_error(library.get, "anyone")
    assert "is empty" in error.message and "avatar library create" in error.hint
    assert library.list() == []


def test_slugs_are_ascii_and_unique_display_names_any_script(library):
    assert slugify("Zoë Smith!") == "zoe-smith"
    assert slugify("小美") == "avatar"
    assert slugify("  --Ünïcode  ©  Name-- ") == "unicode-name"
    assert len(slugify("x" * 64)) == 48
    first = library.create("小美", SAMPLE_PORTRAIT)
    second = library.create("小红", SAMPLE_PORTRAIT)
    third = library.create("Mona", SAMPLE_PORTRAIT)
    twin = library.create("Mona", SAMPLE_PORTRAIT)
    assert [first.slug, second.slug, third.slug, twin.slug] == ["avatar", "avatar-2", "mona", "mona-2"]
    assert [(r.settings.name, r.slug) for r in library.list()] == [
        ("Mona", "mona"),
        ("Mona", "mona-2"),
        ("小红", "avatar-2"),
        ("小美", "avatar"),
    ]
    assert library.get("小美").slug == "avatar"
    error = _input_error(library.get, "Mona")
    assert (
        error.message == "2 avatars are named 'Mona'" and error.hint == "use the slug instead: mona, mona-2"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "the avatar name is empty"),
        ("   ", "the avatar name is empty"),
        ("x" * 65, "the avatar name is too long (65 characters)"),
        ("two\nlines", "the avatar name contains control characters"),
    ],
)
def test_bad_names_are_refused_before_writing(library, name, message):
    error = _input_error(library.create, name, SAMPLE_PORTRAIT)
    assert error.message.startswith(message)
    assert _entries(library.root) == []


def test_a_64_character_name_in_any_script_is_kept(library):
    name = "美" * 64
    record = library.create(name, SAMPLE_PORTRAIT)
    assert record.settings.name == name and library.get(name).slug == "avatar"


def _bad_inputs(tmp_path: Path) -> list[tuple[dict, str]]:
    """(create() keyword arguments, regex matching the message's start) for each input to refuse."""
    import soundfile

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    pcm, rate_hz = soundfile.read(str(SAMPLE_VOICE), dtype="float32")
    short = tmp_path / "short.wav"
    soundfile.write(str(short), pcm[: 2 * rate_hz], rate_hz)
    silent = tmp_path / "silent.wav"
    soundfile.write(str(silent), np.zeros(5 * rate_hz, np.float32), rate_hz)
    broken_audio = tmp_path / "broken.flac"
    broken_audio.write_bytes(SAMPLE_VOICE.read_bytes()[:3000])
    empty_faq = tmp_path / "empty.md"
    empty_faq.write_bytes(b"")
    blank_faq = tmp_path / "blank.md"
    blank_faq.write_text("  \n", encoding="utf-8")
    latin1_faq = tmp_path / "latin1.md"
    latin1_faq.write_bytes("Q: Où?\nA: Ici, café.\n".encode("latin-1"))
    pdf = tmp_path / "faq.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    photo = {"photo": SAMPLE_PORTRAIT}
    return [
        ({"photo": tmp_path / "missing.jpg"}, "photo not found"),
        ({"photo": empty}, "photo file is empty"),
        ({"photo": corrupt}, "cannot read corrupt.jpg as an image"),
        ({**photo, "voice_sample": short}, "voice sample is too short: 2.0 s"),
        ({**photo, "voice_sample": silent}, "audio file contains only silence"),
        ({**photo, "voice_sample": broken_audio}, "audio in .*broken.flac is corrupt"),
        ({**photo, "knowledge": empty_faq}, "knowledge base file is empty"),
        ({**photo, "knowledge": blank_faq}, "knowledge base file .*blank.md is empty"),
        ({**photo, "knowledge": latin1_faq}, "knowledge base file .*latin1.md is not UTF-8 text"),
        ({**photo, "knowledge": pdf}, "knowledge base file .*faq.pdf must be .md, .txt or .faq"),
        ({**photo, "language": "fr"}, "unsupported language 'fr'"),
        ({**photo, "persona": "x" * 4001}, r"the persona is too long \(4001 characters\)"),
        ({**photo, "face_index": -1}, "face index must be a whole number >= 0"),
        ({**photo, "face_index": 3}, "face index 3 does not exist"),
    ]


def test_every_bad_input_is_refused_before_anything_is_written(tmp_path, library):
    for kwargs, message in _bad_inputs(tmp_path):
        error = _input_error(library.create, "Bad", **kwargs)
        assert re.match(message, error.message), (kwargs, error.message)
        assert _entries(library.root) == [], f"{kwargs} left files behind"


def test_photos_without_faces_are_refused(library):
    for name in ("faces/no_face_coffee_cup.png", "faces/no_human_face_cat_chelsea.png"):
        photo = eval_file(name)
        assert _input_error(library.create, "Cup", photo).message == f"no face found in {photo.name}"
    assert _entries(library.root) == []


def test_two_faces_save_the_warning_and_the_chosen_face(library):
    photo = eval_file("faces/two_faces_obama_biden.jpg")
    largest = library.create("Pair", photo)
    assert largest.warnings[0].startswith("2 faces found: using the largest")
    chosen = library.create("Second", photo, face_index=1)
    assert chosen.settings.face_index == 1 and library.get("second").settings.face_index == 1
    assert not any("faces found" in warning for warning in chosen.warnings)
    assert chosen.photo_path.read_bytes() == photo.read_bytes()


def test_rename_moves_the_folder_and_keeps_a_fitting_slug(library):
    record = library.create("Mona", SAMPLE_PORTRAIT)
    renamed = library.rename("mona", "Gioconda")
    assert renamed.slug == "gioconda" and renamed.settings.name == "Gioconda"
    assert _entries(library.root) == ["gioconda"]
    assert json.loads((renamed.folder / "avatar.json").read_text(encoding="utf-8"))["name"] == "Gioconda"
    assert renamed.settings.created_at == record.settings.created_at
    assert renamed.photo_path.read_bytes() == SAMPLE_PORTRAIT.read_bytes()
    same_slug = library.rename("gioconda", "GIOCONDA")
    assert same_slug.slug == "gioconda" and same_slug.settings.name == "GIOCONDA"
    assert _input_error(library.rename, "gioconda", "").message == "the avatar name is empty"
    assert library.get("gioconda").settings.name == "GIOCONDA"


def test_duplicate_copies_files_under_a_new_name(full, tmp_path, landmarker):
    library = AvatarLibrary(tmp_path / "library", landmarker=landmarker)
    source = library.import_archive(full[0].export("mona-lisa", tmp_path / "mona.zip"))
    copy = library.duplicate(source.slug, "Mona (formal)")
    assert copy.slug == "mona-formal" and copy.settings.name == "Mona (formal)"
    assert copy.settings.persona == PERSONA and copy.settings.language == "en"
    for name in ("photo.jpg", "voice_sample.flac", "voice_profile.json", "knowledge.md", "thumbnail.png"):
        assert (copy.folder / name).read_bytes() == (source.folder / name).read_bytes()
    assert library.get(source.slug).settings.name == "Mona Lisa", "the original is untouched"


def test_delete_removes_the_folder(library):
    library.create("Mona", SAMPLE_PORTRAIT)
    keep = library.create("Keep", SAMPLE_PORTRAIT)
    library.delete("mona")
    assert _entries(library.root) == ["keep"]
    assert library.list() == [keep]
    assert "no avatar named 'mona'" in _input_error(library.delete, "mona").message


def test_export_and_import_round_trip(full, tmp_path, landmarker):
    source_library, source = full
    archive = source_library.export("Mona Lisa", tmp_path)
    assert archive == tmp_path / "mona-lisa.zip"
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == _entries(source.folder)
    target = AvatarLibrary(tmp_path / "other", landmarker=landmarker)
    imported = target.import_archive(archive)
    again = target.import_archive(archive, name="Mona 2")
    assert (imported.slug, again.slug) == ("mona-lisa", "mona-2")
    assert imported.settings == source.settings
    assert again.settings.name == "Mona 2" and again.settings.persona == PERSONA
    for name in ("photo.jpg", "voice_sample.flac", "voice_profile.json", "knowledge.md", "thumbnail.png"):
        assert (imported.folder / name).read_bytes() == (source.folder / name).read_bytes(), name
    assert _entries(target.root) == ["mona-2", "mona-lisa"]


def test_export_refuses_other_extensions_and_missing_folders(full, tmp_path):
    library, _ = full
    assert "must end in .zip" in _input_error(library.export, "mona-lisa", tmp_path / "mona.tar").message
    assert (
        "folder does not exist"
        in _input_error(library.export, "mona-lisa", tmp_path / "no" / "a.zip").message
    )


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def exported(full, tmp_path_factory) -> dict[str, bytes]:
    """The members of a good export, to build bad archives from."""
    archive = full[0].export("mona-lisa", tmp_path_factory.mktemp("export"))
    with zipfile.ZipFile(archive) as opened:
        return {name: opened.read(name) for name in opened.namelist()}


def test_archives_in_a_folder_and_with_mac_metadata_are_accepted(library, tmp_path, exported):
    members = {f"mona-lisa/{name}": data for name, data in exported.items()}
    members["__MACOSX/mona-lisa/._photo.jpg"] = b"\x00\x05\x16\x07"
    members["mona-lisa/.DS_Store"] = b"junk"
    record = library.import_archive(_zip(tmp_path / "folder.zip", members))
    assert record.slug == "mona-lisa" and _entries(record.folder) == sorted(exported)


def test_unsafe_or_broken_archives_are_refused(library, tmp_path, exported):
    settings = json.loads(exported["avatar.json"])
    no_face = eval_file("faces/no_face_coffee_cup.png").read_bytes()
    cases = {
        "dotdot": ({**exported, "../evil.txt": b"x"}, "contains a path with '..' (../evil.txt)"),
        "absolute": ({**exported, "/etc/evil": b"x"}, "contains an absolute path (/etc/evil)"),
        "windows": ({**exported, "C:/evil": b"x"}, "contains an absolute path (C:/evil)"),
        "nosettings": ({k: v for k, v in exported.items() if k != "avatar.json"}, "has no avatar.json"),
        "badjson": (
            {**exported, "avatar.json": b"{not json"},
            "avatar.json in badjson.zip is not valid JSON",
        ),
        "future": (
            {**exported, "avatar.json": json.dumps({**settings, "schema_version": 9}).encode()},
            "avatar.json in future.zip has schema version 9",
        ),
        "noname": (
            {**exported, "avatar.json": json.dumps({**settings, "name": ""}).encode()},
            "avatar.json in noname.zip: the avatar name is empty",
        ),
        "nophoto": (
            {k: v for k, v in exported.items() if k != "photo.jpg"},
            "nophoto.zip: the archive has no photo",
        ),
        "noface": ({**exported, "photo.jpg": no_face}, "noface.zip: no face found in photo.jpg"),
        "twice": ({**exported, "b/avatar.json": exported["avatar.json"]}, "holds several avatars"),
    }
    for name, (members, message) in cases.items():
        error = _input_error(library.import_archive, _zip(tmp_path / f"{name}.zip", members))
        assert message in error.message, (name, error.message)
    not_zip = tmp_path / "photo.zip"
    not_zip.write_bytes(SAMPLE_PORTRAIT.read_bytes())
    assert _input_error(library.import_archive, not_zip).message == "photo.zip is not a zip archive"
    link = zipfile.ZipInfo("photo.jpg")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as archive:
        archive.writestr("avatar.json", exported["avatar.json"])
        archive.writestr(link, "/etc/passwd")
    assert "symbolic link" in _input_error(library.import_archive, tmp_path / "link.zip").message
    assert _entries(library.root) == [], "failed imports leave nothing, not even staging folders"


def test_a_failure_mid_save_leaves_no_avatar(library, monkeypatch):
    import avatar.library.store as module

    written = []

    def crash(path, *args):
        written.extend(_entries(path.parent))  # the photo is already in the staging folder
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "write_thumbnail", crash)
    with pytest.raises(OSError, match="No space left"):
        library.create("Mona", SAMPLE_PORTRAIT)
    assert written == ["photo.jpg"]
    assert _entries(library.root) == [] and library.list() == []


def test_a_failure_writing_the_voice_profile_leaves_no_avatar(library, monkeypatch):
    import avatar.library.store as module

    def crash(profile):
        raise KeyboardInterrupt  # Ctrl-C during the save

    monkeypatch.setattr(module, "profile_json", crash)
    with pytest.raises(KeyboardInterrupt):
        library.create("Mona", SAMPLE_PORTRAIT, SAMPLE_VOICE)
    assert _entries(library.root) == [] and library.list() == []


CRASHING_SAVE = """
import os, sys
from pathlib import Path
import avatar.library.store as module
module.write_thumbnail = lambda *args: os._exit(3)  # the process dies mid-save: no cleanup runs
module.AvatarLibrary(Path(sys.argv[1])).create("Mona", Path(sys.argv[2]))
"""


def test_a_killed_save_is_invisible_and_cleaned_once_stale(tmp_path, landmarker):
    root = tmp_path / "library"
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_SAVE, str(root), str(SAMPLE_PORTRAIT)], cwd=ROOT, timeout=120
    )
    assert done.returncode == 3
    (staging,) = root.iterdir()
    assert staging.name.startswith(".staging-") and _entries(staging) == ["photo.jpg"]
    library = AvatarLibrary(root, landmarker=landmarker)
    assert staging.exists(), "a fresh staging folder may belong to a save in progress: kept"
    assert library.list() == []
    assert "is empty" in _input_error(library.get, "Mona").message
    old_s = time.time() - STALE_STAGING_AGE_S - 60
    for path in (staging, staging / "photo.jpg"):
        os.utime(path, (old_s, old_s))
    AvatarLibrary(root, landmarker=landmarker)
    assert _entries(root) == []


def test_damaged_folders_and_leftover_deletes_are_handled_on_open(library, caplog):
    record = library.create("Mona", SAMPLE_PORTRAIT)
    broken = library.root / "broken"
    broken.mkdir()
    (broken / "avatar.json").write_text("{", encoding="utf-8")
    leftover = library.root / ".deleting-abc"
    (leftover / "sub").mkdir(parents=True)
    (library.root / "cache-entry.npz").write_bytes(b"not an avatar")  # the photo cache shares the root
    reopened = AvatarLibrary(library.root)
    assert not leftover.exists()
    with caplog.at_level("WARNING"):
        assert reopened.list() == [record]
    assert "skipping avatar folder" in caplog.text and "broken" in caplog.text


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AVATAR_LIBRARY", str(tmp_path / "lib"))
    assert default_library_root() == tmp_path / "lib"
    monkeypatch.delenv("AVATAR_LIBRARY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path / "cache"))
    assert default_library_root() == tmp_path / "data" / "talking-avatar" / "avatars", "user data, not cache"
    assert AvatarLibrary().root == tmp_path / "data" / "talking-avatar" / "avatars"


def test_render_preview_speaks_in_the_matched_voice(full, library, tmp_path, monkeypatch):
    """Wiring check: the avatar's saved profile reaches voice matching (Piper is stochastic and
    pitch trackers misread its voice now and then, so the DSP effect is measured in
    tests/test_voice_match.py, not here)."""
    import voices.voice_match
    from avatar.engines.engine_set import EngineSet
    from tests.support.media_probe import probe_media
    from voices.voice_profile import VoiceProfile

    matched_toward = []
    real_match_voice = voices.voice_match.match_voice

    def spy(speech, profile, *args, **kwargs):
        matched_toward.append(profile)
        return real_match_voice(speech, profile, *args, **kwargs)

    monkeypatch.setattr(voices.voice_match, "match_voice", spy)
    _, voiced = full
    plain = library.create("Plain", SAMPLE_PORTRAIT)
    engines = EngineSet(cache_dir=tmp_path / "cache")
    try:
        voiced_mp4 = render_preview(
            voiced, "Hello, nice to meet you.", tmp_path / "voiced.mp4", engines=engines
        )
        assert matched_toward == [VoiceProfile.load(voiced.voice_profile_path)]
        plain_mp4 = render_preview(plain, "Hello, nice to meet you.", tmp_path / "plain.mp4", engines=engines)
        assert len(matched_toward) == 1, "an avatar without a voice sample keeps the TTS voice"
    finally:
        engines.close()
    for mp4 in (voiced_mp4, plain_mp4):
        streams = probe_media(mp4).streams
        (video,) = [s for s in streams if s.kind == "video"]
        (audio,) = [s for s in streams if s.kind == "audio"]
        assert (video.width, video.height) == (204, 256) and 1.5 < video.duration_s < 4
        assert abs(audio.duration_s - video.duration_s) < 0.04
