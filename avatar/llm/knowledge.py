"""An avatar's knowledge base: FAQ, markdown and plain-text files turned into searchable entries.

Three ways to write knowledge, because people paste what they already have:

- FAQ blocks: `Q:` / `A:` lines (also `问：` / `答：`), with optional `id:` and `emotion:` lines. One
  block (lines up to a blank line) is one entry; an English and a Chinese pair in the same block, or
  blocks sharing an `id:`, are the same entry in two languages, so the answer can follow the
  language of the question.
- Markdown sections without Q/A lines: the heading is the question, the section body the answer.
  A heading may end with `{#some-id}`. Headings over Q/A blocks are only topic labels.
- Plain paragraphs (in .txt files, or before the first heading): passages, found by their content.

Every question and answer is embedded once as an e5 "passage: " (the user's question is the
"query: "); on the sample FAQ that scored better than embedding stored questions as queries (27 vs
25 of 32 paraphrases right). Vectors are cached under `cache_root()/knowledge_base/`, keyed by a
hash of the files, the parser version and the model.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from avatar.core.errors import InputError
from avatar.core.storage import cache_root, open_atomically
from avatar.core.text_files import read_utf8_text
from avatar.core.types import EMOTIONS

log = logging.getLogger(__name__)

KNOWLEDGE_SUFFIXES = (".md", ".markdown", ".txt", ".faq")
PARSER_VERSION = "1"  # part of the cache key: bump when parsing changes which texts are embedded

_FIELD = re.compile(r"^\s*(q|a|question|answer|问|答|id|emotion|情绪)\s*[:：]\s*(.*)$", re.IGNORECASE)
_FIELD_ALIASES = {"question": "q", "问": "q", "answer": "a", "答": "a", "情绪": "emotion"}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*(?:\{#([\w-]+)\})?\s*#*\s*$")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def detect_language(text: str) -> str:
    """'zh' when Chinese characters outnumber Latin words, else 'en' (the two languages shipped)."""
    return "zh" if len(_CJK.findall(text)) >= max(1, len(_LATIN_WORD.findall(text))) else "en"


@dataclass(frozen=True)
class KnowledgeEntry:
    """One thing the avatar can answer, in one or more languages (`answers` maps language -> text)."""

    entry_id: str
    questions: tuple[str, ...]
    answers: dict[str, str]
    emotion: str = "neutral"
    topic: str = ""
    source: str = ""

    def answer_in(self, language: str) -> str:
        """The answer in `language` when the knowledge base has it, else the first one written."""
        return self.answers.get(language) or next(iter(self.answers.values()))

    def question_in(self, language: str) -> str:
        """A question in `language` to offer as a suggestion; the topic or answer start otherwise."""
        same = [question for question in self.questions if detect_language(question) == language]
        if same:
            return same[0]
        if self.questions:
            return self.questions[0]
        return self.topic or self.answer_in(language)[:40]


class Embedder(Protocol):
    model_id: str

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class KnowledgeBase:
    """Entries plus one vector per question and per answer, each row tagged with its entry index."""

    entries: tuple[KnowledgeEntry, ...]
    question_vectors: np.ndarray
    question_entry_index: np.ndarray
    answer_vectors: np.ndarray
    answer_entry_index: np.ndarray
    content_sha256: str = ""
    sources: tuple[str, ...] = field(default=())

    def score_entries(self, query_vector: np.ndarray) -> np.ndarray:
        """Per entry: the mean of its best question and best answer cosine similarity.

        Averaging the two votes fixes paraphrases that match the wrong question's wording but the
        right answer's content (and the reverse); a passage has only the answer vote.
        """
        question_best = np.full(len(self.entries), np.nan, dtype=np.float32)
        answer_best = np.full(len(self.entries), -1.0, dtype=np.float32)
        if len(self.question_vectors):
            np.fmax.at(question_best, self.question_entry_index, self.question_vectors @ query_vector)
        np.maximum.at(answer_best, self.answer_entry_index, self.answer_vectors @ query_vector)
        return np.where(np.isnan(question_best), answer_best, (question_best + answer_best) / 2)


def knowledge_files(paths: Path | str | Sequence[Path | str]) -> list[Path]:
    """The files to read: each path given, or the supported files inside a folder, sorted."""
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    if not given:
        raise InputError("no knowledge base files given", "pass a .md, .txt or .faq file or a folder")
    files: list[Path] = []
    for path in map(Path, given):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in KNOWLEDGE_SUFFIXES)
            if not found:
                raise InputError(f"knowledge base folder {path} has no .md, .txt or .faq files")
            files += found
        elif not path.exists():
            raise InputError(f"knowledge base file not found: {path}")
        elif path.suffix.lower() not in KNOWLEDGE_SUFFIXES:
            raise InputError(f"knowledge base file {path} must be .md, .txt or .faq", "convert it to text")
        else:
            files.append(path)
    return files


def read_knowledge_file(path: Path) -> str:
    """The file as text, with a one-line error for the ways a user's file goes wrong."""
    return read_utf8_text(path, "knowledge base file", empty_hint="write questions and answers into it")


def parse_knowledge_text(text: str, source: str, markdown: bool) -> list[KnowledgeEntry]:
    """Entries of one file, in file order (the order fixes the cached vector rows)."""
    text = _HTML_COMMENT.sub(lambda match: "\n" * match.group(0).count("\n"), text)
    stem = re.sub(r"\W+", "-", Path(source).stem.lower()).strip("-") or "kb"
    entries: list[KnowledgeEntry] = []
    for heading, anchor, blocks in _sections(text.splitlines(), markdown):
        entries += _section_entries(heading, anchor, blocks, source, stem, len(entries))
    return _merge_by_id(entries, source)


def parse_knowledge_file(path: Path | str) -> list[KnowledgeEntry]:
    """Entries of one file, with the same checks as `load_knowledge_base` (no embedding)."""
    (path,) = knowledge_files(Path(path))
    entries = parse_knowledge_text(read_knowledge_file(path), str(path), path.suffix.lower() != ".txt")
    if not entries:
        raise InputError(f"knowledge base file {path} has no questions, answers or passages")
    return entries


def load_knowledge_base(
    paths: Path | str | Sequence[Path | str], embedder: Embedder, cache_dir: Path | None = None
) -> KnowledgeBase:
    """Blocking: parse the files and embed every question and answer, reusing cached vectors."""
    files = knowledge_files(paths)
    texts = [read_knowledge_file(path) for path in files]
    entries: list[KnowledgeEntry] = []
    for path, text in zip(files, texts, strict=True):
        parsed = parse_knowledge_text(text, str(path), path.suffix.lower() != ".txt")
        if not parsed:
            raise InputError(f"knowledge base file {path} has no questions, answers or passages")
        entries += parsed
    entries = _merge_by_id(entries, "the knowledge base")
    digest = hashlib.sha256(f"{embedder.model_id}|parser {PARSER_VERSION}".encode())
    for path, text in zip(files, texts, strict=True):
        digest.update(f"|{path.suffix.lower()}|{len(text)}|".encode() + text.encode("utf-8"))
    content_sha256 = digest.hexdigest()

    questions = [(index, q) for index, entry in enumerate(entries) for q in entry.questions]
    answers = [(index, a) for index, entry in enumerate(entries) for a in entry.answers.values()]
    cache_path = (cache_dir or cache_root() / "knowledge_base") / f"{content_sha256}.npz"
    vectors = _read_cached_vectors(cache_path, len(questions), len(answers))
    if vectors is None:
        vectors = (
            embedder.embed_passages([q for _, q in questions]),
            embedder.embed_passages([a for _, a in answers]),
        )
        _write_cached_vectors(cache_path, *vectors)
    return KnowledgeBase(
        entries=tuple(entries),
        question_vectors=vectors[0],
        question_entry_index=np.array([i for i, _ in questions], dtype=np.int64),
        answer_vectors=vectors[1],
        answer_entry_index=np.array([i for i, _ in answers], dtype=np.int64),
        content_sha256=content_sha256,
        sources=tuple(str(path) for path in files),
    )


def _sections(lines: list[str], markdown: bool) -> Iterable[tuple[str, str, list[list[tuple[int, str]]]]]:
    """(heading, anchor, blocks) per markdown section; a block is its (line number, line) pairs."""
    heading, anchor, blocks, block = "", "", [], []
    for number, line in enumerate(lines, start=1):
        match = _HEADING.match(line) if markdown else None
        if match or not line.strip():
            if block:
                blocks.append(block)
                block = []
            if match:
                if heading or blocks:
                    yield heading, anchor, blocks
                heading, anchor, blocks = match.group(2).strip(), match.group(3) or "", []
            continue
        block.append((number, line.strip()))
    if block:
        blocks.append(block)
    if heading or blocks:
        yield heading, anchor, blocks


def _section_entries(
    heading: str, anchor: str, blocks: list[list[tuple[int, str]]], source: str, stem: str, start: int
) -> list[KnowledgeEntry]:
    faq_blocks = [block for block in blocks if any(_is_qa_line(line) for _, line in block)]
    plain_blocks = [block for block in blocks if block not in faq_blocks]
    prefix = anchor or re.sub(r"\W+", "-", heading.lower()).strip("-") or stem
    entries: list[KnowledgeEntry] = []
    for block in faq_blocks:
        entries += _faq_entries(block, heading, source, f"{prefix}-{start + len(entries) + 1}")
    if heading and not faq_blocks and plain_blocks:
        body = "\n".join(" ".join(line for _, line in block) for block in plain_blocks)
        entry_id = anchor or prefix
        language = detect_language(body)
        return [KnowledgeEntry(entry_id, (heading,), {language: body}, "neutral", heading, source)]
    for block in plain_blocks:
        passage = " ".join(line for _, line in block)
        entry_id = f"{prefix}-{start + len(entries) + 1}"
        line_source = f"{source}:{block[0][0]}"
        entries.append(
            KnowledgeEntry(entry_id, (), {detect_language(passage): passage}, "neutral", heading, line_source)
        )
    return entries


def _is_qa_line(line: str) -> bool:
    match = _FIELD.match(line)
    return bool(match) and _FIELD_ALIASES.get(match.group(1).lower(), match.group(1).lower()) in ("q", "a")


def _faq_entries(
    block: list[tuple[int, str]], topic: str, source: str, default_id: str
) -> list[KnowledgeEntry]:
    """One entry per block; a second answer in an already answered language starts the next one,
    so files that list Q/A/Q/A without blank lines still work."""
    fields: list[tuple[int, str, str]] = []
    for number, line in block:
        match = _FIELD.match(line)
        if match:
            key = match.group(1).lower()
            fields.append((number, _FIELD_ALIASES.get(key, key), match.group(2).strip()))
        elif fields:
            last_number, key, value = fields[-1]
            fields[-1] = (last_number, key, f"{value} {line}".strip())
        else:
            raise InputError(f"{source}:{number}: text before the first Q:/A: line of a FAQ block")
    entry_id, emotion = "", "neutral"
    groups: list[tuple[list[str], dict[str, str], int]] = []
    pending_questions: list[str] = []
    for number, key, value in fields:
        if key == "id":
            entry_id = value
        elif key == "emotion":
            emotion = value.strip("[] ").lower()
            if emotion not in EMOTIONS:
                raise InputError(
                    f"{source}:{number}: unknown emotion '{value}'", f"use one of {', '.join(EMOTIONS)}"
                )
        elif not value:
            raise InputError(f"{source}:{number}: empty {'question' if key == 'q' else 'answer'}")
        elif key == "q":
            pending_questions.append(value)
        else:
            if not pending_questions and not groups:
                raise InputError(f"{source}:{number}: answer without a question before it")
            language = detect_language(value)
            if not groups or language in groups[-1][1]:
                groups.append(([], {}, number))
            groups[-1][0].extend(pending_questions)
            groups[-1][1][language] = value
            pending_questions = []
    if pending_questions:
        raise InputError(
            f"{source}:{block[-1][0]}: question without an answer ('{pending_questions[-1][:40]}')"
        )
    if entry_id and len(groups) > 1:
        raise InputError(f"{source}:{groups[1][2]}: entry '{entry_id}' has two answers in one language")
    return [
        KnowledgeEntry(
            entry_id or (default_id if len(groups) == 1 else f"{default_id}.{n}"),
            tuple(questions),
            answers,
            emotion,
            topic,
            f"{source}:{first_line}",
        )
        for n, (questions, answers, first_line) in enumerate(groups, start=1)
    ]


def _merge_by_id(entries: list[KnowledgeEntry], where: str) -> list[KnowledgeEntry]:
    """Blocks that share an id are one entry written in several languages."""
    merged: dict[str, KnowledgeEntry] = {}
    for entry in entries:
        earlier = merged.get(entry.entry_id)
        if earlier is None:
            merged[entry.entry_id] = entry
            continue
        clash = set(earlier.answers) & set(entry.answers)
        if clash:
            raise InputError(
                f"{entry.source}: id '{entry.entry_id}' already has a {sorted(clash)[0]} answer at {earlier.source}"
            )
        merged[entry.entry_id] = KnowledgeEntry(
            entry.entry_id,
            earlier.questions + entry.questions,
            {**earlier.answers, **entry.answers},
            earlier.emotion if earlier.emotion != "neutral" else entry.emotion,
            earlier.topic or entry.topic,
            earlier.source,
        )
    return list(merged.values())


def _read_cached_vectors(
    path: Path, question_count: int, answer_count: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Cached vectors when the file is whole and has the expected rows; a bad cache is recomputed."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as cached:
            questions, answers = cached["question_vectors"], cached["answer_vectors"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        log.warning("ignoring unreadable knowledge-base cache %s: %s", path, error)
        return None
    if len(questions) != question_count or len(answers) != answer_count:
        log.warning("ignoring knowledge-base cache %s: row counts do not match the files", path)
        return None
    return questions.astype(np.float32), answers.astype(np.float32)


def _write_cached_vectors(path: Path, questions: np.ndarray, answers: np.ndarray) -> None:
    """Write beside the target and rename, so a crash never leaves half a cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomically(path) as temp_file:
        np.savez(temp_file, question_vectors=questions, answer_vectors=answers)
