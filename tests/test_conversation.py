"""Conversation sessions in virtual time with scripted engines: exact ticks, pairing, barge-in, history."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar.core.clock import VirtualClock
from avatar.core.types import AudioChunk, Transcript, VADEvent
from avatar.live.conversation import ConversationSession
from avatar.live.turn import heard_text
from avatar.playout.av_output import SAMPLES_PER_FRAME, AVOutputQueue, AVPlayout
from avatar.turns.turn_detector import TurnDetector
from tests.support.fakes import FlatLipSync, ScriptedASR, ScriptedLLM, ScriptedTurnModel, ScriptedVAD, ToneTTS

MIC_CHUNK_S = 0.02
TICK_S = 0.04


async def inline(fn, *args, **kwargs):
    """Engines are instant fakes: run them on the loop so virtual time sees everything."""
    return fn(*args, **kwargs)


def speech(start_s: float, end_s: float, gate_s: float = 0.2, hangover_s: float = 0.5) -> list[VADEvent]:
    return [
        VADEvent("speech_start", round(start_s * 16000), start_s, 0.9, round(start_s + gate_s, 6)),
        VADEvent("speech_end", round(end_s * 16000), end_s, 0.1, round(end_s + hangover_s, 6)),
    ]


class Harness:
    def __init__(self, vad_events, transcripts, replies, token_delay_s=0.05, onset_windows=()):
        self.clock = VirtualClock()
        self.queue = AVOutputQueue()
        self.lipsync = FlatLipSync()
        self.playout = AVPlayout(self.queue, self.lipsync.idle_frame)
        self.llm = ScriptedLLM(replies, self.clock, token_delay_s)
        self.tts = ToneTTS(seconds_per_word=0.2)
        self.events: list[dict] = []
        self.session = ConversationSession(
            vad=ScriptedVAD(vad_events, onset_windows=onset_windows),
            turn_detector=TurnDetector(min_turn_s=0.2, end_silence_ms=0),
            asr=ScriptedASR(transcripts),
            llm=self.llm,
            tts=self.tts,
            lipsync=self.lipsync,
            queue=self.queue,
            playout=self.playout,
            clock=self.clock,
            run_blocking=inline,
            on_event=self.events.append,
        )
        self.ticks = []

    async def _loop(self, duration_s: float) -> None:
        """Microphone every 20 ms, one playout tick every 40 ms, like the transport would."""
        for k in range(int(round(duration_s / MIC_CHUNK_S))):
            await self.clock.sleep_until(k * MIC_CHUNK_S)
            if k % 2 == 0:
                self.ticks.append(self.playout.next_tick())
            if k > 0:  # the chunk recorded during [k-1, k) x 20 ms arrives at its end
                await self.session.handle_microphone(AudioChunk(np.zeros(320, np.float32), 16000))
        await self.session.close()

    def run(self, duration_s: float):
        async def main():
            await self.clock.run(self._loop(duration_s), limit_s=duration_s + 1)

        asyncio.run(main())
        return self

    def first(self, kind: str) -> dict:
        return next(e for e in self.events if e["type"] == kind)


def test_a_reply_plays_as_paired_ticks_right_after_its_first_sentence():
    h = Harness(
        speech(1.0, 2.0),
        [Transcript("what time is it", "en")],
        [["Hello", " there.", " It is", " noon", " now."]],
    ).run(6.0)
    assert [t.index for t in h.ticks] == list(range(150)), "one tick per 40 ms, indices never skip"
    # The turn ends when the VAD confirms the end (2.5 s); tokens arrive 50 ms apart and the first
    # sentence is certain when " It is" arrives (third token): queued at 2.65 s.
    queued = h.first("first_audio_queued")
    assert queued["at_s"] == pytest.approx(2.65)
    assert queued["latency_s"] == pytest.approx(0.65)  # from the end of the user's speech at 2.0 s
    speech_ticks = [t for t in h.ticks if t.is_speech]
    first_index = speech_ticks[0].index
    assert first_index == int(np.ceil(2.65 / TICK_S)), "the first speech tick is the next tick after queueing"
    # Speech is contiguous, then idle again: "Hello there." = 2 words, "It is noon now." = 4 words,
    # 0.2 s per word -> 1.2 s = 30 ticks.
    assert [t.index for t in speech_ticks] == list(range(first_index, first_index + 30))
    audio = np.concatenate([t.audio for t in speech_ticks])
    expected = np.concatenate([h.tts.synthesize(s).audio.pcm for s in ("Hello there.", "It is noon now.")])
    np.testing.assert_array_equal(audio, expected)  # pairing: exactly the TTS audio, in order
    colours = [int(t.frame[0, 0, 0]) for t in speech_ticks]
    assert colours == list(range(30)), "frame k of the reply plays with audio samples [640k, 640(k+1))"
    assert all(len(t.audio) == SAMPLES_PER_FRAME for t in h.ticks)
    assert not any(t.audio.any() for t in h.ticks if not t.is_speech), "silence when idle"
    assert h.session.history == [
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": "Hello there. It is noon now."},
    ]


def test_barge_in_mid_reply_silences_the_next_tick_and_keeps_only_what_was_heard():
    h = Harness(
        speech(1.0, 2.0) + speech(3.5, 4.5),
        [Transcript("tell me a story", "en"), Transcript("stop", "en")],
        [["Once upon", " a time.", " There was", " a king", " who ruled", " a land."], ["Okay."]],
    ).run(7.0)
    interrupted = h.first("turn_interrupted")
    assert interrupted["at_s"] == pytest.approx(3.7), "barge-in fires when the onset is confirmed"
    after = [t for t in h.ticks if t.index * TICK_S >= 3.7]
    assert after[0].turn_id != 1 and not after[0].audio.any(), "silent from the very next tick"
    assert all(t.turn_id != 1 for t in after)
    # Played: ticks 67 (2.68 s, the first after queueing at 2.65 s) .. 92 (3.68 s) = 26 ticks
    # = 1.04 s. "Once upon a time." is 0.8 s; of "There was a king who ruled a land." (1.6 s)
    # 0.24 s were heard: 1 of its 8 words.
    assert h.playout.played_ticks(1) == 26
    assert interrupted["heard"] == "Once upon a time. There"
    assert h.session.history[:2] == [
        {"role": "user", "content": "tell me a story"},
        {"role": "assistant", "content": "Once upon a time. There"},
    ]
    assert h.session.history[2:] == [
        {"role": "user", "content": "stop"},
        {"role": "assistant", "content": "Okay."},
    ]
    assert h.llm.requests[1][-1] == {"role": "user", "content": "stop"}
    # No hint from the turn before: a user who switches language is recognised in the new one
    # (live Whisper detects the language from the same encoding at no cost).
    assert h.session.asr.language_hints == [None, None]
    assert h.session.language == "en"  # the turn model's thresholds follow the language heard


def test_possible_barge_in_pauses_at_once_and_a_blip_resumes_where_it_paused():
    story = ["Once upon", " a time.", " There was", " a king", " who ruled", " a land."]
    # Reply 1 plays from tick 67 (2.68 s). At 3.5 s a sound starts; it is confirmed at 3.7 s.
    h = Harness(
        speech(1.0, 2.0) + speech(3.5, 4.5),
        [Transcript("tell me a story", "en"), Transcript("stop", "en")],
        [story, ["Okay."]],
        onset_windows=[(3.5, 3.7)],
    ).run(7.0)
    assert h.first("playback_held")["at_s"] == pytest.approx(3.5)
    assert h.first("playback_held")["mic_lag_ms"] == 0.0  # every chunk arrived on time
    after = [t for t in h.ticks if t.index * TICK_S > 3.5]
    assert after[0].index == 88 and not after[0].is_speech, "silent from the first tick after the onset"
    assert h.playout.played_ticks(1) == 88 - 67, "only what played before the pause counts as heard"
    assert h.first("turn_interrupted")["heard"] == "Once upon a time."
    # A cough at 3.5 s that the VAD drops at 3.62 s: a 0.12 s pause, then the story goes on with
    # nothing skipped and nothing interrupted.
    h = Harness(speech(1.0, 2.0), [Transcript("tell me a story", "en")], [story], onset_windows=[(3.5, 3.62)])
    h.run(7.0)
    held = [t for t in h.ticks if 3.5 < t.index * TICK_S <= 3.62]
    assert [t.index for t in held] == [88, 89, 90] and not any(t.is_speech for t in held)
    assert h.first("playback_resumed")["at_s"] == pytest.approx(3.62)
    speech_ticks = [t for t in h.ticks if t.is_speech]
    assert [int(t.frame[0, 0, 0]) for t in speech_ticks] == list(range(60)), (
        "every frame played once, in order"
    )
    assert not any(e["type"] == "turn_interrupted" for e in h.events)


def test_barge_in_before_any_audio_does_not_hang_and_the_utterance_is_recognised_whole():
    """A pause long enough to end the turn, then more words before the reply was heard: the
    unheard reply is cancelled (LLM stream closed) and the next turn recognises both parts."""
    h = Harness(
        speech(1.0, 1.5) + speech(2.2, 2.8),
        [Transcript("hello", "en"), Transcript("hello there how are you", "en")],
        [["Well", " let", " me", " think", " about", " that."], ["Fine."]],
        token_delay_s=0.5,
    ).run(6.0)
    interrupted = h.first("turn_interrupted")
    assert interrupted["heard"] == ""
    assert interrupted["at_s"] == pytest.approx(2.4)
    assert h.llm.closed_early == 1
    assert [len(call.pcm) for call in h.session.asr.calls] == [8000, 28800]  # 1.0-1.5 s, then 1.0-2.8 s
    assert h.session.history == [
        {"role": "user", "content": "hello there how are you"},
        {"role": "assistant", "content": "Fine."},
    ]
    assert not any(t.turn_id == 1 for t in h.ticks), "the cancelled reply never played"


def test_explicit_interrupt_and_say():
    async def main():
        h = Harness([], [], [])
        await h.session.say("One two three four five six seven eight.")
        ticks = []
        for k in range(40):
            await h.clock.advance_to(k * TICK_S)
            ticks.append(h.playout.next_tick())
            if k == 10:
                assert await h.session.interrupt("button")
        assert not await h.session.interrupt("again"), "nothing left to interrupt"
        spoken = [t for t in ticks if t.is_speech]
        assert len(spoken) == 11 and not ticks[11].is_speech
        assert h.session.history == [{"role": "assistant", "content": "One two"}]
        await h.session.close()

    asyncio.run(main())


def test_heard_text_boundaries():
    sentences = [("Hello there.", 6400), ("How are you today?", 19200)]
    assert heard_text(sentences, 0) == ""
    assert heard_text(sentences, 6400) == "Hello there."
    assert heard_text(sentences, 6400 + 6400) == "Hello there. How are"
    assert heard_text(sentences, 10**6) == "Hello there. How are you today?"


def test_reply_is_prepared_speculatively_and_released_when_the_turn_ends():
    """VAD says 'speech over' after 200 ms of silence, the turn ends after 500 ms: the reply is
    recognised, generated, synthesized and drawn in between, held, and plays at the turn end."""

    def harness(vad_events, first_reply=("Ok.",)):
        h = Harness(
            vad_events,
            [Transcript("first guess", "en"), Transcript("whole turn", "en")],
            [list(first_reply), ["Sure."]],
        )
        h.session.turn_detector = TurnDetector(min_turn_s=0.2, end_silence_ms=500)
        return h

    # One sentence: speech 1.0-2.0 s, VAD end confirmed at 2.2 s, turn end at 2.5 s.
    h = harness(speech(1.0, 2.0, hangover_s=0.2)).run(4.0)
    assert len(h.session.asr.calls) == 1 and len(h.session.asr.calls[0].pcm) == 16000
    transcript = h.first("user_transcript")
    assert transcript["at_s"] == pytest.approx(2.2), "recognised while the turn could still go on"
    assert h.first("user_turn_ended")["at_s"] == pytest.approx(2.5)
    types = [e["type"] for e in h.events]
    assert types.index("user_turn_ended") < types.index("user_transcript"), "held until the turn ended"
    queued = h.first("first_audio_queued")
    assert queued["at_s"] == pytest.approx(2.5) and queued["latency_s"] == pytest.approx(0.5)
    first_speech = next(t for t in h.ticks if t.is_speech)
    assert first_speech.index == int(np.ceil(2.5 / TICK_S)), "plays at the first tick after the turn ends"
    assert h.session.history == [
        {"role": "user", "content": "first guess"},
        {"role": "assistant", "content": "Ok."},
    ]

    # The user pauses 0.3 s and goes on: the guess leaves no trace, the whole turn is answered.
    # The held reply streams 8 tokens 50 ms apart from 2.2 s: still streaming when cancelled at 2.5 s.
    long_reply = ("Ok,", " let", " me", " think", " about", " that", " for", " you.")
    h = harness(speech(1.0, 2.0, hangover_s=0.2) + speech(2.3, 3.0, hangover_s=0.2), long_reply).run(5.0)
    assert [len(c.pcm) for c in h.session.asr.calls] == [16000, 32000]
    assert len(h.llm.requests) == 2 and h.llm.closed_early == 1, "the held reply's LLM stream was closed"
    assert [e["text"] for e in h.events if e["type"] == "user_transcript"] == ["whole turn"]
    assert [e["type"] for e in h.events].count("turn_started") == 1
    assert not any(e["type"] == "turn_failed" for e in h.events)
    assert {t.turn_id for t in h.ticks if t.is_speech} == {2}, "only the real reply played"
    assert h.session.history == [
        {"role": "user", "content": "whole turn"},
        {"role": "assistant", "content": "Sure."},
    ]


def test_each_sentence_of_a_reply_reaches_the_voice_with_its_emotion():
    h = Harness(
        speech(1.0, 2.0),
        [Transcript("any news", "en")],
        [["[happy] Great", " news. ", "[sad] But", " sorry."]],
    ).run(5.0)
    assert h.tts.spoken == ["Great news.", "But sorry."]
    assert h.tts.emotions == ["happy", "sad"], "the voice hears each sentence's emotion, not only the face"
    assert [e["emotion"] for e in h.events if e["type"] == "avatar_sentence"] == ["happy", "sad"]


def test_a_replys_intensity_tag_reaches_the_face():
    h = Harness(
        speech(1.0, 2.0),
        [Transcript("any news", "en")],
        [["[happy:0.4] Great", " news. ", "[sad] But", " sorry."]],
    ).run(5.0)
    assert list(zip(h.lipsync.emotions, h.lipsync.strengths, strict=True)) == [("happy", 0.4), ("sad", 1.0)]


def test_a_sentence_with_nothing_to_say_is_skipped_and_the_rest_of_the_reply_plays():
    # ToneTTS raises on "..." as Piper does; "(5)." has a digit but no word: both are skipped.
    h = Harness(
        speech(1.0, 2.0),
        [Transcript("how do I open it", "en")],
        [["Sure. ", "(5). ", "... ", "Here it", " is."]],
    ).run(5.0)
    assert h.tts.spoken == ["Sure.", "Here it is."]
    skipped = [e for e in h.events if e["type"] == "avatar_sentence_skipped"]
    assert [(e["turn_id"], e["text"]) for e in skipped] == [(1, "(5)."), (1, "...")]
    assert all(e["reason"].startswith("nothing to say") for e in skipped)
    assert not any(e["type"] == "turn_failed" for e in h.events)
    assert [e["text"] for e in h.events if e["type"] == "avatar_sentence"] == ["Sure.", "Here it is."]
    assert h.first("turn_rendered")["text"] == "Sure. Here it is."
    # 1 + 3 words at 0.2 s = 0.8 s = 20 ticks of speech, all of it heard
    assert len([t for t in h.ticks if t.is_speech]) == 20
    assert h.session.history[-1] == {"role": "assistant", "content": "Sure. Here it is."}


def _with_turn_model(vad_events, probabilities, transcripts, replies, fallback_ms=1500):
    """A session whose turns end on the turn model's word after 200 ms of silence, else after
    `fallback_ms`; the VAD says "speech over" after 120 ms, when the reply is prepared."""
    h = Harness(vad_events, transcripts, replies)
    h.session.turn_detector = TurnDetector(
        min_turn_s=0.2, end_silence_ms=fallback_ms, check_after_silence_ms=200
    )
    h.session.turn_model = ScriptedTurnModel(probabilities)
    return h


def test_a_complete_turn_ends_when_the_turn_model_says_so():
    """Speech 1.0-2.0 s: the model is asked at 2.2 s and says "complete": the held reply plays then,
    0.3 s before the 500 ms silence rule would have let it."""
    h = _with_turn_model(speech(1.0, 2.0, hangover_s=0.12), [0.9], [Transcript("hi", "en")], [["Ok."]])
    h.run(4.0)
    check = h.first("turn_end_check")
    assert check["at_s"] == pytest.approx(2.2)
    assert check["verdict"] == "complete" and check["probability"] == 0.9 and check["latency_ms"] == 60.0
    assert check["silence_ms"] == pytest.approx(200.0)
    ended = h.first("user_turn_ended")
    assert ended["at_s"] == pytest.approx(2.2) and ended["decided_by"] == "turn model"
    assert ended["silence_ms"] == pytest.approx(200.0)
    assert h.first("first_audio_queued")["latency_s"] == pytest.approx(0.2)
    first_speech = next(t for t in h.ticks if t.is_speech)
    assert first_speech.index == 56, "the next tick (2.24 s): the one at 2.2 s went out just before"
    # The model heard the turn from 0.5 s before its onset (1.0 s) up to the check (2.2 s).
    (audio,) = h.session.turn_model.calls
    assert audio.sample_rate_hz == 16000 and len(audio.pcm) == round((2.2 - 0.5) * 16000)
    assert len(h.session.asr.calls) == 1, "the speculative reply was the one released"


def test_an_incomplete_turn_waits_for_more_words_or_the_fallback():
    # "Incomplete" and nothing more: the turn ends at the 1.5 s fallback (3.5 s), not at 2.2 s;
    # "unsure" (between the thresholds) waits as the 500 ms silence rule would.
    for probability, verdict, end_s in ((0.1, "incomplete", 3.5), (0.3, "unsure", 2.5)):
        h = _with_turn_model(
            speech(1.0, 2.0, hangover_s=0.12), [probability], [Transcript("so", "en")], [["Ok."]]
        )
        h.run(5.0)
        assert h.first("turn_end_check")["verdict"] == verdict
        ended = h.first("user_turn_ended")
        assert ended["at_s"] == pytest.approx(end_s) and ended["decided_by"] == "silence"
        assert ended["silence_ms"] == pytest.approx((end_s - 2.0) * 1000)

    # A 0.6 s pause inside the sentence (the 500 ms rule would have cut it): "incomplete" keeps
    # the turn open, the user goes on, and the second pause is "complete": one turn, all the words.
    h = _with_turn_model(
        speech(1.0, 2.0, hangover_s=0.12) + speech(2.6, 3.5, hangover_s=0.12),
        [0.1, 0.8],
        [Transcript("first guess", "en"), Transcript("second guess", "en"), Transcript("whole", "en")],
        [["Ok."], ["Sure."], ["Never."]],
    )
    h.run(6.0)
    assert [e["verdict"] for e in h.events if e["type"] == "turn_end_check"] == ["incomplete", "complete"]
    ended = [e for e in h.events if e["type"] == "user_turn_ended"]
    assert len(ended) == 1 and ended[0]["at_s"] == pytest.approx(3.7)
    assert [len(c.pcm) for c in h.session.asr.calls] == [16000, 40000], "1.0-2.0 s, then 1.0-3.5 s"
    assert [e["text"] for e in h.events if e["type"] == "user_transcript"] == ["second guess"]
    assert not any(e["type"] == "turn_interrupted" for e in h.events)
    assert h.session.history == [
        {"role": "user", "content": "second guess"},
        {"role": "assistant", "content": "Sure."},
    ]


def test_the_turn_model_reads_its_answer_in_the_language_heard_last():
    """Smart Turn's thresholds are per language: the check is read in the session's language, the
    one recognised last. Here that is the held reply's own recognition (instant in virtual time,
    started at the VAD's "speech over"); on a real first turn it may not be ready (None)."""
    h = _with_turn_model(
        speech(1.0, 2.0, hangover_s=0.12) + speech(4.0, 5.0, hangover_s=0.12),
        [0.9, 0.9],
        [Transcript("你好", "zh"), Transcript("hello", "en")],
        [["Hi."], ["Yes."]],
    )
    h.run(7.0)
    assert h.session.turn_model.languages == ["zh", "en"]
    assert [e["decided_by"] for e in h.events if e["type"] == "user_turn_ended"] == ["turn model"] * 2


def test_the_session_reports_how_far_its_microphone_runs_behind_real_time():
    """A chunk that waits (busy event loop) shows as mic lag: the barge-in is noticed that late."""
    h = Harness([], [], [])

    async def main():
        session = h.session
        assert session.mic_lag_ms() == 0.0  # nothing heard yet
        for k in range(1, 11):  # 200 ms of microphone, each chunk at the end of its 20 ms
            await h.clock.sleep_until(k * MIC_CHUNK_S)
            await session.handle_microphone(AudioChunk(np.zeros(320, np.float32), 16000))
        assert session.mic_lag_ms() == pytest.approx(0.0, abs=1e-6)
        await h.clock.sleep_until(0.5)  # 300 ms pass with no chunk handled
        assert session.mic_lag_ms() == pytest.approx(300.0, abs=0.1)
        await session.close()

    asyncio.run(h.clock.run(main(), limit_s=1.0))
