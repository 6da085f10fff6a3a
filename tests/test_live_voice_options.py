"""Options for measuring a cloned voice over WebRTC (issue 15): `avatar serve --no-speech-cache`,
and bench/live_latency.py's `--voice fake-cosyvoice` (bench/live_voice.py), whose stand-in
(tests/support/streaming_voice.py) speaks on a clock in a process of its own."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from avatar.core.types import AudioChunk, Speech, TTSChunk
from tests.conftest import SAMPLE_VOICE


class _CountingVoice:
    """A cloned voice that streams two chunks per sentence and counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def stream(self, text: str, *, emotion: str | None = None):
        self.asked.append(text)
        for index in range(2):
            pcm = np.full(2400, 0.1, np.float32)
            yield TTSChunk(Speech(AudioChunk(pcm, 24000), text, "en"), is_last=index == 1)

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        self.asked.append(text)
        return Speech(AudioChunk(np.full(2400, 0.1, np.float32), 24000), text, "en")


def _engines(speech_cache: bool):
    from avatar.engines.live_set import LiveConfig, LiveEngines

    config = LiveConfig(photo_path=Path("unused.png"), llm="stub", language="en", speech_cache=speech_cache)
    engines = LiveEngines(config)
    voice = _CountingVoice()
    engines.tts, engines.cloned_voice = SimpleNamespace(get=lambda language: voice), voice
    engines.llm = SimpleNamespace(known_replies=lambda language: ["[happy] Hello! Nice to see you."])
    return engines, voice


def test_serve_and_live_take_no_speech_cache_and_no_tts_stream():
    from avatar.cli import _build_parser
    from avatar.cli.live import live_config

    parser = _build_parser()
    default = live_config(parser.parse_args(["serve"]))
    assert (default.speech_cache, default.tts_stream) == (True, True)
    off = live_config(parser.parse_args(["serve", "--no-speech-cache", "--no-tts-stream"]))
    assert (off.speech_cache, off.tts_stream) == (False, False)
    assert live_config(parser.parse_args(["live", "--no-speech-cache"])).speech_cache is False


def test_without_the_speech_cache_every_sentence_is_said_anew_and_no_opening_in_advance():
    engines, voice = _engines(speech_cache=False)
    assert engines.say_known_openings() == 0 and voice.asked == []
    for _ in range(2):
        assert len(list(engines.stream("Hello there.", emotion="happy"))) == 2  # streamed both times
        engines.synthesize("Whole one.")
    assert voice.asked == ["Hello there.", "Whole one."] * 2 and len(engines.speech_cache) == 0


def test_with_the_speech_cache_openings_are_said_once_and_repeats_come_from_memory():
    engines, voice = _engines(speech_cache=True)
    assert engines.say_known_openings() == 1 and voice.asked == ["Hello!"]
    assert len(list(engines.stream("Hello there."))) == 2 and len(list(engines.stream("Hello there."))) == 1
    assert voice.asked == ["Hello!", "Hello there."]


def _voice_args(*flags: str) -> argparse.Namespace:
    from bench.live_voice import add_voice_options

    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    add_voice_options(parser)
    return parser.parse_args(list(flags))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--url", "http://127.0.0.1:1", "--voice", "fake-cosyvoice"], "not with --url"),
        (["--url", "http://127.0.0.1:1", "--no-speech-cache"], "not with --url"),
        (["--no-tts-stream"], "only a cloned voice"),
        (["--barge-in-after-s", "-1"], "between 0 and 10 s"),
        (["--voice", "fake-cosyvoice", "--first-chunk-s", "2", "--sentence-s", "1"], "--first-chunk-s <="),
    ],
)
def test_bench_voice_options_refuse_what_would_measure_something_else(flags, message):
    from bench.live_voice import check_voice_options

    with pytest.raises(SystemExit, match=message):
        check_voice_options(_voice_args(*flags))


def test_bench_embedded_voice_adds_only_the_cache_flag(tmp_path):
    from bench.live_voice import voice_server

    with voice_server(_voice_args("--no-speech-cache"), tmp_path / "run") as (serve_args, report):
        assert serve_args == ["--no-speech-cache"]
    assert report == {"voice": "embedded", "tts_stream": True, "speech_cache": False}


def test_bench_fake_cosyvoice_speaks_on_its_clock_and_counts_hang_ups(tmp_path):
    """The stand-in runs as its own process; the serve arguments it yields make a valid live
    config; a sentence arrives in pieces, none before --first-chunk-s, the last not before
    --sentence-s; a stream closed early (a barge-in) is counted as aborted once it stopped."""
    from avatar.cli import _build_parser
    from avatar.cli.live import live_config
    from bench.live_voice import voice_server
    from voices.cosyvoice_http import CosyVoiceHTTPTTS

    args = _voice_args(
        "--voice", "fake-cosyvoice", "--no-tts-stream", "--first-chunk-s", "0.1", "--sentence-s", "0.6"
    )
    with voice_server(args, tmp_path / "run") as (serve_args, report):
        config = live_config(_build_parser().parse_args(["serve", *serve_args]))
        assert (config.tts_choice.tts, config.tts_stream, config.voice_sample_path) == (
            "cosyvoice-http",
            False,
            SAMPLE_VOICE,
        )
        voice = CosyVoiceHTTPTTS(
            config.tts_choice.cosyvoice_url, reference_wav=SAMPLE_VOICE, reference_text="Hi.", language="en"
        ).load()
        asked_s, arrivals_s = time.monotonic(), []
        for _ in voice.stream("A sentence long enough for several pieces."):
            arrivals_s.append(time.monotonic() - asked_s)
        cut = voice.stream("Interrupted before its end, by a barge-in.")
        next(cut)
        cut.close()
        voice.close()
    assert len(arrivals_s) >= 3 and arrivals_s[0] >= 0.1 and arrivals_s[-1] >= 0.6, arrivals_s
    assert (report["voice_requests"], report["voice_requests_aborted"]) == (2, 1), report
    assert (tmp_path / "run.voice.log").read_text().startswith("streaming voice on http://127.0.0.1:")
