"""In-process CosyVoice: the adapter drives a stand-in `cosyvoice` package with upstream's API.

The stand-in (tests/fake_cosyvoice.py) mirrors the names, signatures and the two upstream
behaviours that matter here; `test_real_checkout_with_tiny_random_model` runs the same adapter
against a real checkout when COSYVOICE_CHECKOUT points at one.
"""

from __future__ import annotations

import importlib
import os
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


# -- opt-in: the real CosyVoice code ------------------------------------------------------------

_SHRINK = (
    (r"(?m)^(llm_input_size|llm_output_size): \d+", r"\1: 64"),
    (r"(?m)^(\s+)num_blocks: \d+", r"\1num_blocks: 1"),
    (r"(?m)^(\s+)linear_units: \d+", r"\1linear_units: 256"),
    (r"(?m)^(\s+)n_blocks: \d+", r"\1n_blocks: 1"),
    (r"(?m)^(\s+)num_mid_blocks: \d+", r"\1num_mid_blocks: 1"),
    (r"(?m)^(\s+)base_channels: \d+", r"\1base_channels: 64"),
    (r"(?m)^(\s+)cond_channels: \d+", r"\1cond_channels: 64"),
)


def _tiny_yaml(text: str) -> str:
    import re

    start, end = text.find("# gan related module"), text.find("# processor functions")
    if 0 <= start < end:  # the GAN discriminators are for training only
        text = text[:start] + text[end:]
    for pattern, replacement in _SHRINK:
        text = re.sub(pattern, replacement, text)
    return text


def _write_tiny_qwen(folder: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [TRANSCRIPT, "hello there how are you today", "你好 今天 天气 很好"],
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<|endoftext|>"],
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    tokenizer.save_pretrained(str(folder))
    config = Qwen2Config(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    Qwen2ForCausalLM(config).save_pretrained(str(folder))


def _write_tiny_onnx(model_dir: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((80, 192)).astype(np.float32) * 0.1
    campplus = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["fbank"], ["mean"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["embedding"]),
        ],
        "campplus",
        [helper.make_tensor_value_info("fbank", TensorProto.FLOAT, [1, None, 80])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 192])],
        [numpy_helper.from_array(weight, "w")],
    )
    constants = {
        "starts": [0],
        "ends": [2**62],
        "axes": [2],
        "steps": [4],  # whisper mel at 100 Hz -> tokens at 25 Hz
        "modulus": [6561],
    }
    tokenizer = helper.make_graph(
        [
            helper.make_node("Slice", ["feats", "starts", "ends", "axes", "steps"], ["every4"]),
            helper.make_node("ReduceMean", ["every4"], ["level"], axes=[1], keepdims=0),
            helper.make_node("Abs", ["level"], ["magnitude"]),
            helper.make_node("Mul", ["magnitude", "scale"], ["scaled"]),
            helper.make_node("Cast", ["scaled"], ["whole"], to=TensorProto.INT64),
            helper.make_node("Mod", ["whole", "modulus"], ["tokens"]),
        ],
        "speech_tokenizer",
        [
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, None]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, None])],
        [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in constants.items()]
        + [numpy_helper.from_array(np.array([1000.0], dtype=np.float32), "scale")],
    )
    for graph, name in ((campplus, "campplus.onnx"), (tokenizer, "speech_tokenizer_v2.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, str(model_dir / name))


@pytest.mark.skipif(
    not os.environ.get("COSYVOICE_CHECKOUT"), reason="set COSYVOICE_CHECKOUT to a CosyVoice checkout"
)
def test_real_checkout_with_tiny_random_model(tmp_path, isolated_imports, monkeypatch):
    """The adapter against real CosyVoice code and a tiny random-weight CosyVoice 2 (opt-in).

    It cannot run in CI (CosyVoice is not on PyPI). With COSYVOICE_CHECKOUT set it:
    1. takes the checkout's own examples/libritts/cosyvoice2/conf/cosyvoice2.yaml, drops the GAN
       training section and shrinks depths and widths (same classes, a few MB of weights);
    2. makes CosyVoice-BlankEN a 1-layer, 64-wide Qwen2 with a byte-level BPE tokenizer trained on
       three sentences;
    3. instantiates llm/flow/hift from that yaml and saves their random state_dicts as llm.pt,
       flow.pt and hift.pt;
    4. writes campplus.onnx (mean fbank -> 192-d vector) and speech_tokenizer_v2.onnx (every 4th
       mel frame -> a token id below 6561) with the input/output shapes the frontend feeds them;
    5. loads that folder through CosyVoiceLocalTTS and checks the contract: 24 kHz finite audio,
       one is_last per sentence, the voice persisted in spk2info.pt and reused, not recomputed,
       by a second instance. The audio is noise (random weights): intelligibility is out of scope.
    Needs the checkout's requirements (torch, torchaudio, hyperpyyaml, transformers, onnx,
    onnxruntime, openai-whisper, ...). Its text normaliser (wetext or WeTextProcessing) may fetch
    or build its grammars on first use.
    """
    import torch

    checkout = Path(os.environ["COSYVOICE_CHECKOUT"]).expanduser().resolve()
    source_yaml = checkout / "examples" / "libritts" / "cosyvoice2" / "conf" / "cosyvoice2.yaml"
    if not source_yaml.is_file():
        pytest.skip(f"{source_yaml} not found")
    import_cosyvoice(checkout)
    from hyperpyyaml import load_hyperpyyaml

    model_dir = tmp_path / "tiny-cosyvoice2"
    blank = model_dir / "CosyVoice-BlankEN"
    blank.mkdir(parents=True)
    _write_tiny_qwen(blank)
    (model_dir / "cosyvoice2.yaml").write_text(
        _tiny_yaml(source_yaml.read_text(encoding="utf-8")), encoding="utf-8"
    )
    with (model_dir / "cosyvoice2.yaml").open(encoding="utf-8") as handle:
        configs = load_hyperpyyaml(handle, overrides={"qwen_pretrain_path": str(blank)})
    for name in ("llm", "flow", "hift"):
        torch.save(configs[name].state_dict(), model_dir / f"{name}.pt")
    _write_tiny_onnx(model_dir)

    def engine() -> CosyVoiceLocalTTS:
        return CosyVoiceLocalTTS(
            checkout,
            model_dir,
            reference_wav=SAMPLE_VOICE,
            reference_text=TRANSCRIPT,
            language="en",
            cache_dir=tmp_path / "cache",
        ).load()

    first = engine()
    chunks = list(first.stream("Hello there. How are you today?"))
    assert first.sample_rate_hz == 24000
    assert sum(chunk.is_last for chunk in chunks) == 2 and chunks[-1].is_last
    pcm = np.concatenate([chunk.speech.audio.pcm for chunk in chunks])
    assert len(pcm) > 0 and np.isfinite(pcm).all()
    assert first.voice_id in torch.load(model_dir / "spk2info.pt", map_location="cpu", weights_only=False)

    monkeypatch.setattr(type(first.model), "add_zero_shot_spk", lambda *args: pytest.fail("voice recomputed"))
    second = engine()
    assert first.voice_id in second.model.frontend.spk2info
    assert second.synthesize("Once more.").audio.duration_s > 0
