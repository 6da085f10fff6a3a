"""Read SenseVoice's rich transcription: language, emotion and audio-event tags around the text.

SenseVoiceSmall's CTC head writes four tags before the words of every utterance, in the order
language, emotion, event, text normalisation: `<|en|><|HAPPY|><|Speech|><|withitn|>Hello there.`
funasr joins utterances by concatenating these strings, so one result can hold several tag groups;
a language tag opens each group. The tag names are the ones in the model's tokenizer
(chn_jpn_yue_eng_ko_spectok.bpe.model) and in funasr's `rich_transcription_postprocess`.

`rich_transcription_postprocess` replaces the tags with emoji (events in front, emotion behind);
text that went through it is read too, so a caller may hand over either form. Two lossy spots in
that form: funasr writes both Sneeze and Cough as 🤧 (read back as Sneeze; its own table gives Cough
😷, which is read as Cough), and neutral speech and the Speech/Breath events have no emoji at all.

Nothing is thrown away: tags that are not a language, emotion, event or ITN marker (placeholders
such as `<|Event_UNK|>`, or anything a newer model adds) land in `other_tags`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Model tag -> our language code; "" means the model heard no speech.
LANGUAGES = {"zh": "zh", "en": "en", "yue": "yue", "ja": "ja", "ko": "ko", "nospeech": ""}
EMOTIONS = ("happy", "sad", "angry", "neutral", "fearful", "disgusted", "surprised", "unknown")
# Spelled as the tokenizer spells them; matching ignores case.
EVENTS = ("Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Sing", "Speech_Noise")

_EMOTION_TAGS = {name: name for name in EMOTIONS} | {"emo_unknown": "unknown"}
_EVENT_TAGS = {name.lower(): name for name in EVENTS}
_ITN_TAGS = {"withitn": True, "woitn": False}

# rich_transcription_postprocess output.
_EMOJI_EVENTS = {"🎼": "BGM", "👏": "Applause", "😀": "Laughter", "😭": "Cry", "🤧": "Sneeze", "😷": "Cough"}
_EMOJI_EMOTIONS = {
    "😊": "happy",
    "😔": "sad",
    "😡": "angry",
    "😰": "fearful",
    "🤢": "disgusted",
    "😮": "surprised",
}
_EMOJI_NO_SPEECH = "❓"  # funasr's rendering of <|nospeech|><|Event_UNK|>

_TAG = re.compile(r"<\|([^|<>]*)\|>")
_EMOJI = re.compile("|".join(map(re.escape, [*_EMOJI_EVENTS, *_EMOJI_EMOTIONS, _EMOJI_NO_SPEECH])))
_SPACES = re.compile(r"\s+")
# Scripts written without spaces between words: no space is added when joining segments there.
_NO_SPACE_SCRIPT = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


@dataclass(frozen=True)
class SenseVoiceSegment:
    """One tag group and its words. None where the group carried no tag of that kind."""

    text: str
    language: str | None
    emotion: str | None
    events: tuple[str, ...]
    itn: bool | None
    other_tags: tuple[str, ...]


@dataclass(frozen=True)
class SenseVoiceTags:
    """Everything in one SenseVoice result; the top-level fields summarise all segments.

    language: the most frequent spoken language ("" for no speech or no tag), ties to the earliest.
    emotion: the most frequent emotion other than "unknown" (ties to the earliest), else "unknown"
    when only that was tagged, else None (no emotion tag at all).
    events: every event in order of first appearance, once each.
    itn: True when any segment was written with inverse text normalisation ("3" rather than "three").
    """

    text: str
    language: str
    emotion: str | None
    events: tuple[str, ...]
    itn: bool
    other_tags: tuple[str, ...] = ()
    segments: tuple[SenseVoiceSegment, ...] = ()


class _SegmentBuilder:
    """Collects one tag group while scanning; `close()` freezes it."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.languages: list[str] = []
        self.emotions: list[str] = []
        self.events: list[str] = []
        self.itn: bool | None = None
        self.other_tags: list[str] = []

    @property
    def started(self) -> bool:
        return bool(self.languages or "".join(self.texts).strip())

    def add_tag(self, name: str, raw: str) -> None:
        key = name.strip().lower()
        if key in LANGUAGES:
            self.languages.append(LANGUAGES[key])
        elif key in _EMOTION_TAGS:
            self.emotions.append(_EMOTION_TAGS[key])
        elif key in _EVENT_TAGS:
            self.events.append(_EVENT_TAGS[key])
        elif key in _ITN_TAGS:
            self.itn = _ITN_TAGS[key] if self.itn is None else self.itn or _ITN_TAGS[key]
        else:
            self.other_tags.append(raw)

    def add_text(self, text: str) -> None:
        """Plain text, with any emoji from rich_transcription_postprocess turned back into tags."""
        position = 0
        for match in _EMOJI.finditer(text):
            self.texts.append(text[position : match.start()])
            emoji = match.group()
            if emoji in _EMOJI_EVENTS:
                self.events.append(_EMOJI_EVENTS[emoji])
            elif emoji in _EMOJI_EMOTIONS:
                self.emotions.append(_EMOJI_EMOTIONS[emoji])
            else:
                self.languages.append(LANGUAGES["nospeech"])
                self.other_tags.append("<|Event_UNK|>")
            position = match.end()
        self.texts.append(text[position:])

    def close(self) -> SenseVoiceSegment:
        return SenseVoiceSegment(
            text=_SPACES.sub(" ", "".join(self.texts)).strip(),
            language=self.languages[0] if self.languages else None,
            emotion=_pick_emotion(self.emotions),
            events=_unique(self.events),
            itn=self.itn,
            other_tags=_unique(self.other_tags),
        )


def parse_sensevoice(raw: str) -> SenseVoiceTags:
    """Split a SenseVoice result (raw tags or funasr's emoji form) into text and tags."""
    segments: list[SenseVoiceSegment] = []
    current = _SegmentBuilder()
    position = 0
    for match in _TAG.finditer(raw):
        current.add_text(raw[position : match.start()])
        position = match.end()
        if match.group(1).strip().lower() in LANGUAGES and current.started:
            segments.append(current.close())
            current = _SegmentBuilder()
        current.add_tag(match.group(1), match.group())
    current.add_text(raw[position:])
    segments.append(current.close())
    if len(segments) > 1:
        segments = [segment for segment in segments if segment != _EMPTY_SEGMENT]

    spoken = [segment.language for segment in segments if segment.language]
    return SenseVoiceTags(
        text=_join_texts([segment.text for segment in segments]),
        language=_most_common(spoken) if spoken else "",
        emotion=_pick_emotion([segment.emotion for segment in segments if segment.emotion]),
        events=_unique([event for segment in segments for event in segment.events]),
        itn=any(segment.itn for segment in segments),
        other_tags=_unique([tag for segment in segments for tag in segment.other_tags]),
        segments=tuple(segments),
    )


_EMPTY_SEGMENT = SenseVoiceSegment("", None, None, (), None, ())


def _pick_emotion(emotions: list[str]) -> str | None:
    known = [emotion for emotion in emotions if emotion != "unknown"]
    if known:
        return _most_common(known)
    return "unknown" if emotions else None


def _most_common(values: list[str]) -> str:
    """Most frequent value; Counter keeps first-seen order, so ties go to the earliest."""
    counts = Counter(values)
    best = max(counts.values())
    return next(value for value, count in counts.items() if count == best)


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _join_texts(texts: list[str]) -> str:
    joined = ""
    for text in texts:
        if not text:
            continue
        if joined and not (_NO_SPACE_SCRIPT.match(joined[-1]) or _NO_SPACE_SCRIPT.match(text[0])):
            joined += " "
        joined += text
    return joined
