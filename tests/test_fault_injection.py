"""Fault injection: an engine that raises, hangs or returns garbage ends one turn (live), one item
(livestream) or one render with an event or a one-line error naming the stage, never the session,
the stream or the process (issue 18; the matrix is docs/measurements/faults.md).

Live and livestream run in virtual time with the fakes wrapped by tests/support/faults.py; a hang
is a call that never returns, and the stage's deadline (`StageTimeouts`) fires at an exact
instant of the session clock.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar.core.clock import VirtualClock
from avatar.core.deadlines import StageTimeouts
from avatar.core.types import AudioChunk, Transcript, VADEvent
from avatar.live.conversation import ConversationSession
from avatar.live.faults import FALLBACK_REPLIES, MAX_TRANSCRIPT_CHARS
from avatar.playout.av_output import AVOutputQueue, AVPlayout
from avatar.turns.turn_detector import TurnDetector
from tests.support.fakes import FlatLipSync, ScriptedASR, ScriptedLLM, ScriptedVAD, ToneTTS
from tests.support.faults import FaultyASR, FaultyLipSync, FaultyLLM, FaultyTTS, hanging_run_blocking

MIC_CHUNK_S = 0.02
TIMEOUT_S = 1.0  # every stage's deadline in these tests
TIMEOUTS = StageTimeouts(
    asr_s=TIMEOUT_S,
    llm_first_token_s=TIMEOUT_S,
    llm_token_gap_s=TIMEOUT_S,
    tts_s=TIMEOUT_S,
    render_s=TIMEOUT_S,
)
FIRST_TURN_ENDS_S = 2.5  # speech 1.0-2.0 s, confirmed over after 0.5 s
# When each stage is first asked: the reply's first sentence is complete after two tokens 50 ms apart.
ASKED_AT_S = {"asr": 2.5, "llm": 2.5, "tts": 2.6, "lip-sync": 2.6}
SECOND_TURN_ENDS_S = 8.5  # speech 7.0-8.0 s


async def inline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def utterance(start_s: float, end_s: float) -> list[VADEvent]:
    return [
        VADEvent("speech_start", round(start_s * 16000), start_s, 0.9, round(start_s + 0.2, 6)),
        VADEvent("speech_end", round(end_s * 16000), end_s, 0.1, round(end_s + 0.5, 6)),
    ]


class LiveHarness:
    """Two user turns (1-2 s and 7-8 s) against a session whose engines may be faulty; records
    events, ticks and the tasks still running after the session closed."""

    def __init__(self, *, asr=None, llm=None, tts=None, lipsync=None, timeouts=TIMEOUTS) -> None:
        self.clock = VirtualClock()
        self.queue = AVOutputQueue()
        self.lipsync = lipsync or FlatLipSync()
        self.playout = AVPlayout(self.queue, self.lipsync.idle_frame)
        self.asr = asr or ScriptedASR([Transcript("how are you", "en")] * 3)
        self.llm = llm or ScriptedLLM([["Fine, ", "thanks."]] * 3, self.clock, 0.05)
        self.tts = tts or ToneTTS()
        self.events: list[dict] = []
        self.leftover_tasks: list[asyncio.Task] = []
        self.session = ConversationSession(
            vad=ScriptedVAD(utterance(1.0, 2.0) + utterance(7.0, 8.0)),
            turn_detector=TurnDetector(min_turn_s=0.2, end_silence_ms=0),
            asr=self.asr,
            llm=self.llm,
            tts=self.tts,
            lipsync=self.lipsync,
            queue=self.queue,
            playout=self.playout,
            clock=self.clock,
            run_blocking=hanging_run_blocking(inline),
            on_event=self.events.append,
            stage_timeouts=timeouts,
        )
        self.ticks = []

    async def _loop(self, duration_s: float, main: asyncio.Task) -> None:
        for k in range(int(round(duration_s / MIC_CHUNK_S))):
            await self.clock.sleep_until(k * MIC_CHUNK_S)
            if k % 2 == 0:
                self.ticks.append(self.playout.next_tick())
            if k > 0:
                await self.session.handle_microphone(AudioChunk(np.zeros(320, np.float32), 16000))
        await self.session.close()
        for _ in range(5):
            await asyncio.sleep(0)
        mine = {asyncio.current_task(), main}
        self.leftover_tasks = [t for t in asyncio.all_tasks() if t not in mine and not t.done()]

    def run(self, duration_s: float = 10.0) -> LiveHarness:
        async def main():
            await self.clock.run(self._loop(duration_s, asyncio.current_task()), limit_s=duration_s + 1)

        asyncio.run(main())
        return self

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def speech_ticks_between(self, start_s: float, end_s: float) -> int:
        return sum(1 for t in self.ticks if t.is_speech and start_s <= t.index * 0.04 < end_s)


def faulty_engines(stage: str, mode: str, clock_holder: dict) -> dict:
    if stage == "asr":
        return {"asr": FaultyASR(ScriptedASR([Transcript("how are you", "en")] * 3), mode)}
    if stage == "llm":
        return {"llm": "faulty:" + mode}  # built with the harness's clock below
    if stage == "tts":
        return {"tts": FaultyTTS(ToneTTS(), mode)}
    return {"lipsync": FaultyLipSync(FlatLipSync(), mode)}


LIVE_FAULTS = [
    ("asr", "raise"),
    ("asr", "hang"),
    ("asr", "none"),
    ("asr", "not_text"),
    ("llm", "raise"),
    ("llm", "hang"),
    ("llm", "not_text"),
    ("tts", "raise"),
    ("tts", "hang"),
    ("tts", "nan"),
    ("tts", "empty"),
    ("tts", "int16"),
    ("tts", "zero_rate"),
    ("tts", "not_speech"),
    ("lip-sync", "raise"),
    ("lip-sync", "raise_prepare"),
    ("lip-sync", "hang"),
    ("lip-sync", "wrong_shape"),
    ("lip-sync", "wrong_count"),
    ("lip-sync", "float_frames"),
]


def live_harness(stage: str, mode: str, **kwargs) -> LiveHarness:
    engines = faulty_engines(stage, mode, {})
    if stage == "llm":
        h = LiveHarness(**kwargs)
        h.session.llm = h.llm = FaultyLLM(h.llm, mode, clock=h.clock)
        return h
    return LiveHarness(**engines, **kwargs)


@pytest.mark.parametrize(("stage", "mode"), LIVE_FAULTS, ids=[f"{s}-{m}" for s, m in LIVE_FAULTS])
def test_live_a_faulty_engine_ends_the_turn_with_an_event_and_the_next_turn_works(stage, mode):
    h = live_harness(stage, mode).run()
    failed = h.of("turn_failed")
    assert len(failed) == 1, [e["type"] for e in h.events]
    assert failed[0]["turn_id"] == 1 and failed[0]["stage"] == stage
    assert failed[0]["error"].startswith(f"{stage} failed: ")
    if mode == "hang":  # the deadline fires at an exact instant of the session clock
        assert failed[0]["at_s"] == pytest.approx(ASKED_AT_S[stage] + TIMEOUT_S)
        assert f"no answer within {TIMEOUT_S:g} s" in failed[0]["error"]
    spoken = stage not in ("tts", "lip-sync")  # the apology needs a working voice and face
    assert failed[0]["fallback"] == FALLBACK_REPLIES["en"] and failed[0]["fallback_spoken"] is spoken
    apology_ticks = h.speech_ticks_between(FIRST_TURN_ENDS_S, 7.0)
    if spoken:
        assert h.tts.spoken[0] == FALLBACK_REPLIES["en"]
        words = len(FALLBACK_REPLIES["en"].split())
        assert apology_ticks == pytest.approx(words * 0.2 / 0.04, abs=1), "the apology is heard"
    else:
        assert apology_ticks <= 1  # at most the tick queued before the fault
    # The next turn is answered as if nothing had happened, and nothing is left running.
    rendered = h.of("turn_rendered")
    first = [e["text"] for e in rendered if e["turn_id"] == 1]
    assert first == ([FALLBACK_REPLIES["en"]] if spoken else []), "a spoken apology closes its turn"
    assert [e["turn_id"] for e in rendered][-1] == 2 and rendered[-1]["text"] == "Fine, thanks."
    assert h.speech_ticks_between(SECOND_TURN_ENDS_S, 10.0) == round(2 * 0.2 / 0.04)
    assert h.session.history[-2:] == [
        {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "Fine, thanks."},
    ]
    assert [m["role"] for m in h.session.history].count("user") == 1, "the failed turn left no question"
    assert h.leftover_tasks == []


def test_live_a_model_that_hangs_mid_reply_keeps_what_was_said_and_apologises():
    h = live_harness("llm", "hang_midway").run()
    failed = h.of("turn_failed")[0]
    assert failed["stage"] == "llm" and "hung" in failed["error"]
    assert h.tts.spoken[:2] == ["Well, let me see.", FALLBACK_REPLIES["en"]]
    assert h.llm.closed == 1, "the hung stream was closed"
    assert h.leftover_tasks == []


def test_live_a_model_that_never_stops_is_cut_at_the_reply_cap_and_the_next_turn_works():
    timeouts = StageTimeouts(max_reply_chars=40)
    h = live_harness("llm", "endless", timeouts=timeouts).run(12.0)
    truncated = h.of("reply_truncated")
    assert len(truncated) == 1 and truncated[0]["chars"] <= 40
    first = next(e for e in h.of("turn_rendered") if e["turn_id"] == 1)
    assert first["text"] == "La la la. La la la. La la la. La la la."
    assert h.llm.closed == 1 and not h.of("turn_failed")
    assert h.of("turn_rendered")[-1]["text"] == "Fine, thanks."
    assert h.leftover_tasks == []


def test_live_a_recogniser_that_returns_a_megabyte_is_cut_and_answered():
    h = live_harness("asr", "huge").run()
    heard = h.of("user_transcript")[0]["text"]
    assert len(heard) == MAX_TRANSCRIPT_CHARS
    assert not h.of("turn_failed")
    assert len(h.llm.requests[0][-1]["content"]) == MAX_TRANSCRIPT_CHARS


# --- livestream -----------------------------------------------------------------------------------
class RecordingOutput:
    name = "recording"

    def __init__(self) -> None:
        self.ticks: list[tuple[int, bool, tuple]] = []

    def write(self, tick_index: int, audio: np.ndarray, frame: np.ndarray) -> None:
        assert len(audio) == 640 and frame.dtype == np.uint8
        self.ticks.append((tick_index, bool(np.abs(audio).max() > 0), frame.shape))

    def status(self) -> dict:
        return {"name": self.name, "state": "connected"}


class HostHarness:
    def __init__(self, *, tts=None, lipsync=None, llm=None, timeouts=TIMEOUTS) -> None:
        from avatar.broadcast.comments import CommentIntake
        from avatar.broadcast.host import BroadcastHost

        self.clock = VirtualClock()
        self.events: list[dict] = []
        self.tts = tts or ToneTTS()
        self.output = RecordingOutput()
        self.host = BroadcastHost(
            tts=self.tts,
            lipsync=lipsync or FlatLipSync(),
            llm=llm or ScriptedLLM([]),
            clock=self.clock,
            intake=CommentIntake(self.clock),
            run_blocking=hanging_run_blocking(inline),
            on_event=self.events.append,
            gap_s=0.2,
            stage_timeouts=timeouts,
        )
        self.host.add_output(self.output)

    def run(self, scenario, end_s: float = 8.0) -> HostHarness:
        async def main():
            await self.host.start()
            await scenario(self)
            await self.clock.advance_to(end_s)
            await self.host.close()
            for _ in range(5):
                await asyncio.sleep(0)
            self.leftover_tasks = [
                t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
            ]

        asyncio.run(main())
        return self

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def assert_frames_kept_flowing(self, end_s: float) -> None:
        """One tick every 40 ms from 0 to end_s, none missing, all the stream's size."""
        expected = int(end_s / 0.04 + 1e-6) + 1
        assert [t[0] for t in self.output.ticks] == list(range(expected))
        assert {t[2] for t in self.output.ticks} == {(8, 8, 3)}


async def two_script_items(h: HostHarness) -> None:
    from avatar.core.text_script import parse_script

    h.host.set_script(
        [(text, tuple(parse_script(text))) for text in ("one two three", "four five")], loop=False
    )


HOST_FAULTS = [
    ("tts", mode) for mode in ("raise", "hang", "nan", "empty", "int16", "zero_rate", "not_speech")
] + [("lip-sync", mode) for mode in ("raise", "raise_prepare", "hang", "wrong_count", "float_frames")]


@pytest.mark.parametrize(("stage", "mode"), HOST_FAULTS, ids=[f"{s}-{m}" for s, m in HOST_FAULTS])
def test_livestream_a_faulty_engine_skips_the_item_and_the_stream_goes_on(stage, mode):
    engine = FaultyTTS(ToneTTS(), mode) if stage == "tts" else FaultyLipSync(FlatLipSync(), mode)
    h = HostHarness(**({"tts": engine} if stage == "tts" else {"lipsync": engine})).run(two_script_items)
    failed = h.of("item_failed")
    assert [(e["item_id"], e["stage"]) for e in failed] == [(1, stage)]
    assert failed[0]["error"].startswith(f"{stage} failed: ")
    if mode == "hang":
        assert failed[0]["at_s"] == pytest.approx(TIMEOUT_S)  # asked at 0 s, given up 1 s later
    finished = h.of("item_finished")
    assert [e["text"] for e in finished] == ["four five"], "the next item is said whole"
    assert sum(1 for t in h.output.ticks if t[1]) == round(2 * 0.2 / 0.04), "and only it is heard"
    h.assert_frames_kept_flowing(8.0)
    assert h.host.status()["state"] == "idle" and h.leftover_tasks == []


def test_livestream_frames_of_another_size_are_letterboxed_not_fatal():
    h = HostHarness(lipsync=FaultyLipSync(FlatLipSync(), "wrong_shape")).run(two_script_items)
    assert not h.of("item_failed")
    assert [e["text"] for e in h.of("item_finished")] == ["one two three", "four five"]
    h.assert_frames_kept_flowing(8.0)


@pytest.mark.parametrize("mode", ["idle_raise", "idle_garbage"])
def test_livestream_a_failing_idle_picture_repeats_the_last_one_and_is_reported_once(mode):
    lipsync = FaultyLipSync(FlatLipSync(), mode, on_calls=tuple(range(1, 51)))  # call 0 primes the pump
    h = HostHarness(lipsync=lipsync).run(two_script_items)
    failed = h.of("picture_failed")
    assert len(failed) == 1 and failed[0]["stage"] == "lip-sync"
    assert h.host.pump.failed_pictures == 50 and h.host.pump.repeated_frames >= 50
    assert [e["text"] for e in h.of("item_finished")] == ["one two three", "four five"]
    h.assert_frames_kept_flowing(8.0)


COMMENT_FAULTS = ["raise", "raise_midway", "hang", "hang_midway", "not_text"]


@pytest.mark.parametrize("mode", COMMENT_FAULTS)
def test_livestream_a_faulty_model_gives_the_fallback_answer_and_the_next_comment_is_answered(mode):
    from avatar.broadcast.answers import FALLBACK_ANSWER

    llm = FaultyLLM(ScriptedLLM([["We open ", "at nine."]]), mode)

    async def comments(h: HostHarness) -> None:
        assert h.host.submit_comment("ann", "Is the tea organic?").accepted
        await h.clock.advance_to(0.5)
        assert h.host.submit_comment("bob", "When do you open?").accepted

    h = HostHarness(llm=llm).run(comments, end_s=14.0)
    failed = h.of("answer_failed")
    assert len(failed) == 1 and failed[0]["stage"] == "llm"
    if mode.startswith("hang"):
        assert "within" in failed[0]["error"]
    answers = [e["answer"] for e in h.of("answer_ready")]
    assert answers == [FALLBACK_ANSWER, "We open at nine."]
    assert [e["kind"] for e in h.of("item_finished")] == ["comment", "comment"]
    assert llm.closed == 1
    h.assert_frames_kept_flowing(14.0)


def test_livestream_a_model_that_never_stops_is_cut_at_the_cap():
    llm = FaultyLLM(ScriptedLLM([]), "endless")

    async def comment(h: HostHarness) -> None:
        assert h.host.submit_comment("ann", "Sing").accepted

    h = HostHarness(llm=llm, timeouts=StageTimeouts(max_reply_chars=40)).run(comment, end_s=10.0)
    assert not h.of("answer_failed")
    assert h.of("answer_ready")[0]["answer"] == "La la la. La la la. La la la. La la la."
    assert [e["kind"] for e in h.of("item_finished")] == ["comment"] and llm.closed == 1
    h.assert_frames_kept_flowing(10.0)


# --- render (the `avatar render` command, in process, on the fakes) --------------------------------
TEN_WORDS = "One two three four five six seven eight nine ten."  # 2 s: 50 frames
FAKE_FFMPEG = {
    "fail_encode": 'echo "fake: encoder crashed" >&2; exit 1',
    "fail_mux": 'case "$*" in *pipe:*) exec cat >/dev/null;; *) echo "fake: mux failed" >&2; exit 1;; esac',
    "hang_encode": 'case "$*" in *pipe:*) exec sleep 600;; *) exit 1;; esac',
    "hang_mux": 'case "$*" in *pipe:*) exec cat >/dev/null;; *) exec sleep 600;; esac',
    "no_output": 'case "$*" in *pipe:*) exec cat >/dev/null;; *) exit 0;; esac',
}


@pytest.fixture
def render_folder(tmp_path):
    import cv2

    folder = tmp_path / "job"
    folder.mkdir()
    cv2.imwrite(str(folder / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    return folder


def render_cli(folder, capsys, text: str = TEN_WORDS) -> tuple[int, str]:
    from avatar.cli import main

    code = main(
        [
            "render",
            "--photo",
            str(folder / "face.png"),
            "--text",
            text,
            "--lang",
            "en",
            "-q",
            "-o",
            str(folder / "out.mp4"),
        ]
    )
    return code, capsys.readouterr().err


def assert_one_line_and_no_leftovers(err: str, folder, start: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), err
    assert "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == ["face.png"], "no partial video, no temp file"


RENDER_FAULTS = [("tts", m) for m in ("raise", "nan", "empty", "int16", "zero_rate", "not_speech")] + [
    ("lip-sync", m) for m in ("raise", "wrong_shape", "float_frames")
]


@pytest.mark.parametrize(("stage", "mode"), RENDER_FAULTS, ids=[f"{s}-{m}" for s, m in RENDER_FAULTS])
def test_render_a_faulty_engine_ends_with_one_line_naming_the_stage(
    stage, mode, render_folder, capsys, monkeypatch
):
    from tests.support.faults import FakeVideoRenderer, FaultyVideoRenderer, install_render_fakes

    if stage == "tts":
        install_render_fakes(monkeypatch.setattr, tts=FaultyTTS(ToneTTS(), mode, on_calls=(1,)))
    else:
        install_render_fakes(monkeypatch.setattr, renderer=FaultyVideoRenderer(FakeVideoRenderer(), mode))
    code, err = render_cli(render_folder, capsys, "First sentence here. " + TEN_WORDS)
    assert code == 4
    assert_one_line_and_no_leftovers(err, render_folder, f"{stage} failed: ")


def test_render_on_the_fakes_makes_a_whole_video(render_folder, capsys, monkeypatch):
    """The control case: the same command with healthy fakes writes the video."""
    from tests.support.faults import install_render_fakes
    from tests.support.media_probe import probe_media

    install_render_fakes(monkeypatch.setattr)
    code, err = render_cli(render_folder, capsys)
    assert code == 0, err
    media = probe_media(render_folder / "out.mp4")
    video, audio = media.of_kind("video"), media.of_kind("audio")
    assert len(video) == 1 and len(audio) == 1 and (video[0].width, video[0].height) == (32, 32)
    assert video[0].frame_count >= 50, "ten words of 0.2 s: at least 2 s of video"
    assert sorted(p.name for p in render_folder.iterdir()) == ["face.png", "out.mp4"]


@pytest.mark.parametrize("mode", list(FAKE_FFMPEG))
def test_render_a_failing_or_hung_encoder_ends_with_one_line_and_no_file(
    mode, render_folder, capsys, monkeypatch, tmp_path
):
    import os

    from avatar.render import ffmpeg_watch
    from tests.support.faults import install_render_fakes

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text("#!/bin/sh\n" + FAKE_FFMPEG[mode] + "\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(ffmpeg_watch, "FFMPEG_STALL_TIMEOUT_S", 0.5)
    install_render_fakes(monkeypatch.setattr)
    code, err = render_cli(render_folder, capsys)
    assert code == 2
    expected = {
        "fail_encode": "ffmpeg failed while encoding the video: fake: encoder crashed",
        "fail_mux": "ffmpeg failed while adding the audio: fake: mux failed",
        "hang_encode": "ffmpeg took no frame for 0.5 s (hung) and was stopped",
        "hang_mux": "ffmpeg hung while adding the audio (no end within ",
        "no_output": "ffmpeg reported success but wrote no video",
    }[mode]
    assert_one_line_and_no_leftovers(err, render_folder, expected)


def test_render_onto_a_full_disk_says_so_and_leaves_nothing(render_folder, tmp_path):
    """A real full disk: a 96 KiB tmpfs in a private mount namespace (`unshare -rm`), the CLI on
    the fakes in it, and the folder listed from inside before the namespace goes away."""
    import shutil
    import subprocess
    import sys

    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode
    ):
        pytest.skip("no unprivileged mount namespaces here (unshare -rm)")
    disk = tmp_path / "disk"
    disk.mkdir()
    words = " ".join(["word"] * 40) + "."  # 8 s: 512 KB of float audio, more than the disk holds
    command = (
        f"mount -t tmpfs -o size=96k tmpfs {disk} && "
        f"{sys.executable} -m tests.support.faults render --photo {render_folder / 'face.png'} --lang en -q "
        f"--text '{words}' -o {disk / 'out.mp4'}; code=$?; echo LEFT:$(ls -A {disk}); exit $code"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: the disk is full: the video could not be written to {disk} "
        "(free some space or choose another output folder; no partial file was left)"
    ]
    assert done.stdout.strip().splitlines()[-1] == "LEFT:"


@pytest.mark.parametrize(("stage", "mode"), [("tts", "raise"), ("tts", "nan"), ("lip-sync", "wrong_shape")])
def test_batch_a_faulty_engine_fails_its_job_only(stage, mode, render_folder, monkeypatch):
    """Three jobs in one process (the engines kept between them): the second meets the fault."""
    from avatar.render.batch import run_batch
    from tests.support.faults import FakeVideoRenderer, FaultyVideoRenderer, install_render_fakes

    if stage == "tts":
        install_render_fakes(monkeypatch.setattr, tts=FaultyTTS(ToneTTS(), mode, on_calls=(1,)))
    else:
        renderer = FaultyVideoRenderer(FakeVideoRenderer(), mode, on_calls=(1,))
        original = renderer.render

        def render(speech, spans):  # faulty only for the second job's (one) window
            faulty = renderer._faulty()
            return original(speech, spans) if faulty else renderer.inner.render(speech, spans)

        renderer.render = render
        renderer.calls = 0
        install_render_fakes(monkeypatch.setattr, renderer=renderer)
    manifest = render_folder / "jobs.csv"
    manifest.write_text("photo,text,lang\n" + "face.png,Hello there.,en\n" * 3, encoding="utf-8")
    out_dir = render_folder / "videos"
    report = run_batch(manifest, out_dir=out_dir, jobs=1, show_progress=False)
    assert [o.line for o in report.succeeded] == [2, 4]
    (failed,) = report.failed
    assert failed.line == 3 and failed.message.startswith(f"{stage} failed: ") and failed.detail in (None, "")
    assert sorted(p.name for p in out_dir.iterdir()) == ["1.mp4", "3.mp4", "batch_report.json"]


@pytest.mark.parametrize("mode", ["idle_raise", "idle_garbage"])
def test_live_a_failing_idle_picture_repeats_the_last_one_and_the_video_goes_on(mode, caplog):
    """The live video track draws idle pictures itself: an exception there would end aiortc's
    sender (the session's video frozen for good). Ticks 3-7 fail; the picture of tick 2 is shown
    again, with consecutive pts, and the failure is logged once."""
    pytest.importorskip("aiortc")
    from avatar.playout.webrtc_tracks import paced_tracks

    lipsync = FaultyLipSync(FlatLipSync(), mode, on_calls=(3, 4, 5, 6, 7))
    numbered = lambda tick_index: np.full((16, 16, 3), 10 * (tick_index % 20), np.uint8)  # noqa: E731
    lipsync.inner.idle_frame = numbered

    async def scenario():
        clock = VirtualClock()
        playout = AVPlayout(AVOutputQueue(), lipsync.idle_frame)
        _, video_track = paced_tracks(playout, clock)

        async def pull():
            return [await video_track.recv() for _ in range(12)]

        frames = await clock.run(pull(), limit_s=2)
        return frames, video_track.failed_pictures

    frames, failed = asyncio.run(scenario())
    assert [f.pts // 3600 for f in frames] == list(range(12))
    grey = [int(np.median(f.to_ndarray()[:16])) for f in frames]  # the Y plane
    assert grey[3:8] == [grey[2]] * 5 and grey[8] != grey[2] and failed == 5
    errors = [r for r in caplog.records if "idle picture failed" in r.getMessage()]
    assert len(errors) == 1
