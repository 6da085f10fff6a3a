"""The livestream host in virtual time: order of items, exact start/end stream times, controls,
and a clock that never stretches when the renderer is slow.

ToneTTS speaks 0.2 s per word and FlatLipSync paints frame k with grey level k, so every tick is
identifiable: a 3-word item is exactly 15 ticks, and the gap between items is 15 silent ticks.
Rendering starts at the same instant as the pump, so tick 0 is idle and the first item starts at
tick 1 (0.04 s).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar.broadcast.answers import FALLBACK_ANSWER
from avatar.broadcast.host import BroadcastHost
from avatar.core.clock import VirtualClock
from avatar.core.text_script import parse_script
from avatar.playout.av_output import TICK_S
from tests.support.fakes import FlatLipSync, ScriptedLLM, ToneTTS


class RecordingOutput:
    """Keeps what each tick carried: (index, speaking?, frame grey level, frame shape)."""

    name = "recording"

    def __init__(self, clock) -> None:
        self.clock = clock
        self.ticks: list[tuple[int, bool, int, tuple]] = []
        self.written_at_s: list[float] = []

    def write(self, tick_index: int, audio: np.ndarray, frame: np.ndarray) -> None:
        assert len(audio) == 640
        self.ticks.append((tick_index, bool(np.abs(audio).max() > 0), int(frame[0, 0, 0]), frame.shape))
        self.written_at_s.append(self.clock.now_s())

    def status(self) -> dict:
        return {"name": self.name, "state": "connected"}


async def inline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def script(*texts: str) -> list[tuple[str, tuple]]:
    return [(text, tuple(parse_script(text))) for text in texts]


class Harness:
    def __init__(self, *, llm=None, intake=None, run_blocking=inline, render_ahead_s: float = 3.0) -> None:
        self.clock = VirtualClock()
        self.events: list[dict] = []
        self.tts = ToneTTS(seconds_per_word=0.2)
        self.lipsync = FlatLipSync()
        self.output = RecordingOutput(self.clock)
        self.host = BroadcastHost(
            tts=self.tts,
            lipsync=self.lipsync,
            llm=llm or ScriptedLLM([]),
            clock=self.clock,
            intake=intake,
            run_blocking=run_blocking,
            on_event=self.events.append,
            render_ahead_s=render_ahead_s,
            gap_s=0.6,
        )
        self.host.add_output(self.output)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def times(self, kind: str) -> list[tuple[int, float]]:
        return [(e["item_id"], e["at_s"]) for e in self.of(kind)]


@pytest.fixture
def harness():
    return Harness()


def run(coro):
    return asyncio.run(coro)


def test_script_items_play_in_order_at_exact_stream_times(harness):
    async def main():
        harness.host.set_script(script("one two three", "four five", "six"), loop=False)
        await harness.host.start()
        await harness.clock.advance_to(4.0)
        await harness.host.close()

    run(main())
    # item 1: ticks 1..15 (0.6 s), gap 15 ticks, item 2: 10 ticks, gap, item 3: 5 ticks
    assert harness.times("item_started") == [(1, 0.04), (2, 1.24), (3, 2.24)]
    assert harness.times("item_finished") == [(1, 0.64), (2, 1.64), (3, 2.44)]
    assert len(harness.of("script_finished")) == 1
    assert harness.tts.spoken == ["one two three", "four five", "six"]
    # one write per tick, contiguous, and speech exactly where the items are
    indices = [t[0] for t in harness.output.ticks]
    assert indices == list(range(len(indices))) and len(indices) == 101  # ticks 0..100 by t = 4.0
    speaking = [t[0] for t in harness.output.ticks if t[1]]
    assert speaking == list(range(1, 16)) + list(range(31, 41)) + list(range(56, 61))


def test_looping_script_starts_again(harness):
    async def main():
        harness.host.set_script(script("one", "two"), loop=True)
        await harness.host.start()
        await harness.clock.advance_to(3.0)
        await harness.host.close()

    run(main())
    assert harness.tts.spoken[:4] == ["one", "two", "one", "two"]
    assert not harness.of("script_finished")
    started = harness.times("item_started")
    # each item: 5 ticks of speech + 15 of gap = 0.8 s
    assert [at for _, at in started[:4]] == [0.04, 0.84, 1.64, 2.44]


def test_pause_holds_speech_and_resume_continues_where_it_stopped(harness):
    async def main():
        harness.host.set_script(script("one two three"), loop=False)
        await harness.host.start()
        await harness.clock.advance_to(0.2)  # ticks 0..5 sent: 5 of speech
        harness.host.pause()
        assert harness.host.status()["state"] == "paused"
        await harness.clock.advance_to(1.2)  # ticks 6..30 idle
        harness.host.resume()
        await harness.clock.advance_to(2.0)
        await harness.host.close()

    run(main())
    assert harness.times("item_finished") == [(1, 1.64)]  # 0.64 + 1.0 s of pause
    speaking = [t[0] for t in harness.output.ticks if t[1]]
    assert speaking == list(range(1, 6)) + list(range(31, 41))
    assert [e["at_s"] for e in harness.of("paused")] == [0.24]  # stream time of the next tick
    assert [e["at_s"] for e in harness.of("resumed")] == [1.24]


def test_skip_drops_the_current_item_and_the_next_follows_at_the_next_tick(harness):
    async def main():
        harness.host.set_script(script("one two three four five", "six seven"), loop=False)
        await harness.host.start()
        await harness.clock.advance_to(0.3)
        assert await harness.host.skip() is True
        await harness.clock.advance_to(2.0)
        await harness.host.close()

    run(main())
    skipped = harness.of("item_skipped")
    assert [(e["item_id"], e["reason"]) for e in skipped] == [(1, "skip")]
    # item 2 ("six seven") had been rendered ahead; it was thrown away unheard, the script rewound
    # to it, and it is said once, as item 3, from the tick after the skip (tick 8, 0.32 s)
    assert harness.times("item_started") == [(1, 0.04), (3, 0.32)]
    assert harness.tts.spoken == ["one two three four five", "six seven", "six seven"]
    speaking = [t[0] for t in harness.output.ticks if t[1]]
    assert speaking == list(range(1, 8)) + list(range(8, 18))
    assert harness.of("item_finished")[-1]["at_s"] == 0.72


def test_say_now_interrupts_and_the_script_resumes_with_the_unheard_item(harness):
    async def main():
        harness.host.set_script(script("one two three", "four five"), loop=False)
        await harness.host.start()
        await harness.clock.advance_to(0.2)
        item = await harness.host.say("[happy] breaking news", now=True)
        assert item.kind == "interjection"
        await harness.clock.advance_to(3.0)
        await harness.host.close()

    run(main())
    assert [(e["item_id"], e["reason"]) for e in harness.of("item_skipped")] == [(1, "interjection")]
    kinds = [e["kind"] for e in harness.of("item_started")]
    assert kinds == ["script", "interjection", "script"]
    texts = [e["text"] for e in harness.of("item_finished")]
    assert texts == ["[happy] breaking news", "four five"]  # item 1 was dropped, item 2 not lost
    assert harness.lipsync.emotions.count("happy") >= 1
    # the interjection starts at the tick after the call (tick 6, 0.24 s)
    assert harness.of("item_started")[1]["at_s"] == 0.24


def test_interrupt_drops_waiting_interjections_but_keeps_the_script(harness):
    async def main():
        harness.host.set_script(script("one two three", "four five"), loop=False)
        await harness.host.start()
        await harness.clock.advance_to(0.2)
        await harness.host.say("first aside")
        await harness.host.say("second aside")
        await harness.clock.advance_to(0.3)
        assert await harness.host.interrupt() is True
        await harness.clock.advance_to(3.0)
        await harness.host.close()

    run(main())
    reasons = {(e["text"], e["reason"]) for e in harness.of("item_skipped")}
    assert ("one two three", "interrupt") in reasons
    assert ("first aside", "interrupt") in reasons and ("second aside", "interrupt") in reasons
    assert [e["text"] for e in harness.of("item_finished")] == ["four five"]


def test_slow_idle_drawing_repeats_frames_and_keeps_the_clock():
    """Each idle picture takes 100 ms (2.5 ticks) to draw: the stream still sends 25 ticks a
    second, repeating the last picture; speech frames, drawn ahead, are never repeated."""

    clock_holder = {}

    async def slow_pictures(fn, *args, **kwargs):
        if getattr(fn, "__name__", "") == "_draw":
            clock = clock_holder["clock"]
            await clock.sleep_until(clock.now_s() + 0.1)
        return fn(*args, **kwargs)

    h = Harness(run_blocking=slow_pictures)
    clock_holder["clock"] = h.clock

    async def main():
        await h.host.start()
        await h.clock.advance_to(1.0)
        h.host.set_script(script("one two three"), loop=False)
        await h.clock.advance_to(4.0)
        await h.host.close()

    run(main())
    indices = [t[0] for t in h.output.ticks]
    assert indices == list(range(len(indices))) and len(indices) >= 100  # nothing stretched or lost
    for index, written_s in zip(indices, h.output.written_at_s, strict=True):
        # tick k leaves between its due time and the next tick's: the clock is kept
        assert index * TICK_S - 1e-9 <= written_s <= (index + 1) * TICK_S + 1e-9
    assert h.host.pump.repeated_frames > 30
    speech = [t for t in h.output.ticks if t[1]]
    assert len(speech) == 15
    levels = [t[2] for t in speech]
    assert levels == sorted(levels) and len(set(levels)) == 15  # every speech frame is its own


def test_a_stalled_process_catches_up_with_repeated_frames():
    """A stall (here: one picture that takes 1 s) is followed by a burst of the missed ticks."""

    clock_holder = {"stalls": 1}

    async def one_stall(fn, *args, **kwargs):
        if (
            getattr(fn, "__name__", "") == "_draw"
            and clock_holder["stalls"]
            and clock_holder["clock"].now_s() > 0.5
        ):
            clock_holder["stalls"] -= 1
            await clock_holder["clock"].sleep_until(clock_holder["clock"].now_s() + 1.0)
        return fn(*args, **kwargs)

    h = Harness(run_blocking=one_stall)
    clock_holder["clock"] = h.clock

    async def main():
        await h.host.start()
        await h.clock.advance_to(3.0)
        await h.host.close()

    run(main())
    assert [t[0] for t in h.output.ticks] == list(range(76))
    assert h.host.pump.repeated_frames >= 24


def test_comment_answered_with_the_question_read_aloud():
    from avatar.broadcast.comments import CommentIntake

    llm = ScriptedLLM([["We open ", "at nine."]])
    h = Harness(llm=llm)
    h.host.intake = CommentIntake(h.clock)

    async def main():
        h.host.set_script(script("one two three four five six seven eight nine ten"), loop=False)
        await h.host.start()
        await h.clock.advance_to(0.5)
        verdict = h.host.submit_comment("ann", "When do you open?")
        assert verdict.accepted
        assert h.host.comment_position(verdict.comment.comment_id) == 1
        await h.clock.advance_to(8.0)
        await h.host.close()

    run(main())
    assert h.tts.spoken[1:] == ["ann asks: When do you open?", "We open at nine."]
    assert llm.requests[0][-1] == {"role": "user", "content": "When do you open?", "name": "ann"}
    finished = h.of("item_finished")
    assert [e["kind"] for e in finished] == ["script", "comment"]
    assert finished[1]["user"] == "ann" and finished[1]["text"] == "We open at nine."
    assert h.of("answer_ready")[0]["answer"] == "We open at nine."


def test_a_comment_put_back_by_an_interjection_keeps_its_place():
    from avatar.broadcast.comments import CommentIntake

    llm = ScriptedLLM([["We open ", "at nine."]])
    h = Harness(llm=llm)
    h.host.intake = CommentIntake(h.clock)
    positions = []

    async def main():
        h.host.set_script(script("one two three four five six seven eight nine ten"), loop=False)
        await h.host.start()
        await h.clock.advance_to(0.5)
        verdict = h.host.submit_comment("ann", "When do you open?")
        await h.clock.advance_to(0.8)  # rendered ahead, waiting behind the script item
        comment_id = verdict.comment.comment_id
        positions.append(h.host.comment_position(comment_id))
        await h.host.say("breaking news", now=True)  # drops the script item, puts the comment back
        positions.append(h.host.comment_position(comment_id))
        await h.clock.advance_to(8.0)
        await h.host.close()

    run(main())
    assert positions == [1, 1]
    assert [e["kind"] for e in h.of("item_finished")] == ["interjection", "comment"]


def test_a_failing_llm_gives_the_fallback_line():
    from avatar.broadcast.comments import CommentIntake

    class BrokenLLM:
        async def stream(self, messages):
            raise ConnectionRefusedError("http://127.0.0.1:9/v1 refused the connection")
            yield ""  # pragma: no cover

    h = Harness(llm=BrokenLLM())
    h.host.intake = CommentIntake(h.clock)

    async def main():
        await h.host.start()
        assert h.host.submit_comment("bob", "Is the tea organic?").accepted
        await h.clock.advance_to(10.0)
        await h.host.close()

    run(main())
    assert h.of("answer_failed")[0]["error"].startswith("ConnectionRefusedError")
    assert h.tts.spoken == ["bob asks: Is the tea organic?", *FALLBACK_ANSWER.replace(". ", ".|").split("|")]
    assert h.of("item_finished")[0]["kind"] == "comment"


def test_emotion_control_and_avatar_switch_keep_the_stream_size(harness):
    async def main():
        harness.host.set_script(script("one two three four five"), loop=False)
        await harness.host.start()
        await harness.clock.advance_to(0.2)
        harness.host.set_emotion("happy")
        with pytest.raises(ValueError, match="unknown emotion"):
            harness.host.set_emotion("ecstatic")

        class BigFlat(FlatLipSync):
            def draw(self, rows):
                return [np.full((16, 8, 3), 200, np.uint8) for _ in rows]

            def idle_frame(self, tick_index=None):
                return np.full((16, 8, 3), 200, np.uint8)

        await harness.host.switch_avatar(BigFlat(), ToneTTS(), "second")
        await harness.clock.advance_to(1.0)
        await harness.host.close()

    run(main())
    assert harness.of("emotion_changed")[0]["emotion"] == "happy"
    assert harness.of("avatar_changed")[0]["avatar"] == "second"
    assert harness.of("item_skipped")[0]["reason"] == "avatar"
    assert {t[3] for t in harness.output.ticks} == {(8, 8, 3)}  # letterboxed to the stream size
    assert harness.host.status()["avatar"] == "second"


def test_status_reports_queue_and_frames(harness):
    async def main():
        harness.host.set_script(script("one two three", "four"), loop=True)
        await harness.host.start()
        await harness.clock.advance_to(0.3)
        status = harness.host.status()
        await harness.clock.advance_to(1.1)
        await harness.host.close()
        return status

    status = run(main())
    assert status["state"] == "speaking"
    assert status["current"]["text"] == "one two three"
    assert status["queue"]["script_length"] == 2 and status["queue"]["loop"] is True
    assert status["frames"]["sent"] == 8 and status["stream_time_s"] == pytest.approx(8 * TICK_S)
    assert [e["type"] for e in harness.events if e["type"] == "status"] == ["status"]  # once a second


def test_a_sentence_without_words_or_one_the_voice_refuses_is_skipped_not_the_item():
    from avatar.core.errors import InputError

    class PickyTTS(ToneTTS):
        def synthesize(self, text, *, emotion=None):
            if "xyzzy" in text:
                raise InputError(f"cannot say {text!r}")
            return super().synthesize(text, emotion=emotion)

    h = Harness()
    h.host.tts = h.tts = PickyTTS(seconds_per_word=0.2)

    async def main():
        await h.host.say("Question? (5) [happy] Say xyzzy now. Still here.")
        await h.host.start()
        await h.clock.advance_to(3.0)
        await h.host.close()

    run(main())
    assert h.tts.spoken == ["Question?", "Still here."]
    skipped = h.of("sentence_skipped")
    assert [e["text"] for e in skipped] == ["(5)", "Say xyzzy now."]  # both reported, the item goes on
    assert skipped[0]["reason"].startswith("nothing to say") and "cannot say" in skipped[1]["reason"]
    assert [e["kind"] for e in h.of("item_finished")] == ["interjection"]


def test_each_sentence_reaches_the_voice_with_its_items_emotion():
    h = Harness()

    async def main():
        h.host.set_emotion("happy")  # the base expression: for text without a tag
        h.host.set_script(script("[angry] Stop that now. Calm down.", "Plain words."), loop=False)
        await h.host.say("[sad] Oh no.")
        await h.host.start()
        await h.clock.advance_to(6.0)
        await h.host.close()

    run(main())
    assert h.tts.spoken == ["Oh no.", "Stop that now.", "Calm down.", "Plain words."]
    assert h.tts.emotions == ["sad", "angry", "angry", "happy"]


def test_an_items_intensity_tag_reaches_the_face_and_the_base_expression_returns_after_it():
    h = Harness()

    async def main():
        await h.host.say("[sad:0.5] Oh no.")
        await h.host.start()
        await h.clock.advance_to(3.0)
        await h.host.close()

    run(main())
    assert list(zip(h.lipsync.emotions, h.lipsync.strengths, strict=True))[:2] == [
        ("sad", 0.5),
        ("neutral", 1.0),
    ]
