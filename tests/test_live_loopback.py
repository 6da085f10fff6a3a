"""Loopback tests of the live server with two real aiortc peers in one process.

The server (`LiveServer` on aiohttp, real engines, stub LLM) and the headless client
(`tests.support.live_probe_client.LiveProbe`) talk over 127.0.0.1 only: aioice's host address lookup is
patched for the duration of each test. Each test runs its own event loop under a hard timeout,
so a hung connection fails the test instead of the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
import pytest

from tests.conftest import SAMPLE_PORTRAIT, eval_file

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")

STUB_REPLY_SPOKEN = "Thank you for asking! I heard you loud and clear, and I am happy to help."
QUESTION_TEXT = "What are your opening hours?"
TEST_TIMEOUT_S = 45.0


@pytest.fixture(scope="module")
def engines():
    from avatar.engines.live_set import LiveConfig, LiveEngines

    loaded = LiveEngines(LiveConfig(SAMPLE_PORTRAIT, size_px=256, llm="stub")).load()
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def question_16k(engines) -> np.ndarray:
    """A short, clean spoken question from the avatar's own TTS, padded with silence."""
    from avatar.core.audio_io import resample

    speech = engines.synthesize(QUESTION_TEXT)
    pcm = resample(speech.audio.pcm.astype(np.float32), speech.audio.sample_rate_hz, 16000)
    pad = np.zeros(8000, np.float32)
    return np.concatenate([pad, pcm.astype(np.float32), pad])


@contextlib.asynccontextmanager
async def running_server(engines):
    """LiveServer on a free 127.0.0.1 port; yields (server, url) and closes every session after."""
    from aiohttp import web

    from avatar.live.server import LiveServer

    server = LiveServer(engines)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await asyncio.wait_for(runner.cleanup(), 20.0)


@pytest.fixture(scope="module")
def event_loop_for_engines():
    """One loop for the module: the shared engines' asyncio locks bind to the loop that used them."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def run_loopback(event_loop_for_engines):
    from tests.support.loopback_ice import loopback_only

    def run(scenario, timeout_s: float = TEST_TIMEOUT_S):
        with loopback_only():
            return event_loop_for_engines.run_until_complete(asyncio.wait_for(scenario(), timeout_s))

    return run


def assistant_messages(history: list[dict]) -> list[str]:
    return [m["content"] for m in history if m["role"] == "assistant"]


def test_spoken_question_gets_a_spoken_lip_synced_answer(engines, run_loopback):
    from avatar.core.audio_io import load_audio
    from tests.support.live_probe_client import LiveProbe

    jfk = load_audio(eval_file("speech/en_male_jfk.flac")).pcm.astype(np.float32)
    pad = np.zeros(8000, np.float32)
    question = np.concatenate([pad, jfk, pad])

    async def scenario():
        async with running_server(engines) as (_server, url), LiveProbe(url) as probe:
            result = await probe.measure_turn(question, 0, reply_timeout_s=30.0)
            rendered = [e for _, e in probe.events if e["type"] == "turn_rendered"]
            checks = [e for _, e in probe.events if e["type"] == "turn_end_check"]
            return result, rendered, list(probe.video), checks

    result, rendered, video, checks = run_loopback(scenario)
    assert "country" in result.transcript.lower(), result
    if engines.turn_model is not None:  # the default where Smart Turn is installed (`make test`)
        assert checks and all(0.0 <= e["probability"] <= 1.0 and e["latency_ms"] > 0 for e in checks)
        assert {e["verdict"] for e in checks} <= {"complete", "unsure", "incomplete"}
    assert result.reply_started, result.notes
    assert rendered and rendered[-1]["text"] == STUB_REPLY_SPOKEN
    assert video and max(video[-1].grey.shape) == 128  # 256 px frames decoded, downsampled by 2
    assert result.speech_end_to_face_change_ms is not None, result.notes  # the face moved
    assert result.speech_end_to_frame_ms is not None, result.notes
    assert result.speech_end_to_audio_ms < 8000, result
    # Audio and video of the reply onset leave the sender on one clock, within one video frame
    # plus the detection's 20 ms audio quantisation.
    assert result.av_offset_pts_ms is not None and abs(result.av_offset_pts_ms) <= 80, repr(result)


def test_barge_in_silences_the_avatar_and_truncates_history(engines, question_16k, run_loopback):
    from tests.support.live_probe_client import LiveProbe

    async def scenario():
        async with running_server(engines) as (server, url), LiveProbe(url) as probe:
            result = await probe.measure_barge_in(question_16k, question_16k, 0, talk_before_s=1.0)
            history = [dict(m) for m in server.sessions[probe.session_id].session.history]
            return result, history

    result, history = run_loopback(scenario)
    assert result.reply_started, result.notes
    assert result.barge_in_to_silence_ms is not None, result.notes
    assert result.barge_in_to_silence_ms < 1500, result
    first_reply = assistant_messages(history)[0]
    assert first_reply and first_reply != STUB_REPLY_SPOKEN
    assert STUB_REPLY_SPOKEN.startswith(first_reply), (first_reply, history)
    assert result.heard_text == first_reply


def test_data_channel_interrupt_silences_the_avatar(engines, question_16k, run_loopback):
    from tests.support.live_probe_client import LiveProbe

    async def scenario():
        async with running_server(engines) as (server, url), LiveProbe(url) as probe:
            result = await probe.measure_button_interrupt(question_16k, 0, talk_before_s=1.0)
            history = [dict(m) for m in server.sessions[probe.session_id].session.history]
            return result, history

    result, history = run_loopback(scenario)
    assert result.barge_in_to_silence_ms is not None and result.barge_in_to_silence_ms < 1000, result
    reply = assistant_messages(history)[0]
    assert reply and STUB_REPLY_SPOKEN.startswith(reply) and reply != STUB_REPLY_SPOKEN


def test_disconnect_mid_stream_ends_only_that_session(engines, question_16k, caplog, run_loopback):
    from tests.support.live_probe_analysis import first_loud_audio
    from tests.support.live_probe_client import LiveProbe

    caplog.set_level(logging.INFO, logger="avatar.live")

    async def scenario():
        async with running_server(engines) as (server, url), LiveProbe(url, client_index=1) as keeper:
            leaver = LiveProbe(url, client_index=2)
            await leaver.connect()
            leaving = server.sessions[leaver.session_id]
            try:
                utterance = await leaver.play(question_16k)
                await leaver._wait_for(
                    lambda: first_loud_audio(leaver.audio, utterance.end_s) is not None, 20.0, "reply"
                )
            finally:
                await leaver.close()  # mid-reply
            for _ in range(200):
                if leaver.session_id not in server.sessions:
                    break
                await asyncio.sleep(0.05)
            gone = leaver.session_id not in server.sessions
            result = await keeper.measure_turn(question_16k, 0)
            return gone, leaving, result, dict(server.sessions)

    # Two conversations one after the other in one process: allow for a loaded CI machine.
    gone, leaving, result, remaining = run_loopback(scenario, timeout_s=2 * TEST_TIMEOUT_S)
    assert gone, "the server kept the session of a client that disconnected"
    assert leaving.closed and all(task.done() for task in leaving.tasks)
    assert list(remaining) != [] and result.reply_started, result.notes
    assert "opening hours" in result.transcript.lower()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_health_says_which_engine_replies(engines, run_loopback):
    """/health names the reply engine, as the start-up line does: here the stub, asked for by name."""
    from aiohttp import ClientSession

    async def scenario():
        async with (
            running_server(engines) as (_server, url),
            ClientSession() as http,
            http.get(f"{url}/health") as response,
        ):
            return await response.json()

    health = run_loopback(scenario)
    assert health["llm"] == "stub" and health["reply_engine"].startswith("stub: ")
    assert "benchmarks" in health["reply_engine"]
    expected_rule = "silence: " if engines.turn_model is None else "smart-turn v3.2: asked after 150 ms"
    assert health["turn_rule"].startswith(expected_rule), health["turn_rule"]
