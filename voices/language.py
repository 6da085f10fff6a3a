"""Pick the voice language from the text itself: Mandarin when CJK characters dominate.

Counting letters (not bytes or characters) keeps punctuation, digits and emoji out of the vote;
one CJK character carries about a word's worth of speech, so each counts against a whole Latin
word, not a letter. A sentence like "我用 Python 写代码" is then Mandarin, "I love 北京" English.
"""

from __future__ import annotations

import re

from avatar.core.errors import InputError

_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def cjk_ratio(text: str) -> float:
    """CJK characters / (CJK characters + Latin words); 0.0 when there is neither."""
    cjk = len(_CJK_CHAR.findall(text))
    latin_words = len(_LATIN_WORD.findall(text))
    total = cjk + latin_words
    return cjk / total if total else 0.0


def detect_language(text: str) -> str:
    """'zh' when more than half of the spoken units are CJK characters, else 'en'."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("cannot detect the language of empty text")
    if not _CJK_CHAR.search(text) and not _LATIN_WORD.search(text):
        raise InputError(f"cannot detect the language of {text[:40]!r}: it has no words")
    return "zh" if cjk_ratio(text) > 0.5 else "en"
