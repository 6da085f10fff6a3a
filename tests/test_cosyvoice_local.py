"""In-process CosyVoice: the adapter drives a stand-in `cosyvoice` package with upstream's API.

The stand-in (tests/fake_cosyvoice.py) mirrors the names, signatures and the two upstream
behaviours that matter here, in the API shapes the real-code tier does not run (CosyVoice 3, the
`prompt_wav` API, CosyVoice 1); tests/test_cosyvoice_real.py runs the same adapter on CosyVoice
2's real code (the `cosyvoice2-fr-infer` wheel in .venv-cosyvoice).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar.core.errors import EngineUnavailable, InputError
from tests.conftest import SAMPLE_VOICE
from tests.fake_cosyvoice import fake_speech, sentence_ends, write_fake_checkout, write_model_dir, write_voice
from voices.cosyvoice_common import COSYVOICE3_SYSTEM_PROMPT, END_OF_PROMPT, load_reference
from voices.cosyvoice_local import CosyVoiceLocalTTS, import_cosyvoice

TRANSCRIPT = (
    "unless a system is established for the frequent formal review of activities thereunder. in this regard"
)
CV3_PROMPT = f"{COSYVOICE3_SYSTEM_PROMPT}{END_OF_PROMPT}{TRANSCRIPT}"
CV3_HAPPY = "You are a helpful assistant. 请非常开心地说一句话。<|endofprompt|>"


def _drop_cosyvoice_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("cosyvoice", "matcha"):
            del sys.modules[name]


@pytest.fixture
def isolated_imports(monkeypatch):
    """Each test imports its own checkout; sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("COSYVOICE_HOME", raising=False)
    _drop_cosyvoice_modules()
    importlib.invalidate_caches()
    yield
    _drop_cosyvoice_modules()


def _engine(tmp_path: Path, version: int = 3, prompt_api: str = "prompt_wav", **kwargs) -> CosyVoiceLocalTTS:
    checkout = tmp_path / f"CosyVoice-{prompt_api}"
    if not checkout.exists():
        write_fake_checkout(checkout, prompt_api)
    model_dir = tmp_path / f"model-v{version}"
    if not model_dir.exists():
        write_model_dir(model_dir, version)
    kwargs.setdefault("reference_wav", SAMPLE_VOICE)
    kwargs.setdefault("reference_text", TRANSCRIPT)
    kwargs.setdefault("cache_dir", tmp_path / "cache")
    return CosyVoiceLocalTTS(checkout, model_dir, **kwargs)


def _expected_pcm(segments: list[str], sample_rate_hz: int = 24000) -> np.ndarray:
    return np.concatenate([fake_speech(segment, sample_rate_hz) for segment in segments])


def test_stream_yields_each_sentences_chunks_in_order_with_its_text(tmp_path, isolated_imports):
    engine = _engine(tmp_path).load()
    chunks = list(engine.stream("你好，今天天气很好，我们出去走走吧。再见！"))
    first, second = "你好，今天天气很好，我们出去走走吧。", "再见！"
    texts = [chunk.speech.text for chunk in chunks]
    assert texts == [first] * texts.count(first) + [second] * texts.count(second)
    assert texts.count(first) > 2  # upstream streams sub-sentence pieces
    assert [chunk.is_last for chunk in chunks] == sentence_ends(texts)
    assert {chunk.speech.audio.sample_rate_hz for chunk in chunks} == {24000}
    assert {chunk.speech.language for chunk in chunks} == {"zh"}
    pcm = np.concatenate([chunk.speech.audio.pcm for chunk in chunks])
    # the stand-in splits the first sentence at its commas, as upstream's text frontend does
    np.testing.assert_allclose(
        pcm, _expected_pcm(["你好，", "今天天气很好，", "我们出去走走吧。", second]), atol=1e-6
    )
    calls = engine.model.tts_calls
    assert {(c["kind"], c["stream"], c["prompt_text"], c["llm_prompt"]) for c in calls} == {
        ("zero_shot", True, CV3_PROMPT, True)
    }
    assert engine.model.frontend.extractions == [CV3_PROMPT]  # once, at load, not per sentence


def test_synthesize_is_one_speech_from_non_streaming_calls(tmp_path, isolated_imports):
    engine = _engine(tmp_path, language="en-US", speed=1.2).load()
    speech = engine.synthesize("Hello there.  How are you?")
    assert speech.text == "Hello there. How are you?"
    assert speech.language == "en"
    np.testing.assert_allclose(speech.audio.pcm, _expected_pcm(["Hello there.", "How are you?"]), atol=1e-6)
    assert {(c["stream"], c["speed"]) for c in engine.model.tts_calls} == {(False, 1.2)}
    # CosyVoice 3's constructor has no load_jit: only accepted arguments are passed
    assert engine.model.init_kwargs == {"load_trt": False, "load_vllm": False, "fp16": False}
    assert engine.model.model_dir == str((tmp_path / "model-v3").resolve())


@pytest.mark.timeout(30)
def test_an_abandoned_stream_does_not_block_the_next_call(tmp_path, isolated_imports):
    engine = _engine(tmp_path).load()
    stream = engine.stream("你好，今天天气很好。")
    assert next(stream).is_last is False
    assert engine.synthesize("再见。").audio.duration_s > 0  # same thread, stream still open
    stream.close()


def test_voice_features_are_computed_once_and_persisted_in_the_model_dir(tmp_path, isolated_imports):
    import torch

    first = _engine(tmp_path).load()
    voice_id = first.voice_id
    assert first.model.added == [voice_id]
    assert voice_id in torch.load(tmp_path / "model-v3" / "spk2info.pt", weights_only=True)
    prompt = first.model.frontend.prompts[0]
    assert prompt[:2] == ("file", 24000) and prompt[2] / 24000 == pytest.approx(7.658, abs=0.01)

    second = _engine(tmp_path).load()
    assert second.model is not first.model
    assert second.model.added == [] and second.model.frontend.extractions == []
    assert second.synthesize("Again.").audio.duration_s > 0


def test_read_only_model_dir_keeps_features_in_the_cache(tmp_path, isolated_imports, monkeypatch, caplog):
    module = import_cosyvoice(write_fake_checkout(tmp_path / "CosyVoice-prompt_wav"))

    def unwritable(self):  # what torch.save raises for a folder it cannot write
        raise RuntimeError(f"File {self.model_dir}/spk2info.pt cannot be opened.")

    monkeypatch.setattr(module.CosyVoice, "save_spkinfo", unwritable)
    first = _engine(tmp_path).load()
    assert "cannot write" in caplog.text
    assert not (tmp_path / "model-v3" / "spk2info.pt").exists()
    assert [p.name for p in (tmp_path / "cache" / "speakers").rglob("*.pt")] == [f"{first.voice_id}.pt"]

    second = _engine(tmp_path).load()
    assert second.model.added == [] and second.model.frontend.extractions == []
    assert first.voice_id in second.model.frontend.spk2info
    assert second.synthesize("Still my voice.").audio.duration_s > 0


def test_emotion_uses_instruct2_with_features_computed_once_per_emotion(tmp_path, isolated_imports):
    import torch

    engine = _engine(tmp_path).load()
    # three segments (upstream splits at the comma): upstream damages a reused entry each time
    happy = engine.synthesize("真开心，太好了！今天真好。", emotion="happy")
    engine.synthesize("普通的一句话。")
    calls = engine.model.tts_calls
    assert [(c["kind"], c["text"], c["prompt_text"], c["llm_prompt"]) for c in calls] == [
        ("instruct2", "真开心，", CV3_HAPPY, False),
        ("instruct2", "太好了！", CV3_HAPPY, False),
        ("instruct2", "今天真好。", CV3_HAPPY, False),
        ("zero_shot", "普通的一句话。", CV3_PROMPT, True),
    ]
    np.testing.assert_allclose(
        happy.audio.pcm, _expected_pcm(["真开心，", "太好了！", "今天真好。"]), atol=1e-6
    )
    assert engine.model.frontend.extractions == [CV3_PROMPT, CV3_HAPPY]
    saved = torch.load(tmp_path / "model-v3" / "spk2info.pt", weights_only=True)
    assert "llm_prompt_speech_token" in saved[f"{engine.voice_id}-happy"]  # saved undamaged

    again = _engine(tmp_path).load()
    again.synthesize("再来一次。", emotion="happy")
    assert again.model.frontend.extractions == []
    assert again.model.tts_calls[-1]["prompt_text"] == CV3_HAPPY


@pytest.mark.parametrize(("version", "emotion", "rate"), [(3, "surprised", 24000), (1, "happy", 22050)])
def test_emotions_without_an_instruction_are_spoken_neutrally(
    tmp_path, isolated_imports, version, emotion, rate
):
    engine = _engine(tmp_path, version=version).load()
    speech = engine.synthesize("Hi.", emotion=emotion)
    assert speech.audio.sample_rate_hz == rate
    assert [c["kind"] for c in engine.model.tts_calls] == ["zero_shot"]


def test_older_api_gets_a_16k_tensor_and_cosyvoice2_instructions(tmp_path, isolated_imports):
    engine = _engine(tmp_path, version=2, prompt_api="prompt_speech_16k").load()
    kind, rate, samples = engine.model.frontend.prompts[0]
    assert (kind, rate) == ("tensor", 16000) and samples / 16000 == pytest.approx(7.658, abs=0.01)
    engine.synthesize("Hello. Goodbye.", emotion="happy")
    instruction = "用开心的语气说这句话<|endofprompt|>"
    assert [(c["kind"], c["prompt_text"]) for c in engine.model.tts_calls] == [("instruct2", instruction)] * 2
    # that instruct2 has no speaker id, so upstream re-encodes the prompt on every call
    assert engine.model.frontend.extractions == [TRANSCRIPT, instruction, instruction]


def test_checkout_from_cosyvoice_home(tmp_path, isolated_imports, monkeypatch):
    checkout = write_fake_checkout(tmp_path / "CosyVoice-prompt_wav")
    monkeypatch.setenv("COSYVOICE_HOME", str(checkout))
    model_dir = write_model_dir(tmp_path / "model-v2", 2)
    engine = CosyVoiceLocalTTS(
        None, model_dir, reference_wav=SAMPLE_VOICE, reference_text=TRANSCRIPT, cache_dir=tmp_path / "cache"
    ).load()
    assert type(engine.model).__name__ == "CosyVoice2"
    assert str(checkout / "third_party" / "Matcha-TTS") in sys.path


@pytest.mark.parametrize("where", ["empty folder", "nothing importable"])
def test_missing_checkout_is_a_one_line_error_with_the_fix(tmp_path, isolated_imports, where):
    checkout = tmp_path / "not-a-checkout" if where == "empty folder" else None
    if checkout is not None:
        checkout.mkdir()
    model_dir = write_model_dir(tmp_path / "model", 3)
    engine = CosyVoiceLocalTTS(checkout, model_dir, reference_wav=SAMPLE_VOICE, reference_text=TRANSCRIPT)
    with pytest.raises(EngineUnavailable) as caught:
        engine.load()
    assert "git clone --recursive https://github.com/FunAudioLLM/CosyVoice" in caught.value.hint
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("no folder", "model folder not found"),
        ("no yaml", "cosyvoice3.yaml or cosyvoice2.yaml or cosyvoice.yaml"),
        ("no llm.pt", "missing llm.pt"),
    ],
)
def test_model_dir_problems_fail_before_upstream_could_download(
    tmp_path, isolated_imports, problem, expected
):
    model_dir = tmp_path / "model"
    if problem != "no folder":
        write_model_dir(model_dir, 3)
        (model_dir / ("cosyvoice3.yaml" if problem == "no yaml" else "llm.pt")).unlink()
    engine = _engine(tmp_path)
    engine.model_dir = model_dir.resolve()
    with pytest.raises(EngineUnavailable) as caught:
        engine.load()  # the stand-in's snapshot_download raises AssertionError if it is reached
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "silent", "text", "expected"),
    [
        (2.0, False, TRANSCRIPT, "is 2.0 s; CosyVoice needs 3-30 s"),
        (31.0, False, TRANSCRIPT, "accepts at most 30 s"),
        (4.0, True, TRANSCRIPT, "contains only silence"),
        (4.0, False, "  ", "needs the transcript"),
    ],
)
def test_reference_sample_problems_are_one_line_input_errors(tmp_path, seconds, silent, text, expected):
    path = write_voice(tmp_path / "ref.wav", seconds, silent=silent)
    with pytest.raises(InputError) as caught:
        load_reference(path, text)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_reference_that_is_mostly_silence_is_refused(tmp_path):
    import soundfile

    pcm = np.zeros(4 * 16000, dtype=np.float32)
    pcm[:8000] = 0.3 * np.sin(np.arange(8000) * 0.06)  # 0.5 s of sound in 4 s
    soundfile.write(str(tmp_path / "quiet.wav"), pcm, 16000)
    with pytest.raises(InputError, match=r"only 0\.5 s of sound"):
        load_reference(tmp_path / "quiet.wav", "hello")


def test_voice_id_follows_the_sample_and_its_transcript():
    first = load_reference(SAMPLE_VOICE, TRANSCRIPT)
    assert load_reference(SAMPLE_VOICE, f"  {TRANSCRIPT} ").voice_id == first.voice_id
    assert load_reference(SAMPLE_VOICE, TRANSCRIPT + " more").voice_id != first.voice_id
    assert first.duration_s == pytest.approx(7.658, abs=0.01)
