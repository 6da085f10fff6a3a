"""DashScope's CosyVoice WebSocket protocol against a local stand-in service (127.0.0.1 only)."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.core.errors import EngineUnavailable, InputError
from tests.fake_cosyvoice import fake_pcm16, sentence_ends
from tests.support.fake_dashscope import FakeDashScopeServer, FakeEnrollServer
from voices.cosyvoice_dashscope import DashScopeCosyVoiceTTS, enroll_voice

VOICE = "cosyvoice-v2-avatar-0123456789"


def _engine(url: str, **kwargs) -> DashScopeCosyVoiceTTS:
    kwargs.setdefault("api_key", "sk-test")
    return DashScopeCosyVoiceTTS(VOICE, url=url, **kwargs)


def test_task_protocol_and_chunks_follow_the_servers_sentences(caplog):
    with FakeDashScopeServer(frames_per_sentence=3) as server:
        engine = _engine(server.url, sample_rate_hz=22050, language="zh").load()
        chunks = list(engine.stream("你好，欢迎光临。今天想看点什么？", emotion="happy"))
    actions = [m["header"]["action"] for m in server.messages]
    assert actions == ["run-task", "continue-task", "finish-task"]
    assert len({m["header"]["task_id"] for m in server.messages}) == 1
    assert {m["header"]["streaming"] for m in server.messages} == {"duplex"}
    run = server.messages[0]["payload"]
    assert {k: run[k] for k in ("task_group", "task", "function", "model", "input")} == {
        "task_group": "audio",
        "task": "tts",
        "function": "SpeechSynthesizer",
        "model": "cosyvoice-v2",
        "input": {},
    }
    assert run["parameters"] == {
        "text_type": "PlainText",
        "voice": VOICE,
        "format": "pcm",
        "sample_rate": 22050,
        "volume": 50,
        "rate": 1.0,
        "pitch": 1.0,
    }
    assert server.messages[1]["payload"] == {"input": {"text": "你好，欢迎光临。今天想看点什么？"}}
    assert set(server.authorizations) == {"bearer sk-test"}  # load()'s handshake and the task's
    texts = [chunk.speech.text for chunk in chunks]
    first, second = server.sentences
    assert texts == [first] * texts.count(first) + [second] * texts.count(second)
    assert texts.count(first) >= 2
    assert [chunk.is_last for chunk in chunks] == sentence_ends(texts)
    assert {chunk.speech.audio.sample_rate_hz for chunk in chunks} == {22050}
    pcm = np.concatenate([chunk.speech.audio.pcm for chunk in chunks])
    expected = b"".join(fake_pcm16(sentence, 22050) for sentence in server.sentences)
    np.testing.assert_array_equal(pcm, np.frombuffer(expected, dtype="<i2") / np.float32(32768.0))
    assert "no audio" not in caplog.text


def test_synthesize_returns_the_whole_text_as_one_speech():
    with FakeDashScopeServer() as server:
        speech = _engine(server.url, language="en").synthesize("Hello there. Bye now!")
    assert speech.text == "Hello there. Bye now!" and speech.language == "en"
    assert speech.audio.sample_rate_hz == 24000
    assert len(speech.audio.pcm) == sum(len(fake_pcm16(s, 24000)) // 2 for s in server.sentences)


def test_task_failed_is_a_one_line_error_with_the_servers_message():
    failure = ("InvalidParameter", "Voice 'cosyvoice-v2-avatar-0123456789' does not exist\nfor this model.")
    with FakeDashScopeServer(fail_with=failure) as server:
        engine = _engine(server.url).load()
        with pytest.raises(EngineUnavailable) as caught:
            engine.synthesize("你好。")
    message = str(caught.value)
    assert message.startswith("DashScope CosyVoice task failed: InvalidParameter: Voice 'cosyvoice-v2")
    assert "does not exist for this model." in message and "\n" not in message


def test_bad_key_is_refused_at_load_with_a_one_line_error(monkeypatch):
    with FakeDashScopeServer(api_key="sk-right") as server, pytest.raises(EngineUnavailable) as caught:
        _engine(server.url, api_key="sk-wrong").load()
    assert str(caught.value).startswith("DashScope rejected the API key (HTTP 401)")
    assert "DASHSCOPE_API_KEY" in caught.value.hint and "\n" not in str(caught.value)


def test_key_comes_from_the_environment_and_its_absence_is_explained(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(EngineUnavailable, match="needs an API key"):
        DashScopeCosyVoiceTTS(VOICE, url="ws://127.0.0.1:1/").load()
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env")
    with FakeDashScopeServer(api_key="sk-env") as server:
        DashScopeCosyVoiceTTS(VOICE, url=server.url).load()
    assert server.authorizations == ["bearer sk-env"]


def test_enroll_voice_posts_the_public_url_and_returns_the_voice_id():
    with FakeEnrollServer() as server:
        voice = enroll_voice("https://example.com/me.wav", api_key="sk-test", prefix="alice", url=server.url)
        with pytest.raises(EngineUnavailable, match=r"rejected the API key \(HTTP 401\)"):
            enroll_voice("https://example.com/me.wav", api_key="sk-wrong", url=server.url)
    assert voice == "cosyvoice-v2-alice-0123456789"
    assert server.bodies[0] == {
        "model": "voice-enrollment",
        "input": {
            "action": "create_voice",
            "target_model": "cosyvoice-v2",
            "prefix": "alice",
            "url": "https://example.com/me.wav",
        },
    }
    with pytest.raises(InputError, match="public http"):
        enroll_voice("/home/me/voice.wav", api_key="sk-test")


def test_long_text_is_sent_in_several_continue_tasks():
    sentences = [f"This is sentence number {i} of a long reply." for i in range(50)]
    with FakeDashScopeServer() as server:
        chunks = list(_engine(server.url, language="en").stream(" ".join(sentences)))
    texts = [
        m["payload"]["input"]["text"] for m in server.messages if m["header"]["action"] == "continue-task"
    ]
    assert len(texts) > 1 and max(map(len, texts)) <= 2000
    assert " ".join(texts) == " ".join(sentences)
    assert sum(chunk.is_last for chunk in chunks) == len(sentences) == len(server.sentences)


def test_unreachable_service_is_a_one_line_error():
    from avatar.core.system_tools import free_port

    url = f"ws://127.0.0.1:{free_port()}/api-ws/v1/inference"
    with pytest.raises(EngineUnavailable) as caught:
        _engine(url, open_timeout_s=2.0).load()
    assert str(caught.value).startswith(f"cannot reach DashScope at {url}") and "\n" not in str(caught.value)
