"""Engines chosen by name on `avatar render`: the neural TTS really speaks the video's audio, and
every missing piece (voice sample, server, voice id, checkpoint) is one line naming the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar.cli import main
from avatar.core.errors import InputError
from avatar.core.system_tools import free_port
from avatar.engines.choice import EngineChoice
from avatar.speech.assembly import LEAD_IN_S, SENTENCE_GAP_S, TAIL_S
from tests.conftest import SAMPLE_VOICE
from tests.fake_cosyvoice import FakeCosyVoiceServer, fake_speech
from tests.support.media_probe import probe_media

PHOTO = "assets/sample_portrait.jpg"
SENTENCES = ("Hello there.", "How are you today?")


def render(tmp_path, *options: str) -> int:
    args = ["render", "--photo", PHOTO, "--size", "256", "-q", "-o", str(tmp_path / "out.mp4")]
    return main([*args, "--text", " ".join(SENTENCES), *options])


def test_cosyvoice_server_speaks_every_sentence_of_the_video(tmp_path):
    with FakeCosyVoiceServer() as server:
        rc = render(
            tmp_path,
            *("--tts", "cosyvoice-http", "--cosyvoice-url", server.url),
            *("--voice", str(SAMPLE_VOICE), "--voice-text", "This is my voice."),
        )
    assert rc == 0
    assert [r["fields"]["tts_text"] for r in server.requests] == list(SENTENCES)
    assert {r["fields"]["prompt_text"] for r in server.requests} == {"This is my voice."}
    media = probe_media(tmp_path / "out.mp4")
    (video,), (audio,) = media.of_kind("video"), media.of_kind("audio")
    spoken_s = sum(len(fake_speech(s, 24000)) for s in SENTENCES) / 24000
    spoken_s += LEAD_IN_S + SENTENCE_GAP_S + TAIL_S
    # the video's audio is the server's speech (with the usual lead-in, gap and tail; then rounded
    # up to whole frames and AAC packets), the video as long as it
    assert spoken_s <= audio.duration_s <= spoken_s + 0.2
    assert abs(video.duration_s - audio.duration_s) <= 0.05


def test_the_cloned_audio_is_the_servers_not_the_embedded_voice(tmp_path):
    from avatar.core.audio_io import load_audio

    with FakeCosyVoiceServer() as server:
        assert render(tmp_path, "--tts", "cosyvoice-http", "--cosyvoice-url", server.url,
                      "--voice", str(SAMPLE_VOICE), "--voice-text", "Mine.") == 0  # fmt: skip
    audio = load_audio(tmp_path / "out.mp4", sample_rate_hz=24000).pcm
    tone = fake_speech(SENTENCES[0], 24000)
    start = int(np.argmax(np.abs(audio) > 0.05))
    piece = audio[start : start + len(tone) // 2]
    # the fake's pure tone for the first sentence, through AAC: nearly perfectly correlated
    best = max(np.corrcoef(piece, tone[s : s + len(piece)])[0, 1] for s in range(0, 400, 2))
    assert best > 0.9


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--tts", "cosyvoice-http", "--cosyvoice-url", "http://127.0.0.1:1"), "needs --voice SAMPLE"),
        (("--tts", "dashscope"), "needs --dashscope-voice"),
        (
            ("--lipsync", "wav2lip", "--wav2lip-checkpoint", "/nonexistent/wav2lip.pth"),
            "checkpoint not found",
        ),
    ],
)
def test_missing_pieces_are_one_line_errors(tmp_path, capsys, options, message):
    assert render(tmp_path, *options) != 0
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and "Traceback" not in error
    assert not (tmp_path / "out.mp4").exists()


def test_an_unreachable_cosyvoice_server_is_named(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    rc = render(tmp_path, "--tts", "cosyvoice-http", "--cosyvoice-url", url,
                "--voice", str(SAMPLE_VOICE), "--voice-text", "Mine.")  # fmt: skip
    assert rc != 0 and url in capsys.readouterr().err


def test_a_voice_profile_cannot_be_cloned(tmp_path):
    from avatar.engines.choice import cloned_voice_engine

    with pytest.raises(InputError, match="not a saved voice profile"):
        cloned_voice_engine(EngineChoice(tts="cosyvoice"), tmp_path / "me.voice.json", "", "en")


def test_unknown_names_are_refused_before_anything_loads():
    with pytest.raises(InputError, match="unknown --tts"):
        EngineChoice(tts="vits").validate()
    with pytest.raises(InputError, match="unknown --lipsync"):
        EngineChoice(lipsync="sadtalker").validate()


def test_wav2lip_renders_the_video_with_a_checkpoint_from_the_models_folder(tmp_path, monkeypatch):
    import torch

    from lipsync.wav2lip_model import Wav2Lip

    torch.manual_seed(0)
    folder = tmp_path / "models" / "wav2lip"
    folder.mkdir(parents=True)
    state = {f"module.{k}": v for k, v in Wav2Lip().state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0}, folder / "wav2lip.pth")
    monkeypatch.setenv("AVATAR_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("AVATAR_WAV2LIP_DIR", raising=False)
    assert render(tmp_path, "--lipsync", "wav2lip") == 0
    media = probe_media(tmp_path / "out.mp4")
    (video,), (audio,) = media.of_kind("video"), media.of_kind("audio")
    assert (video.width, video.height) == (204, 256) and video.frame_count == round(video.duration_s * 25)
    assert abs(video.duration_s - audio.duration_s) <= 0.05


def test_live_engines_speak_replies_with_the_cloned_voice():
    from avatar.engines.live_set import LiveConfig, LiveEngines

    with FakeCosyVoiceServer() as server:
        config = LiveConfig(
            Path(PHOTO),
            tts_choice=EngineChoice(
                tts="cosyvoice-http", cosyvoice_url=server.url, voice_text="This is my voice."
            ),
            voice_sample_path=SAMPLE_VOICE,
        )
        engines = LiveEngines(config).load_voice()
        try:
            speech = engines.synthesize("Hello there.")
            again = engines.clone_voice(SAMPLE_VOICE, "This is my voice.")
        finally:
            engines.close()
    assert again is engines.cloned_voice  # one engine per voice sample
    assert [r["fields"]["tts_text"] for r in server.requests] == ["Hello there."]
    np.testing.assert_allclose(speech.audio.pcm, fake_speech("Hello there.", 24000), atol=1e-4)
    assert speech.audio.sample_rate_hz == 24000 and speech.text == "Hello there."


def test_serve_flags_reach_the_live_config():
    from avatar.cli import _build_parser
    from avatar.cli.live import live_config

    flags = ["--tts", "cosyvoice-http", "--cosyvoice-url", "http://127.0.0.1:50000"]
    flags += ["--voice", str(SAMPLE_VOICE), "--voice-text", "Mine."]
    args = _build_parser().parse_args(["serve", *flags])
    config = live_config(args)
    assert config.tts_choice.tts == "cosyvoice-http" and config.tts_choice.cosyvoice_url.endswith(":50000")
    assert (config.voice_sample_path, config.tts_choice.voice_text) == (SAMPLE_VOICE, "Mine.")


def test_emotion_tags_reach_the_cloning_engine_as_instructions(tmp_path):
    with FakeCosyVoiceServer() as server:
        args = ["render", "--photo", PHOTO, "--size", "256", "-q", "-o", str(tmp_path / "out.mp4")]
        args += ["--text", "[happy] What a day! [neutral] See you."]
        args += ["--tts", "cosyvoice-http", "--cosyvoice-url", server.url]
        assert main([*args, "--voice", str(SAMPLE_VOICE), "--voice-text", "Mine."]) == 0
    paths = [(r["path"], r["fields"]["tts_text"]) for r in server.requests]
    assert paths == [("/inference_instruct2", "What a day!"), ("/inference_zero_shot", "See you.")]


def test_engines_can_be_chosen_in_the_environment(monkeypatch):
    from avatar.cli import _build_parser
    from avatar.cli.live import live_config

    monkeypatch.setenv("AVATAR_TTS", "cosyvoice-http")
    monkeypatch.setenv("AVATAR_LIPSYNC", "wav2lip_gan")
    monkeypatch.setenv("AVATAR_ASR", "sensevoice")
    monkeypatch.setenv("AVATAR_LLM", "openai")
    render_args = _build_parser().parse_args(["render", "--photo", PHOTO, "--text", "Hi"])
    assert (render_args.tts, render_args.lipsync) == ("cosyvoice-http", "wav2lip_gan")
    config = live_config(_build_parser().parse_args(["serve"]))
    assert (config.asr, config.llm, config.tts_choice.tts) == ("sensevoice", "openai", "cosyvoice-http")
    # a flag still wins over the environment
    assert (
        _build_parser().parse_args(["render", "--photo", PHOTO, "--text", "Hi", "--tts", "embedded"]).tts
        == "embedded"
    )


def test_a_sample_without_its_text_is_transcribed_once_for_cloning():
    from avatar.engines.choice import cloned_voice_engine

    heard = []

    def transcribe(path):
        heard.append(path)
        return "What the sample says."

    with FakeCosyVoiceServer() as server:
        choice = EngineChoice(tts="cosyvoice-http", cosyvoice_url=server.url)
        engine = cloned_voice_engine(choice, SAMPLE_VOICE, "", "en", transcribe)
        engine.synthesize("Hello there.")
        engine.close()
    assert heard == [SAMPLE_VOICE]
    assert server.requests[0]["fields"]["prompt_text"] == "What the sample says."


def test_one_cloned_voice_cache_for_render_and_live_keyed_by_the_files_identity(tmp_path):
    """Render and the live servers draw from one EngineSet: the same sample, transcript and language
    is one engine, whoever asks; the sample replaced under the same name is a new one."""
    import shutil

    from avatar.engines.engine_set import EngineSet
    from avatar.engines.live_set import LiveConfig, LiveEngines

    sample = tmp_path / "voice.flac"
    shutil.copy(SAMPLE_VOICE, sample)
    with FakeCosyVoiceServer() as server:
        choice = EngineChoice(tts="cosyvoice-http", cosyvoice_url=server.url, voice_text="This is my voice.")
        engines = EngineSet(choice)
        live = LiveEngines(LiveConfig(Path(PHOTO), tts_choice=choice, voice_sample_path=sample), engines)
        try:
            live.load_voice()
            rendered = engines.cloned_voice(sample, "en")  # what a render of this avatar asks for
            assert rendered is live.cloned_voice is live.clone_voice(sample, "This is my voice.")
            assert engines.cloned_voice(sample, "zh") is not rendered  # another language, another engine
            assert engines.cloned_voice(sample, "en", "Other words.") is not rendered
            import soundfile

            pcm, rate_hz = soundfile.read(sample)
            soundfile.write(sample, pcm[: len(pcm) // 2], rate_hz)  # another recording, same name
            assert engines.cloned_voice(sample, "en") is not rendered
            live.close()  # a shared set is its owner's: still usable
            assert (
                engines.cloned_voice(Path(SAMPLE_VOICE), "en").synthesize("Hello there.").text
                == "Hello there."
            )
        finally:
            engines.close()
    assert [r["fields"]["tts_text"] for r in server.requests] == ["Hello there."]


def test_the_livestream_switches_avatars_through_the_engine_set(tmp_path):
    """An avatar switched to on air gets its face and voice profile from the process's engine set, so
    switching back reuses them instead of preparing the photo again."""
    from avatar.broadcast.server import BroadcastConfig, BroadcastServer
    from avatar.engines.live_set import LiveConfig, LiveEngines
    from avatar.library.store import AvatarLibrary

    assert main(["library", "create", "Mona", "--library", str(tmp_path), "--photo", PHOTO,
                 "--voice", str(SAMPLE_VOICE), "--lang", "en"]) == 0  # fmt: skip
    avatar = AvatarLibrary(tmp_path).inputs("mona")
    config = LiveConfig(Path(PHOTO), size_px=256)
    live = LiveEngines(config).load_voice()
    try:
        server = BroadcastServer(BroadcastConfig(live=config, library_root=tmp_path), live)
        first_lipsync, first_voice = server._load_avatar(avatar)
        again_lipsync, _ = server._load_avatar(avatar)
        assert first_lipsync is not again_lipsync and first_lipsync.renderer is again_lipsync.renderer
        assert max(first_lipsync.renderer.size_wh) == 256
        profile = live.engines.voice_profile(avatar.voice_profile_path)
        assert profile.name and first_voice.synthesize("Hello there.").text == "Hello there."
    finally:
        live.close()
