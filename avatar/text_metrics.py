"""Word and character error rates for judging speech by transcribing it back.

Normalisation decides what counts as an error, so it is explicit: lower case, punctuation
(ASCII and CJK) removed, whitespace collapsed. It does NOT convert Traditional to Simplified
characters: `WhisperASR` already returns Simplified Mandarin (OpenCC t2s), and a metric that
silently forgave script differences would hide an ASR that answers in the wrong script.
Numbers are not spelled out either; pick test sentences without digits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def normalize_text(text: str) -> str:
    """Lower case, drop punctuation and symbols (keep apostrophes inside words), collapse spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch == "'" or not (category.startswith("P") or category.startswith("S")):
            kept.append(ch)
        else:
            kept.append(" ")
    text = "".join(kept)
    text = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", text)  # quotes, not contractions
    return " ".join(text.split())


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance (substitutions + deletions + insertions) between two sequences."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_item in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ref_item != hyp_item),
            )
        previous = current
    return previous[-1]


def words(text: str) -> list[str]:
    return normalize_text(text).split()


def characters(text: str) -> list[str]:
    """Characters without spaces: the unit for Chinese, where words are not delimited."""
    return [ch for ch in normalize_text(text) if not ch.isspace()]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: edits / reference words (can exceed 1.0 with many insertions)."""
    ref = words(reference)
    if not ref:
        raise ValueError("reference has no words")
    return edit_distance(ref, words(hypothesis)) / len(ref)


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edits / reference characters, spaces ignored."""
    ref = characters(reference)
    if not ref:
        raise ValueError("reference has no characters")
    return edit_distance(ref, characters(hypothesis)) / len(ref)


def corpus_error_rate(pairs: Sequence[tuple[str, str]], unit: str) -> float:
    """Total edits / total reference units over many (reference, hypothesis) pairs.

    Pooled, not averaged per sentence, so a short sentence does not weigh as much as a long one.
    """
    split = words if unit == "word" else characters
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    edits = total = 0
    for reference, hypothesis in pairs:
        ref = split(reference)
        edits += edit_distance(ref, split(hypothesis))
        total += len(ref)
    if total == 0:
        raise ValueError("references are empty")
    return edits / total


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))
