"""`avatar library ...`, `avatar render --avatar` and `avatar serve --avatar`, run through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avatar import cli
from avatar.cli.live import live_config
from avatar.library.store import AvatarLibrary
from tests.conftest import ASSETS, SAMPLE_PORTRAIT, SAMPLE_VOICE

KNOWLEDGE = ASSETS / "knowledge" / "shop_faq.md"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def spy_on_voice_matching(monkeypatch) -> list:
    """The profiles that voice matching is called with, in order (matching still runs)."""
    import voices.voice_match

    profiles = []
    real = voices.voice_match.match_voice
    monkeypatch.setattr(
        voices.voice_match,
        "match_voice",
        lambda speech, profile, **kw: profiles.append(profile) or real(speech, profile, **kw),
    )
    return profiles


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A library made by `avatar library create` with a voice sample that Whisper transcribes."""
    root = tmp_path_factory.mktemp("library")
    code = cli.main(
        [
            "library",
            "create",
            "Mona Lisa",
            "--library",
            str(root),
            "--photo",
            str(SAMPLE_PORTRAIT),
            "--voice",
            str(SAMPLE_VOICE),
            "--lang",
            "en",
            "--persona",
            "You are Mona, a museum guide.",
            "--knowledge",
            str(KNOWLEDGE),
        ]
    )
    assert code == 0
    return root


def test_library_help_lists_subcommands_and_examples(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["library", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for verb in ("create", "list", "rename", "duplicate", "delete", "export", "import"):
        assert f"    {verb}" in out
    assert "examples:" in out and 'avatar render --avatar "Mona Lisa"' in out
    assert run(capsys, "library")[0] == 2, "no subcommand: help and a usage exit code"


def test_create_stores_whisper_transcript_and_settings(made):
    stored = json.loads((made / "mona-lisa" / "avatar.json").read_text(encoding="utf-8"))
    assert "system is established for the frequent formal review" in stored["voice_transcript"].lower()
    assert stored["language"] == "en" and stored["persona"] == "You are Mona, a museum guide."
    assert sorted(p.name for p in (made / "mona-lisa").iterdir()) == [
        "avatar.json",
        "knowledge.md",
        "photo.jpg",
        "thumbnail.png",
        "voice_profile.json",
        "voice_sample.flac",
    ]


def test_list_rename_duplicate_export_import_delete(capsys, tmp_path, made):
    root = tmp_path / "lib"
    lib = ["--library", str(root)]
    code, out, _ = run(capsys, "library", "create", "小美", *lib, "--photo", str(SAMPLE_PORTRAIT))
    assert code == 0 and out.startswith("created 小美 (avatar) in ")
    code, _, _ = run(
        capsys, "library", "import", *lib, str(AvatarLibrary(made).export("mona-lisa", tmp_path))
    )
    assert code == 0
    code, out, _ = run(capsys, "library", "list", *lib, "--json")
    rows = json.loads(out)
    assert [(row["name"], row["slug"], row["voice"], row["knowledge"]) for row in rows] == [
        ("Mona Lisa", "mona-lisa", True, True),
        ("小美", "avatar", False, False),
    ]
    assert run(capsys, "library", "rename", *lib, "小美", "Xiao Mei")[1] == "renamed to Xiao Mei (xiao-mei)\n"
    assert run(capsys, "library", "duplicate", *lib, "mona-lisa", "Mona 2")[0] == 0
    code, out, _ = run(capsys, "library", "export", *lib, "Mona 2", "-o", str(tmp_path / "m2.zip"))
    assert code == 0 and (tmp_path / "m2.zip").is_file()
    assert run(capsys, "library", "delete", *lib, "mona-2")[1] == "deleted Mona 2 (mona-2)\n"
    code, out, _ = run(capsys, "library", "list", *lib)
    assert code == 0 and out.splitlines() == [
        "mona-lisa  Mona Lisa  (en, voice, knowledge)",
        "xiao-mei   Xiao Mei  (auto, default voice)",
    ]
    assert sorted(p.name for p in root.iterdir()) == ["mona-lisa", "xiao-mei"]


def test_bad_input_is_one_line_with_exit_code_2(capsys, tmp_path):
    lib = ["--library", str(tmp_path)]
    code, _, err = run(capsys, "library", "create", "", *lib, "--photo", str(SAMPLE_PORTRAIT))
    assert code == 2 and err == "error: the avatar name is empty (type a name, e.g. Mona or 小美)\n"
    code, _, err = run(capsys, "library", "delete", *lib, "nobody")
    assert code == 2 and err.startswith("error: no avatar named 'nobody': the library at ")
    assert list(tmp_path.iterdir()) == []


def test_render_with_avatar_uses_its_photo_and_voice(capsys, tmp_path, made, monkeypatch):
    from tests.support.media_probe import probe_media

    profiles = spy_on_voice_matching(monkeypatch)
    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path / "cache"))
    out_mp4 = tmp_path / "hello.mp4"
    code, out, err = run(
        capsys, "render", "--avatar", "Mona Lisa", "--library", str(made), "--text", "Hi there.",
        "--size", "256", "-q", "-o", str(out_mp4),
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"wrote {out_mp4}")
    assert [profile.name for profile in profiles] == ["Mona Lisa"]
    (video,) = [s for s in probe_media(out_mp4).streams if s.kind == "video"]
    assert (video.width, video.height) == (204, 256)


def test_render_avatar_and_photo_are_mutually_exclusive(capsys, made):
    with pytest.raises(SystemExit) as done:
        cli.main(["render", "--photo", str(SAMPLE_PORTRAIT), "--avatar", "Mona Lisa", "--text", "hi"])
    assert done.value.code == 2
    assert "argument --avatar: not allowed with argument --photo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["render", "--text", "hi"])
    assert "one of the arguments --photo --avatar is required" in capsys.readouterr().err
    code, _, err = run(capsys, "render", "--avatar", "Leonardo", "--library", str(made), "--text", "hi")
    assert code == 2 and err == "error: no avatar named 'Leonardo' (available: Mona Lisa (mona-lisa))\n"


def _serve_config(*argv: str):
    return live_config(cli._build_parser().parse_args(["serve", *argv]))


def test_serve_with_avatar_takes_everything_from_the_library(made):
    record = AvatarLibrary(made).get("mona-lisa")
    config = _serve_config("--avatar", "Mona Lisa", "--library", str(made))
    assert config.photo_path == record.photo_path and config.face_index is None
    assert config.voice_profile_path == record.voice_profile_path
    assert config.knowledge_paths == (record.knowledge_path,)
    assert config.llm == "answerer", "an avatar with knowledge answers from it by default"
    assert config.persona_name == "Mona Lisa" and config.language == "en"
    assert config.system_prompt == "You are Mona, a museum guide."
    assert config.avatar_name == "Mona Lisa (mona-lisa)", "what /health reports, not photo.jpg"
    extra = _serve_config("--avatar", "mona-lisa", "--library", str(made), "--llm", "stub", "--lang", "zh",
                          "--knowledge", str(KNOWLEDGE), "--persona", "Lisa")  # fmt: skip
    assert extra.llm == "stub" and extra.language == "zh" and extra.persona_name == "Lisa"
    assert extra.knowledge_paths == (record.knowledge_path, KNOWLEDGE)


def test_serve_without_avatar_keeps_its_defaults(capsys):
    config = _serve_config()
    assert config.photo_path == Path("assets/sample_portrait.jpg") and config.llm == "answerer"
    assert config.persona_name == "Mona" and config.voice_profile_path is None
    assert config.system_prompt == "You are Mona, a friendly talking avatar."
    assert config.avatar_name == "sample_portrait.jpg"
    with pytest.raises(SystemExit):
        _serve_config("--photo", "a.jpg", "--avatar", "Mona")
    assert "not allowed with argument --photo" in capsys.readouterr().err


def test_live_engines_speak_in_the_avatar_voice(made, monkeypatch):
    """The served avatar's replies go through voice matching toward its saved profile."""
    from avatar.engines.live_set import LiveEngines
    from voices.voice_profile import VoiceProfile

    record = AvatarLibrary(made).get("mona-lisa")
    engines = LiveEngines(_serve_config("--avatar", "mona-lisa", "--library", str(made))).load_voice()
    try:
        assert engines.voice_profile == VoiceProfile.load(record.voice_profile_path)
        profiles = spy_on_voice_matching(monkeypatch)
        speech = engines.synthesize("Good morning, how can I help?")
        assert profiles == [engines.voice_profile]
        assert speech.audio.duration_s > 1.0 and speech.text == "Good morning, how can I help?"
        assert speech.phonemes, "phoneme timing survives matching (the mouth needs it)"
    finally:
        engines.close()


def test_live_engines_refuse_a_broken_voice_profile(tmp_path):
    from avatar.core.errors import InputError
    from avatar.engines.live_set import LiveConfig, LiveEngines

    broken = tmp_path / "voice_profile.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="is not valid JSON"):
        LiveEngines(LiveConfig(SAMPLE_PORTRAIT, voice_profile_path=broken)).load_voice()
