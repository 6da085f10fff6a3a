"""CosyVoice's FastAPI server protocol against a local stand-in server (127.0.0.1 only)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from avatar.core.audio_io import load_audio
from avatar.core.errors import EngineUnavailable
from avatar.core.system_tools import free_port
from tests.conftest import SAMPLE_VOICE
from tests.fake_cosyvoice import FakeCosyVoiceServer, fake_pcm16, sentence_ends
from voices.cosyvoice_http import CosyVoiceHTTPTTS

TRANSCRIPT = (
    "unless a system is established for the frequent formal review of activities thereunder. in this regard"
)


def _engine(url: str, **kwargs) -> CosyVoiceHTTPTTS:
    kwargs.setdefault("language", "en")
    return CosyVoiceHTTPTTS(url, reference_wav=SAMPLE_VOICE, reference_text=TRANSCRIPT, **kwargs)


def _decode(pcm16: bytes) -> np.ndarray:
    return np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0


def test_zero_shot_streams_each_sentence_in_order_with_the_prompt_uploaded():
    import soundfile

    sentences = ["Hello there.", "How are you today?"]
    with FakeCosyVoiceServer(piece_bytes=1001) as server:
        engine = _engine(server.url).load()
        chunks = list(engine.stream(" ".join(sentences)))
        engine.close()
    assert [(r["method"], r["path"]) for r in server.requests] == [("GET", "/inference_zero_shot")] * 2
    assert [r["fields"] for r in server.requests] == [
        {"tts_text": s, "prompt_text": TRANSCRIPT} for s in sentences
    ]
    # the prompt arrives as a 24 kHz WAV of the whole reference sample
    audio, rate = soundfile.read(io.BytesIO(server.requests[0]["files"]["prompt_wav"]), dtype="float32")
    reference = load_audio(SAMPLE_VOICE, 24000).pcm
    assert rate == 24000 and len(audio) == len(reference)
    assert np.corrcoef(audio, reference)[0, 1] > 0.999
    # chunks: several per sentence, in order, each with its sentence, the sentence's last is_last
    texts = [chunk.speech.text for chunk in chunks]
    assert texts == [sentences[0]] * texts.count(sentences[0]) + [sentences[1]] * texts.count(sentences[1])
    assert min(texts.count(s) for s in sentences) >= 2
    assert [chunk.is_last for chunk in chunks] == sentence_ends(texts)
    assert {chunk.speech.audio.sample_rate_hz for chunk in chunks} == {24000}
    pcm = np.concatenate([chunk.speech.audio.pcm for chunk in chunks])
    expected = np.concatenate([_decode(fake_pcm16(s, 24000)) for s in sentences])
    np.testing.assert_array_equal(pcm, expected)  # odd-sized pieces lose no sample


def test_synthesize_with_emotion_uses_instruct2_and_cosyvoice3_prompts():
    with FakeCosyVoiceServer() as server:
        engine = _engine(server.url, model_version=3, http_method="POST").load()
        happy = engine.synthesize("Great news!", emotion="happy")
        plain = engine.synthesize("Back to normal.")
        engine.close()
    first, second = server.requests
    assert (first["method"], first["path"]) == ("POST", "/inference_instruct2")
    assert first["fields"] == {
        "tts_text": "Great news!",
        "instruct_text": "You are a helpful assistant. 请非常开心地说一句话。<|endofprompt|>",
    }
    assert "prompt_wav" in first["files"]
    assert second["fields"]["prompt_text"] == f"You are a helpful assistant.<|endofprompt|>{TRANSCRIPT}"
    assert happy.text == "Great news!" and happy.audio.sample_rate_hz == 24000
    assert len(happy.audio.pcm) == len(fake_pcm16("Great news!", 24000)) // 2
    assert len(plain.audio.pcm) == len(fake_pcm16("Back to normal.", 24000)) // 2


def test_cosyvoice1_server_defaults_to_22050_hz():
    with FakeCosyVoiceServer(sample_rate_hz=22050) as server:
        engine = _engine(server.url, model_version=1).load()
        speech = engine.synthesize("Hello.", emotion="happy")  # CosyVoice 1 has no instruct2: ignored
        engine.close()
    assert speech.audio.sample_rate_hz == 22050
    assert speech.audio.duration_s == pytest.approx(len(fake_pcm16("Hello.", 22050)) / 2 / 22050)
    assert [r["path"] for r in server.requests] == ["/inference_zero_shot"]


def test_unreachable_server_is_a_one_line_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EngineUnavailable) as caught:
        _engine(url, connect_timeout_s=2.0).load()
    message = str(caught.value)
    assert message.startswith(f"cannot reach CosyVoice server at {url}")
    assert "--cosyvoice-url" in message and "runtime/python/fastapi/server.py" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("server_options", "engine_options", "emotion", "expected"),
    [
        ({"status": 500}, {}, None, "failed on /inference_zero_shot (HTTP 500: Internal Server Error"),
        ({"endpoints": ("/inference_zero_shot",)}, {}, "happy", "has no /inference_instruct2 (HTTP 404)"),
        ({"methods": ("POST",)}, {}, None, "refuses GET on /inference_zero_shot (HTTP 405)"),
        ({"stall_s": 1.0}, {"read_timeout_s": 0.3}, None, "did not answer within 0.3 s"),
    ],
)
def test_server_failures_are_one_line_errors(server_options, engine_options, emotion, expected):
    with FakeCosyVoiceServer(**server_options) as server:
        engine = _engine(server.url, **engine_options).load()
        with pytest.raises(EngineUnavailable) as caught:
            engine.synthesize("Hello.", emotion=emotion)
        engine.close()
    assert expected in str(caught.value) and "\n" not in str(caught.value)
