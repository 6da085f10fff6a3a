"""Hostile files (issue 18): photos that would exhaust memory, archives that would escape or
explode, and an output path that is an input. Each is one line of error (InputError, exit code 2
from the CLI), found before anything is decoded, extracted or written.

docs/measurements/hostile_inputs.md lists every case with its answer before and after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar import cli
from avatar.core.errors import InputError
from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE
from tests.support.hostile_files import avatar_zip, mark_encrypted, png_header


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


# --- photos ------------------------------------------------------------------------------------------
def test_a_huge_photo_is_refused_from_its_header(tmp_path):
    """Before: cv2.imdecode raised cv2.error (CV_IO_MAX_IMAGE_PIXELS) out of read_photo."""
    from lipsync import avatar_assets
    from lipsync.avatar_assets import read_photo

    with pytest.raises(InputError, match="100-megapixel limit"):
        read_photo(png_header(tmp_path / "bomb.png", 40000, 40000))
    with pytest.raises(InputError, match=r"12000x10000 px \(120 megapixels\).*100-megapixel limit"):
        read_photo(png_header(tmp_path / "big.png", 12000, 10000))
    assert avatar_assets.MAX_PHOTO_PIXELS == 100_000_000
    assert read_photo(SAMPLE_PORTRAIT).ndim == 3  # a real portrait still reads


def test_render_refuses_a_huge_photo_in_one_line(capsys, tmp_path):
    bomb = png_header(tmp_path / "bomb.png", 40000, 40000)
    code, err = run_cli(
        capsys, "render", "--photo", bomb, "--audio", SAMPLE_VOICE, "-o", tmp_path / "out.mp4"
    )
    assert code == 2 and err.count("\n") == 1 and "100-megapixel limit" in err, err
    assert not (tmp_path / "out.mp4").exists()


def test_the_engine_set_refuses_a_huge_photo(tmp_path):
    """The one path `avatar serve`, `avatar live`, the console and render take to a face."""
    from avatar.engines.engine_set import EngineSet

    engines = EngineSet()
    try:
        with pytest.raises(InputError, match="100-megapixel limit"):
            engines.renderer(png_header(tmp_path / "bomb.png", 40000, 40000), 256, None)
    finally:
        engines.close()


def test_the_library_refuses_a_huge_photo_on_create_and_import(tmp_path):
    from avatar.library.store import AvatarLibrary

    library = AvatarLibrary(tmp_path / "library")
    bomb = png_header(tmp_path / "bomb.png", 40000, 40000)
    with pytest.raises(InputError, match="100-megapixel limit"):
        library.create("Big", bomb)
    archive = avatar_zip(tmp_path / "big.zip", {"photo.png": bomb.read_bytes()})
    with pytest.raises(InputError, match="100-megapixel limit"):
        library.import_archive(archive)
    assert library.list() == []


# --- archives ----------------------------------------------------------------------------------------
def hostile_archives(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (archive, a phrase its one-line refusal must contain)."""
    from avatar.library.files import MAX_INPUT_FILE_BYTES

    photo = SAMPLE_PORTRAIT.read_bytes()
    not_a_zip = tmp_path / "fake.zip"
    not_a_zip.write_bytes(b"PK\x03\x04 not really a zip")
    return {
        "encrypted": (
            mark_encrypted(avatar_zip(tmp_path / "encrypted.zip", {"photo.jpg": photo})),
            "is encrypted",
        ),
        "path traversal": (avatar_zip(tmp_path / "up.zip", {"../photo.jpg": photo}), "'..'"),
        "absolute path": (avatar_zip(tmp_path / "abs.zip", {"/tmp/photo.jpg": photo}), "absolute path"),
        "windows absolute path": (
            avatar_zip(tmp_path / "drive.zip", {"C:/photo.jpg": photo}),
            "absolute path",
        ),
        "symlink": (
            avatar_zip(
                tmp_path / "link.zip", {"photo.jpg": (b"/etc/passwd", {"external_attr": 0o120777 << 16})}
            ),
            "symbolic link",
        ),
        "too large unpacked": (
            avatar_zip(tmp_path / "large.zip", {"knowledge.md": b" " * (MAX_INPUT_FILE_BYTES + 1)}),
            "too large once unpacked",
        ),
        "compression ratio (zip bomb)": (
            avatar_zip(tmp_path / "ratio.zip", {"photo.jpg": photo, "knowledge.md": b" " * (2 << 20)}),
            "zip bomb",
        ),
        "too many members": (
            avatar_zip(tmp_path / "many.zip", {f"note{i}.txt": b"x" for i in range(70)}),
            "entries",
        ),
        "not a zip": (not_a_zip, "not a zip"),
    }


def test_hostile_archives_are_refused_in_one_line_before_anything_is_written(tmp_path):
    """Before: an encrypted member raised RuntimeError ('password required') as a traceback, and a
    2 MB member packed 1000:1 was unpacked (the other cases were refused already)."""
    from avatar.library.store import AvatarLibrary

    library = AvatarLibrary(tmp_path / "library")
    answers = {}
    for name, (archive, phrase) in hostile_archives(tmp_path).items():
        with pytest.raises(InputError) as refused:
            library.import_archive(archive)
        answers[name] = str(refused.value)
        assert phrase in answers[name], (name, answers[name])
        assert "\n" not in answers[name]
    assert library.list() == []
    leftovers = [p for p in (tmp_path / "library").rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


def test_import_cli_says_encrypted_in_one_line(capsys, tmp_path):
    archive = mark_encrypted(avatar_zip(tmp_path / "locked.zip", {"photo.jpg": SAMPLE_PORTRAIT.read_bytes()}))
    code, err = run_cli(capsys, "library", "import", archive, "--library", tmp_path / "library")
    assert code == 2 and err.count("\n") == 1 and "encrypted" in err, err


# --- -o is an input ----------------------------------------------------------------------------------
def test_render_refuses_an_output_that_is_an_input(capsys, tmp_path):
    """Before: `avatar render --audio talk.mp4 -o talk.mp4` rendered and replaced the recording."""
    from avatar.render.job import validate_request
    from avatar.render.request import RenderRequest

    audio = tmp_path / "talk.mp4"
    audio.write_bytes(SAMPLE_VOICE.read_bytes())  # PyAV reads the content whatever the name
    link = tmp_path / "link.mp4"
    link.symlink_to(audio)
    photo_named_mp4 = tmp_path / "face.mp4"
    photo_named_mp4.write_bytes(SAMPLE_PORTRAIT.read_bytes())
    cases = {
        "audio": RenderRequest(SAMPLE_PORTRAIT, audio, audio_path=audio),
        "audio through a link": RenderRequest(SAMPLE_PORTRAIT, link, audio_path=audio),
        "audio by another spelling": RenderRequest(
            SAMPLE_PORTRAIT, tmp_path / "x" / ".." / "talk.mp4", audio_path=audio
        ),
        "voice sample": RenderRequest(SAMPLE_PORTRAIT, audio, text="hello", voice_sample_path=audio),
        "photo": RenderRequest(photo_named_mp4, photo_named_mp4, audio_path=SAMPLE_VOICE),
    }
    (tmp_path / "x").mkdir()
    for role, request in cases.items():
        with pytest.raises(InputError, match="it would be overwritten"):
            validate_request(request)
            pytest.fail(f"-o is the {role}: not refused")
    before = audio.read_bytes()
    code, err = run_cli(capsys, "render", "--photo", SAMPLE_PORTRAIT, "--audio", audio, "-o", audio)
    assert code == 2 and err.count("\n") == 1 and "is the input audio itself" in err, err
    assert audio.read_bytes() == before


def test_preview_refuses_to_overwrite_its_photo(capsys, tmp_path):
    photo = tmp_path / "face.png"
    photo.write_bytes(SAMPLE_PORTRAIT.read_bytes())
    code, err = run_cli(capsys, "preview", "--photo", photo, "-o", photo)
    assert code == 2 and "would be overwritten" in err, err
    assert photo.read_bytes() == SAMPLE_PORTRAIT.read_bytes()
