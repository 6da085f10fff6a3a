"""The in-process CosyVoice adapter on CosyVoice's real code (the `cosyvoice2-fr-infer` wheel).

CosyVoice 2's code runs in .venv-cosyvoice (scripts/setup_cosyvoice_venv.sh, made by `make test`)
on a tiny random-weight model folder built from its own classes
(tests/support/tiny_cosyvoice.py); tests/support/cosyvoice_real_check.py drives our adapter there
and reports what happened. The audio is noise (random weights): these tests check the contract
(what upstream is handed, chunks and their text, the speaker cache), not intelligibility.
What no package carries (Qwen2-0.5B's weights and tokenizer, campplus and the S3 speech
tokenizer) is replaced by tiny stand-ins; everything else is upstream's code.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cosyvoice_real_check import STREAM_TEXT, TRANSCRIPT

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv-cosyvoice" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not VENV_PYTHON.is_file(), reason="CosyVoice venv missing: run bash scripts/setup_cosyvoice_venv.sh"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("cosyvoice-real")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [str(VENV_PYTHON), "-m", "tests.support.cosyvoice_real_check", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_upstream_code_is_the_packaged_cosyvoice2(report):
    assert report["upstream_package"].endswith("site-packages/cosyvoice")
    assert report["model_class"] == "CosyVoice2"
    assert report["sample_rate_hz"] == 24000
    ran = set(report["upstream_functions"])
    for function in (
        "cosyvoice/cli/cosyvoice.py:CosyVoice2.__init__",
        "cosyvoice/cli/cosyvoice.py:CosyVoice.add_zero_shot_spk",
        "cosyvoice/cli/cosyvoice.py:CosyVoice.save_spkinfo",
        "cosyvoice/cli/cosyvoice.py:CosyVoice.inference_zero_shot",
        "cosyvoice/cli/cosyvoice.py:CosyVoice2.inference_instruct2",
        "cosyvoice/cli/frontend.py:CosyVoiceFrontEnd.text_normalize",
        "cosyvoice/cli/frontend.py:CosyVoiceFrontEnd.frontend_zero_shot",
        "cosyvoice/cli/frontend.py:CosyVoiceFrontEnd.frontend_instruct2",
        "cosyvoice/cli/model.py:CosyVoice2Model.tts",
        "cosyvoice/cli/model.py:CosyVoice2Model.token2wav",
        "cosyvoice/llm/llm.py:Qwen2LM.inference",
        "cosyvoice/flow/flow.py:CausalMaskedDiffWithXvec.inference",
        "cosyvoice/hifigan/generator.py:HiFTGenerator.inference",
    ):
        assert function in ran, function


def test_zero_shot_streams_chunks_with_their_sentence(report):
    chunks = report["stream"]["chunks"]
    first, second = "Hello there, how are you?", "Fine."
    assert f"{first} {second}" == STREAM_TEXT
    texts = [chunk["text"] for chunk in chunks]
    assert texts == [first] * texts.count(first) + [second] * texts.count(second)
    assert texts.count(first) >= 2  # upstream's stream mode: a chunk per 25 speech tokens
    assert [chunk["is_last"] for chunk in chunks] == [
        text != following for text, following in zip(texts, [*texts[1:], None], strict=True)
    ]
    assert {chunk["sample_rate_hz"] for chunk in chunks} == {24000}
    assert all(chunk["finite"] and chunk["rms"] > 0 for chunk in chunks)
    # the first chunk arrives while the sentence is still being made
    first_chunks = [chunk for chunk in chunks if chunk["text"] == first]
    assert first_chunks[0]["arrived_s"] < first_chunks[-1]["arrived_s"]
    # upstream got each sentence with the cached prompt: the transcript and its speech tokens
    calls = report["stream"]["calls"]
    assert [call["stream"] for call in calls] == [True, True]
    assert [call["text"].strip() for call in calls] == [first, second]
    assert all(call["prompt_text"] == TRANSCRIPT and call["llm_prompt_tokens"] > 0 for call in calls)
    # every upstream piece goes out as it comes; only a sentence's last 0.1 s waits for its end
    pieces = sum(call["pieces"] for call in calls)
    assert pieces <= len(chunks) <= pieces + len(calls)


def test_instruct_speaks_the_emotion_without_the_prompt_speech_in_the_llm(report):
    instruct = report["instruct"]
    assert len(instruct["calls"]) == 2  # said twice: the cached instruct entry survives its first use
    for call in instruct["calls"]:
        assert call["text"].strip() == "Great news."
        assert call["prompt_text"].startswith("用开心的语气说这句话")  # CosyVoice 2's instruction
        assert call["llm_prompt_tokens"] == 0  # instruct2 drops the prompt's speech from the LLM
        assert call["flow_prompt_tokens"] > 0  # ...and keeps the voice in the flow
        assert call["stream"] is False
    assert instruct["finite"] and min(instruct["durations_s"]) > 0


def test_speaker_features_are_saved_and_reloaded_not_recomputed(report):
    cache = report["cache"]
    voice_id = report["voice_id"]
    assert {voice_id, f"{voice_id}-happy"} <= set(cache["spk2info_ids"])
    assert report["first_load_extractions"] == {"speech_token": 1, "spk_embedding": 1, "speech_feat": 1}
    assert cache["second_load_extractions"] == {"speech_token": 0, "spk_embedding": 0, "speech_feat": 0}
    # features read back from spk2info.pt are the computed ones: same seed, same samples
    assert cache["reference_samples"] > 0 and cache["same_seed_same_audio"]
    zero_shot, happy = cache["calls"]
    assert zero_shot["prompt_text"] == TRANSCRIPT and zero_shot["llm_prompt_tokens"] > 0
    assert happy["prompt_text"].startswith("用开心的语气说这句话") and happy["llm_prompt_tokens"] == 0
