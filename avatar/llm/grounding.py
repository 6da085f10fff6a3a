"""Knowledge under every chat model: the avatar's knowledge file, retrieved per question, in the prompt.

An avatar with an FAQ should answer from it whether a local GGUF model, an OpenAI-compatible
server or the offline answerer does the talking. The answerer reads its best entry out verbatim; a
chat model instead gets the few entries closest to the user's last question as notes at the end
of its system prompt (`prompt.knowledge_notes`) and answers in its own words. Retrieval is the
answerer's: multilingual-e5-small over every question and answer, so a Mandarin question finds an
English entry and the reverse, and the entry's answer is given in the question's language when the
file has one.

The notes go into a copy of the messages for this one request: the session's history keeps what
was said, not what was looked up, so an old question's notes never crowd a new one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.llm.knowledge import KnowledgeBase, detect_language, load_knowledge_base
from avatar.llm.prompt import knowledge_notes, with_knowledge

DEFAULT_PASSAGES = 3  # enough for a paraphrase to find its entry, few enough for a small model's context


@dataclass(frozen=True)
class Passage:
    """One knowledge entry as a chat model sees it, with the retrieval score that chose it."""

    question: str
    text: str
    relevance: float  # the entry's score minus the mean over all entries (see answerer.py)
    entry_id: str
    emotion: str = "neutral"


class KnowledgeRetriever:
    """The `top_k` knowledge entries closest to a question (blocking; thread-safe)."""

    def __init__(
        self,
        knowledge_paths: Path | str | Sequence[Path | str],
        top_k: int = DEFAULT_PASSAGES,
        cache_dir: Path | None = None,
    ) -> None:
        """One retriever serves both the offline answerer (which reads its best entry out) and the
        chat models (which get the top entries as notes), so retrieval is written once."""
        self.knowledge_paths = knowledge_paths
        self.top_k = top_k
        self.cache_dir = cache_dir
        self._embedder = None
        self._knowledge: KnowledgeBase | None = None
        self._lock = threading.Lock()  # one embedding at a time: the e5 engine is shared by every session

    def load(self) -> KnowledgeRetriever:
        """Blocking: load the embedding model and embed the knowledge files (cached on disk)."""
        from avatar.llm.embedder import E5Embedder

        embedder = E5Embedder().load()
        self._knowledge = load_knowledge_base(self.knowledge_paths, embedder, cache_dir=self.cache_dir)
        self._embedder = embedder
        return self

    @property
    def loaded(self) -> bool:
        return self._knowledge is not None

    @property
    def embedder_id(self) -> str:
        """The embedding model's id (reports), once loaded."""
        return getattr(self._embedder, "model_id", "")

    @property
    def knowledge(self) -> KnowledgeBase:
        if self._knowledge is None:
            raise RuntimeError("KnowledgeRetriever.load() must run before retrieving")
        return self._knowledge

    def ranked(self, question: str, count: int | None = None) -> list[Passage]:
        """The `count` (default `top_k`) best entries for `question`, best first, each in the
        question's language when the file has that language; relevance is the entry's score
        minus the mean over all entries (e5's raw scores crowd together, see answerer.py)."""
        knowledge = self.knowledge
        language = detect_language(question)
        with self._lock:
            query_vector = self._embedder.embed_queries([question])[0]
        scores = knowledge.score_entries(query_vector)
        mean = float(scores.mean()) if len(scores) > 1 else 0.0
        ranked = np.argsort(-scores, kind="stable")[: count or self.top_k]
        passages = []
        for index in ranked:
            entry = knowledge.entries[int(index)]
            relevance = float(scores[index]) - mean
            passages.append(
                Passage(
                    entry.question_in(language),
                    entry.answer_in(language),
                    relevance,
                    entry.entry_id,
                    entry.emotion,
                )
            )
        return passages

    def passages(self, question: str) -> list[Passage]:
        """The notes for a chat model: the `top_k` best entries, best first.

        Best first, not in file order: file order would keep the notes identical from turn to turn
        (so a prompt cache could keep the history after them), but SmolLM2-135M then lost the
        phone number of a second entry, and small models are who the notes matter most for."""
        return self.ranked(question)


class GroundedChatModel:
    """A chat model whose every reply is prompted with the knowledge notes for the last question."""

    def __init__(self, llm, retriever: KnowledgeRetriever) -> None:
        self.llm = llm
        self.retriever = retriever

    def __getattr__(self, name: str):
        """The wrapped model's settings (`base_url`, `model`, `model_path`, `last_error`) show through."""
        if name in ("llm", "retriever"):
            raise AttributeError(name)
        return getattr(self.llm, name)

    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        question = _last_user_text(messages)
        passages = await asyncio.to_thread(self.retriever.passages, question) if question else []
        notes = knowledge_notes((passage.question, passage.text) for passage in passages)
        async with aclosing(self.llm.stream(with_knowledge(messages, notes))) as pieces:
            async for piece in pieces:
                yield piece

    async def aclose(self) -> None:
        close = getattr(self.llm, "aclose", None)
        if close is not None:
            await close()


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content.strip() if isinstance(content, str) else ""
    return ""
