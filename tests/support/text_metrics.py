"""Word and character error rates for judging speech by transcribing it back.

Normalisation decides what counts as an error, so it is explicit: lower case, punctuation
(ASCII and CJK) removed, whitespace collapsed. It does NOT convert Traditional to Simplified
characters: `WhisperASR` already returns Simplified Mandarin (OpenCC t2s), and a metric that
silently forgave script differences would hide an ASR that answers in the wrong script.
Whisper writes spoken Chinese numbers as digits ("六点" is heard as "6点"), so for Chinese text
whole numbers in Arabic digits are read out as Chinese numerals before characters are compared;
English numbers are not spelled out, so pick English test sentences without digits.
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


_CHINESE_DIGITS = "零一二三四五六七八九"
_CHINESE_UNITS = ((1000, "千"), (100, "百"), (10, "十"))


def chinese_numeral(number: int) -> str:
    """How a whole number 0-99999 is written in Chinese characters (6 -> 六, 12 -> 十二, 105 -> 一百零五)."""
    if not 0 <= number <= 99999:
        raise ValueError(f"number out of range 0-99999: {number}")
    if number < 10:
        return _CHINESE_DIGITS[number]
    if number >= 10000:
        high, rest = divmod(number, 10000)
        tail = "" if rest == 0 else ("零" if rest < 1000 else "") + chinese_numeral(rest)
        return chinese_numeral(high) + "万" + tail
    parts: list[str] = []
    rest = number
    pending_zero = False
    for value, unit in _CHINESE_UNITS:
        digit, rest = divmod(rest, value)
        if digit:
            if pending_zero:
                parts.append("零")
            parts.append(_CHINESE_DIGITS[digit] + unit)
            pending_zero = False
        elif parts:
            pending_zero = True
    if rest:
        if pending_zero:
            parts.append("零")
        parts.append(_CHINESE_DIGITS[rest])
    text = "".join(parts)
    return text[1:] if text.startswith("一十") else text  # 十二, not 一十二


def spell_numbers_chinese(text: str) -> str:
    """Replace whole numbers written in digits by Chinese numerals; longer digit runs are read digit by digit."""

    def spell(match: re.Match[str]) -> str:
        digits = match.group(0)
        if len(digits) > 5 or (len(digits) > 1 and digits.startswith("0")):
            return "".join(_CHINESE_DIGITS[int(d)] for d in digits)
        return chinese_numeral(int(digits))

    return re.sub(r"[0-9]+", spell, text)


def characters(text: str) -> list[str]:
    """Characters without spaces: the unit for Chinese, where words are not delimited.

    In text containing Chinese, digits are spelled as Chinese numerals first (see module docstring).
    """
    normalized = normalize_text(text)
    if has_cjk(normalized):
        normalized = spell_numbers_chinese(normalized)
    return [ch for ch in normalized if not ch.isspace()]


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
