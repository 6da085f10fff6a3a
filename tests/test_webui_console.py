"""The console's handlers called directly (no Gradio, no browser) on a temporary library.

What the page shows for bad input is decided here: every error must come back as one ✗ line, and
the library tab's actions (rename, duplicate, export, import, delete) must work end to end.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import pytest

from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE, eval_file
from webui.console import Console


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    root = tmp_path_factory.mktemp("webui-console")
    console = Console(root / "library", root / "work")
    try:
        yield console
    finally:
        console.close()


def _one_error_line(message: str, *fragments: str) -> None:
    assert message.startswith("✗ "), message
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_inputs_are_explained(console):
    _one_error_line(
        console.save_avatar("Mona", None, None, "", "auto", "", None).message, "add a photo first"
    )
    _one_error_line(
        console.save_avatar("  ", str(SAMPLE_PORTRAIT), None, "", "auto", "", None).message, "name"
    )
    _one_error_line(console.render(None, "text", "Hi", None, "neutral", "auto", 256, "loudness").message,
                    "choose an avatar first")  # fmt: skip
    _one_error_line(console.start_live(None).message, "choose an avatar first")
    _one_error_line(console.rename(None, "x").message, "select an avatar first")
    _one_error_line(console.import_archive(None, "").message, ".zip")
    assert console.check_photo(None) == (None, "")
    assert console.check_voice("") == (None, None, "")


def test_photo_without_a_face(console):
    cup = eval_file("faces/no_face_coffee_cup.png")
    preview, message = console.check_photo(str(cup))
    assert preview is None
    _one_error_line(message, "no face found in no_face_coffee_cup.png")
    saved = console.save_avatar("Cup", str(cup), None, "", "auto", "", None)
    assert not saved.ok
    _one_error_line(saved.message, "no face found")
    assert console.records() == []  # nothing written


def test_corrupt_voice_sample(console, tmp_path):
    bad = tmp_path / "voice.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    transcript, language, message = console.check_voice(str(bad))
    assert transcript is None and language is None
    _one_error_line(message)


def test_photo_check_draws_the_face(console):
    preview, message = console.check_photo(str(SAMPLE_PORTRAIT))
    assert preview is not None and preview.ndim == 3 and preview.shape[2] == 3
    assert message.startswith("✓ 1 face found")


def test_library_actions_end_to_end(console, tmp_path):
    saved = console.save_avatar("Mona", str(SAMPLE_PORTRAIT), None, "", "en", "Be brief.", None)
    assert saved.ok, saved.message
    slug = saved.value.slug
    assert saved.message.startswith("✓ saved **Mona**")

    _one_error_line(console.delete(slug, False).message, "yes, delete")
    renamed = console.rename(slug, "Mona Lisa")
    assert renamed.ok, renamed.message
    copy = console.duplicate(renamed.value.slug, "")
    assert copy.ok and copy.value.settings.name == "Mona Lisa copy"

    exported = console.export(copy.value.slug)
    assert exported.ok, exported.message
    archive = Path(exported.value)
    assert archive.suffix == ".zip" and "avatar.json" in zipfile.ZipFile(archive).namelist()
    imported = console.import_archive(str(archive), "Imported Mona")
    assert imported.ok, imported.message
    names = sorted(record.settings.name for record in console.records())
    assert names == ["Imported Mona", "Mona Lisa", "Mona Lisa copy"]

    for record in console.records():
        assert console.delete(record.slug, True).ok
    assert console.records() == []


def test_render_errors_and_a_reused_folder_name(console, tmp_path):
    """A photo saved again under the same folder name must not be drawn from the old one's cache."""
    first = console.save_avatar("Render Me", str(SAMPLE_PORTRAIT), None, "", "en", "", None)
    assert first.ok, first.message
    slug = first.value.slug
    _one_error_line(console.render(slug, "text", "  ", None, "neutral", "auto", 256, "loudness").message,
                    "type what the avatar should say")  # fmt: skip
    _one_error_line(console.render(slug, "text", "Hi", None, "neutral", "auto", 4000, "loudness").message,
                    "out of range")  # fmt: skip
    _one_error_line(console.render(slug, "audio", "", None, "neutral", "auto", 256, "loudness").message,
                    "audio")  # fmt: skip
    _one_error_line(console.render(slug, "text", "[joyful] Hi", None, "neutral", "auto", 256, "loudness").message,
                    "joyful")  # fmt: skip

    progress = []
    rendered = console.render(slug, "text", "Hi.", None, "neutral", "auto", 256, "loudness",
                              progress=lambda fraction, desc: progress.append((fraction, desc)))  # fmt: skip
    assert rendered.ok, rendered.message
    assert progress[-1][0] == pytest.approx(1.0) and "frame" in progress[-1][1]
    engines = console.engines.loaded_render_engines
    lipsync = console.render(slug, "audio", "", str(SAMPLE_VOICE), "happy", "auto", 256, "loudness")
    assert lipsync.ok, lipsync.message
    assert "rendered 7.7 s" in lipsync.message  # the recording's length

    mirrored = tmp_path / "mirrored.jpg"
    cv2.imwrite(str(mirrored), cv2.flip(cv2.imread(str(SAMPLE_PORTRAIT)), 1)[:, :-8])
    assert console.delete(slug, True).ok
    again = console.save_avatar("Render Me", str(mirrored), None, "", "en", "", None)
    assert again.ok and again.value.slug == slug
    assert console.render(slug, "text", "Hi.", None, "neutral", "auto", 256, "loudness").ok
    assert console.engines.loaded_render_engines is not engines  # the changed photo started fresh engines
    assert console.delete(slug, True).ok


def test_close_removes_its_work_folder(tmp_path):
    console = Console(tmp_path / "library")
    work = console.work_dir
    assert work.is_dir()
    console.close()
    assert not work.exists()
    assert (tmp_path / "library").is_dir()  # the library stays
