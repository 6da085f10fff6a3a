"""Streaming speech live: a cloned voice's chunks reach the face as they come, and stop on barge-in.

Virtual-time sessions use `PacedStreamingTTS` (first chunk at 150 ms, the whole sentence at
1.5 s, the numbers of bench/cosyvoice_streaming.py); the HTTP tests run our CosyVoice client
against the stand-in server on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import numpy as np
import pytest

from avatar.core.errors import EngineUnavailable
from avatar.core.types import AudioChunk, Speech, Transcript, TTSChunk
from avatar.speech.speaker import AvatarVoice, speak_stream
from tests.conftest import SAMPLE_VOICE
from tests.fake_cosyvoice import FakeCosyVoiceServer
from tests.support.fakes import PacedStreamingTTS, ToneTTS, paced_run_blocking
from tests.test_broadcast_host import Harness as HostHarness
from tests.test_broadcast_host import script
from tests.test_conversation import TICK_S, Harness, speech
from voices.cosyvoice_http import CosyVoiceHTTPTTS

FIRST_CHUNK_S, SENTENCE_S = 0.15, 1.5
TRANSCRIPT = (
    "unless a system is established for the frequent formal review of activities thereunder. in this regard"
)


def _conversation(streams_audio: bool, vad_events, transcripts, replies) -> Harness:
    h = Harness(vad_events, transcripts, replies)
    voice = PacedStreamingTTS(
        h.clock, first_chunk_s=FIRST_CHUNK_S, sentence_s=SENTENCE_S, streams_audio=streams_audio
    )
    h.tts = h.session.tts = voice
    h.session.run_blocking = paced_run_blocking(h.clock, voice)
    return h


def _reply(streams_audio: bool) -> Harness:
    return _conversation(
        streams_audio,
        speech(1.0, 2.0),
        [Transcript("what is new", "en")],
        [
            [
                "[happy] Great news today for",
                " all of us in the whole wide world. ",
                "[sad] But not",
                " for all of us in the north.",
            ]
        ],
    ).run(10.0)


def test_streamed_reply_starts_by_the_difference_between_first_chunk_and_whole_sentence():
    streamed, whole = _reply(True), _reply(False)
    gain_s = whole.first("first_audio_queued")["at_s"] - streamed.first("first_audio_queued")["at_s"]
    assert gain_s == pytest.approx(SENTENCE_S - FIRST_CHUNK_S)
    first_tick = [next(t.index for t in h.ticks if t.is_speech) for h in (streamed, whole)]
    assert (first_tick[1] - first_tick[0]) * TICK_S == pytest.approx(SENTENCE_S - FIRST_CHUNK_S, abs=TICK_S)
    # the first-chunk latency is in the session's timeline, per sentence
    chunks = [e for e in streamed.events if e["type"] == "tts_first_chunk"]
    assert [(e["latency_ms"], e["streamed"]) for e in chunks] == [(150.0, True), (150.0, True)]
    assert [e["latency_ms"] for e in whole.events if e["type"] == "tts_first_chunk"] == [1500.0, 1500.0]
    # same words, same emotions, same audio, in order: only earlier
    assert (
        streamed.tts.spoken
        == whole.tts.spoken
        == [
            "Great news today for all of us in the whole wide world.",
            "But not for all of us in the north.",
        ]
    )
    assert streamed.tts.emotions == ["happy", "sad"]
    assert [e["emotion"] for e in streamed.events if e["type"] == "avatar_sentence"] == ["happy", "sad"]
    # 12 + 9 words at 0.2 s: the chunks come faster than they play, so speech is contiguous
    for h in (streamed, whole):
        indices = [t.index for t in h.ticks if t.is_speech]
        assert indices == list(range(indices[0], indices[0] + 105))
    audio = [np.concatenate([t.audio for t in h.ticks if t.is_speech]) for h in (streamed, whole)]
    np.testing.assert_array_equal(audio[0], audio[1])
    assert streamed.session.history[-1]["content"] == " ".join(streamed.tts.spoken)
    assert streamed.tts.closed == [(4, False), (4, False)]


def test_barge_in_during_a_stream_closes_it_and_is_silent_from_the_next_tick():
    # Reply chunks are due 0.15 / 0.6 / 1.05 / 1.5 s after the turn ends (2.5 s); the user talks
    # over it from 3.3 s, confirmed at 3.5 s: mid-way through the first sentence's stream.
    h = _conversation(
        True,
        speech(1.0, 2.0) + speech(3.3, 4.0),
        [Transcript("tell me", "en"), Transcript("stop", "en")],
        [["One two three four five six seven eight nine ten."], ["Okay."]],
    ).run(8.0)
    interrupted = h.first("turn_interrupted")
    assert interrupted["at_s"] == pytest.approx(3.5)
    handed, closed_early = h.tts.closed[0]
    assert closed_early and handed < 4, "the voice's stream was closed mid-sentence"
    after = [t for t in h.ticks if t.index * TICK_S >= interrupted["at_s"]]
    assert not any(t.turn_id == 1 for t in after) and not after[0].audio.any()
    assert interrupted["heard"].startswith("One two")
    assert h.session.history[1] == {"role": "assistant", "content": interrupted["heard"]}


def test_livestream_item_starts_with_the_first_chunk_and_a_skip_closes_the_stream():
    def host(streams_audio: bool) -> HostHarness:
        h = HostHarness()
        voice = PacedStreamingTTS(
            h.clock, first_chunk_s=FIRST_CHUNK_S, sentence_s=SENTENCE_S, streams_audio=streams_audio
        )
        h.tts = h.host.tts = voice
        h.host.run_blocking = paced_run_blocking(h.clock, voice)
        return h

    async def main(h: HostHarness, skip_at_s: float | None = None) -> None:
        h.host.set_script(
            script("[happy] one two three four five six seven eight nine ten", "eleven twelve"), loop=False
        )
        await h.host.start()
        if skip_at_s is not None:
            await h.clock.advance_to(skip_at_s)
            assert await h.host.skip()
        await h.clock.advance_to(6.0)
        await h.host.close()

    streamed, whole = host(True), host(False)
    asyncio.run(main(streamed))
    asyncio.run(main(whole))
    starts = [h.times("item_started")[0][1] for h in (streamed, whole)]
    assert starts[0] == pytest.approx(0.16)  # the tick after the first chunk at 0.15 s
    assert starts[1] - starts[0] == pytest.approx(SENTENCE_S - FIRST_CHUNK_S, abs=TICK_S)
    assert [e["latency_ms"] for e in streamed.of("tts_first_chunk")] == [150.0, 150.0]
    assert streamed.tts.emotions == ["happy", "neutral"]
    skipped = host(True)
    asyncio.run(main(skipped, skip_at_s=0.4))
    assert skipped.tts.closed[0] == (2, True), "the skipped item's stream was closed mid-sentence"


class _GatedVoice:
    """Streams two chunks; the second is made only when the test opens the gate (a worker thread)."""

    streams_audio = True

    def __init__(self) -> None:
        self.gate, self.closed = threading.Event(), threading.Event()

    def stream(self, text: str, *, emotion: str | None = None):
        try:
            yield TTSChunk(Speech(AudioChunk(np.ones(1600, np.float32) * 0.1, 16000), text))
            self.gate.wait(10)
            yield TTSChunk(Speech(AudioChunk(np.ones(1600, np.float32) * 0.1, 16000), text), is_last=True)
        finally:
            self.closed.set()


def test_a_barge_in_does_not_wait_for_the_chunk_being_made():
    voice = _GatedVoice()

    async def main() -> None:
        pieces = speak_stream(voice, "Hello there.", None, run_blocking=asyncio.to_thread)
        consumer = asyncio.ensure_future(_consume(pieces))
        await asyncio.sleep(0.2)  # the first chunk is out, the second is being made
        consumer.cancel()
        await asyncio.wait_for(asyncio.gather(consumer, return_exceptions=True), 1.0)
        assert not voice.closed.is_set(), "closed only once the worker thread is done with it"
        voice.gate.set()
        await asyncio.to_thread(voice.closed.wait, 5)
        assert voice.closed.is_set()

    async def _consume(pieces) -> None:
        async with contextlib.aclosing(pieces):
            async for _ in pieces:
                pass

    asyncio.run(main())


def test_speak_stream_keeps_the_rules_of_speak():
    async def collect(voice, text, emotion=None):
        skipped = []
        pieces = speak_stream(voice, text, emotion, run_blocking=_inline, on_skip=skipped.append)
        async with contextlib.aclosing(pieces):
            return [piece async for piece in pieces], skipped

    tone = ToneTTS()
    whole, _ = asyncio.run(collect(AvatarVoice(lambda language: tone), "Hello there.", "happy"))
    assert len(whole) == 1 and tone.emotions == ["happy"]  # an embedded voice: one whole sentence
    nothing, skipped = asyncio.run(collect(AvatarVoice(lambda language: tone), "(5) ..."))
    assert nothing == [] and skipped[0].reason.startswith("nothing to say") and len(tone.spoken) == 1

    class Failing:
        streams_audio = True

        def stream(self, text, *, emotion=None):
            yield TTSChunk(Speech(AudioChunk(np.zeros(1600, np.float32), 16000), text))
            raise EngineUnavailable("server went away", "restart it")

    pieces, skipped = asyncio.run(collect(Failing(), "Hello there."))
    assert len(pieces) == 1 and skipped[0].reason.startswith("cut short: server went away")


def test_http_voice_streams_its_first_chunk_early_and_a_closed_stream_aborts_the_request():
    async def first_chunk(engine) -> tuple[Speech, dict]:
        pieces = speak_stream(engine, "Hello there, how are you today?", None, run_blocking=asyncio.to_thread)
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                return piece, dict(server.requests[-1])
        raise AssertionError("no audio")

    # 24000-byte pieces are 0.5 s of audio each; the first is sent at 150 ms, the last at 1.5 s
    with FakeCosyVoiceServer(piece_bytes=24000, first_piece_s=FIRST_CHUNK_S, sentence_s=SENTENCE_S) as server:
        engine = CosyVoiceHTTPTTS(
            server.url, reference_wav=SAMPLE_VOICE, reference_text=TRANSCRIPT, language="en"
        ).load()
        voice = AvatarVoice(cloned=engine)
        assert voice.streams_audio and not AvatarVoice(cloned=engine, stream_cloned=False).streams_audio
        piece, at_first = asyncio.run(first_chunk(voice))
        deadline = asyncio.run(_wait_for(lambda: server.requests[-1]["aborted"]))
        engine.close()
    assert piece.audio.sample_rate_hz == 24000 and piece.audio.duration_s >= 0.3
    assert at_first["pieces_sent"] < at_first["pieces"], "the first chunk came while the server spoke"
    assert deadline, "closing the stream hung up on the server"
    assert server.requests[-1]["pieces_sent"] < server.requests[-1]["pieces"]


async def _inline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


async def _wait_for(condition, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


def test_a_voice_piece_goes_out_when_it_arrives_not_when_the_next_one_does():
    """Only the sentence's last 0.1 s waits (to mark is_last): holding a whole upstream chunk back
    would delay a live reply's first audio by the time the model takes to make the second."""
    from voices.cosyvoice_common import SentenceAssembler

    assembler = SentenceAssembler("Hello there.", "en", 24000)
    first = assembler.add(np.full(24000, 0.1, np.float32))  # one upstream chunk of 1 s
    assert [len(chunk.speech.audio.pcm) for chunk in first] == [21600] and not first[0].is_last
    assert assembler.add(np.full(1000, 0.1, np.float32)) == []  # tiny pieces are merged
    last = assembler.finish()
    assert [(len(chunk.speech.audio.pcm), chunk.is_last) for chunk in last] == [(3400, True)]


class _CountingChunks:
    """A cloned voice that streams three chunks per sentence and counts its streams."""

    def __init__(self) -> None:
        self.streams = 0

    def stream(self, text: str, *, emotion: str | None = None):
        self.streams += 1
        for index in range(3):
            pcm = np.full(2400, 0.1 * (index + 1), np.float32)
            yield TTSChunk(Speech(AudioChunk(pcm, 24000), text, "en"), is_last=index == 2)


def test_live_engines_stream_new_sentences_and_repeat_them_whole_from_the_speech_cache():
    from pathlib import Path
    from types import SimpleNamespace

    from avatar.engines.live_set import LiveConfig, LiveEngines

    engines = LiveEngines(LiveConfig(photo_path=Path("unused.png"), llm="stub", language="en"))
    voice = _CountingChunks()
    engines.tts, engines.cloned_voice = SimpleNamespace(get=lambda language: voice), voice
    assert engines.streams_audio
    first = list(engines.stream("Hello there.", emotion="happy"))
    again = list(engines.stream("Hello there.", emotion="happy"))
    assert len(first) == 3 and len(again) == 1 and again[0].is_last and voice.streams == 1
    whole = np.concatenate([chunk.speech.audio.pcm for chunk in first])
    np.testing.assert_array_equal(again[0].speech.audio.pcm, whole)
    assert len(list(engines.stream("Hello there.", emotion="sad"))) == 3  # another emotion, another sound
    cut = engines.stream("Stop me.")
    next(cut)
    cut.close()  # a barge-in: half a sentence is not kept
    assert len(list(engines.stream("Stop me."))) == 3 and voice.streams == 4
