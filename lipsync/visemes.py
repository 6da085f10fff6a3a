"""Mouth shapes for phonemes (IPA as espeak/Piper writes it, and pinyin for Mandarin).

A viseme is (open, wide, round, press, teeth): jaw opening, lip spread, lip rounding, lips pressed
shut (p/b/m), upper lip raised off the teeth (f/v). Loudness alone cannot close the lips on /p b m/
while sound goes on, nor open them before a vowel: phoneme timing can.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Viseme:
    open: float = 0.0
    wide: float = 0.0
    round: float = 0.0
    press: float = 0.0
    teeth: float = 0.0


REST = Viseme()
BILABIAL = Viseme(press=1.0)
LABIODENTAL = Viseme(open=0.08, press=0.35, teeth=1.0)

_IPA: dict[str, Viseme] = {
    # consonants
    "p": BILABIAL,
    "b": BILABIAL,
    "m": BILABIAL,
    "f": LABIODENTAL,
    "v": LABIODENTAL,
    "θ": Viseme(open=0.18, wide=0.2),
    "ð": Viseme(open=0.18, wide=0.2),
    "t": Viseme(open=0.2, wide=0.2),
    "d": Viseme(open=0.2, wide=0.2),
    "n": Viseme(open=0.18, wide=0.15),
    "l": Viseme(open=0.28, wide=0.1),
    "ɾ": Viseme(open=0.22),
    "s": Viseme(open=0.12, wide=0.45),
    "z": Viseme(open=0.12, wide=0.45),
    "ʃ": Viseme(open=0.18, round=0.55),
    "ʒ": Viseme(open=0.18, round=0.55),
    "k": Viseme(open=0.3),
    "ɡ": Viseme(open=0.3),
    "g": Viseme(open=0.3),
    "ŋ": Viseme(open=0.25),
    "h": Viseme(open=0.35),
    "x": Viseme(open=0.3),
    "w": Viseme(open=0.12, round=0.95),
    "ɹ": Viseme(open=0.2, round=0.45),
    "r": Viseme(open=0.22, round=0.3),
    "j": Viseme(open=0.18, wide=0.45),
    "ʔ": Viseme(open=0.1),
    # vowels
    "a": Viseme(open=0.9, wide=0.1),
    "ɑ": Viseme(open=0.95),
    "æ": Viseme(open=0.8, wide=0.35),
    "ʌ": Viseme(open=0.65),
    "ɐ": Viseme(open=0.6),
    "ɒ": Viseme(open=0.8, round=0.3),
    "ɛ": Viseme(open=0.55, wide=0.35),
    "e": Viseme(open=0.45, wide=0.45),
    "ɪ": Viseme(open=0.32, wide=0.5),
    "i": Viseme(open=0.25, wide=0.7),
    "ə": Viseme(open=0.4),
    "ɚ": Viseme(open=0.35, round=0.3),
    "ɜ": Viseme(open=0.45, round=0.2),
    "ɔ": Viseme(open=0.65, round=0.55),
    "o": Viseme(open=0.5, round=0.7),
    "ʊ": Viseme(open=0.3, round=0.75),
    "u": Viseme(open=0.25, round=0.95),
    "ᵻ": Viseme(open=0.3, wide=0.4),
    "ɯ": Viseme(open=0.3, wide=0.3),
    "y": Viseme(open=0.25, round=0.9),
}
_PAUSE_MARKS = set(".,;:!?…。，；：！？、") | {"_", "^", "$"}
_MODIFIERS = set("ˈˌːˑ̃ʲʰ-~")

# Mandarin: the initial shapes the onset, the final's first vowel the nucleus.
_PINYIN_INITIALS: dict[str, Viseme] = {
    "b": BILABIAL,
    "p": BILABIAL,
    "m": BILABIAL,
    "f": LABIODENTAL,
    "d": _IPA["t"],
    "t": _IPA["t"],
    "n": _IPA["n"],
    "l": _IPA["l"],
    "g": _IPA["k"],
    "k": _IPA["k"],
    "h": _IPA["h"],
    "j": _IPA["j"],
    "q": _IPA["j"],
    "x": _IPA["s"],
    "zh": _IPA["ʃ"],
    "ch": _IPA["ʃ"],
    "sh": _IPA["ʃ"],
    "r": _IPA["ɹ"],
    "z": _IPA["s"],
    "c": _IPA["s"],
    "s": _IPA["s"],
    "y": _IPA["j"],
    "w": _IPA["w"],
}
_PINYIN_VOWELS: dict[str, Viseme] = {
    "a": _IPA["a"],
    "o": _IPA["o"],
    "e": _IPA["ə"],
    "i": _IPA["i"],
    "u": _IPA["u"],
    "v": _IPA["y"],
    "ü": _IPA["y"],
}


def is_pause(symbol: str) -> bool:
    return symbol in _PAUSE_MARKS or (symbol.strip() == "" and symbol != " ")


def viseme_for_phoneme(symbol: str) -> Viseme | None:
    """Viseme of one IPA symbol; None for stress marks and word gaps (they take their neighbours')."""
    if symbol in _MODIFIERS or symbol == " ":
        return None
    if symbol in _PAUSE_MARKS:
        return REST
    base = symbol[0] if symbol else ""
    return _IPA.get(symbol) or _IPA.get(base) or Viseme(open=0.3)


def visemes_for_pinyin(syllable: str) -> tuple[Viseme, Viseme]:
    """(onset, nucleus) visemes of a toneless or tone-numbered pinyin syllable like 'zhong1'."""
    s = syllable.rstrip("012345").lower()
    onset = REST
    for initial in ("zh", "ch", "sh"):
        if s.startswith(initial):
            onset, s = _PINYIN_INITIALS[initial], s[2:]
            break
    else:
        if s and s[0] in _PINYIN_INITIALS:
            onset, s = _PINYIN_INITIALS[s[0]], s[1:]
    vowels = [c for c in s if c in _PINYIN_VOWELS]
    # The most open vowel of the final carries the syllable (e.g. "iao" -> a).
    nucleus = max((_PINYIN_VOWELS[c] for c in vowels), key=lambda v: v.open, default=_IPA["ə"])
    return onset, nucleus
