"""Intelligibility of a voice, measured by transcribing its speech back with Whisper.

Shared by the test suite and `bench/tts_intelligibility.py`, so both judge the same sentences
the same way. Sentences are everyday prose of a few seconds each, fixed in advance; numbers are
written as words (the ASR writes digits back, which the metric would count as errors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.support.text_metrics import cer, corpus_error_rate, wer

ENGLISH_SENTENCES = (
    "The weather is lovely today, so we are going for a walk in the park.",
    "Please remember to turn off the lights when you leave the room.",
    "She bought fresh bread and cheese at the market this morning.",
    "Our train leaves at noon, so we should pack our bags tonight.",
    "Thank you for your help, I really appreciate it.",
    "The children played football in the garden until it got dark.",
    "Could you tell me how to get to the nearest library?",
    "He likes to read a good book with a cup of tea on Sunday afternoons.",
    "Learning a new language takes patience and practice.",
    "The museum is closed on Mondays but open every other day of the week.",
)

MANDARIN_SENTENCES = (
    "今天天气很好，我们一起去公园散步吧。",
    "我喜欢在周末读书和听音乐。",
    "这家餐厅的菜非常好吃。",
    "请问火车站怎么走？",
    "欢迎大家来参观我们的学校。",
    "他每天早上六点起床跑步。",
    "明天下午我们一起去看电影吧。",
    "这个问题我需要再想一想。",
    "春天来了，花都开了。",
    "谢谢你的帮助，我非常感激。",
)


@dataclass(frozen=True)
class IntelligibilityRow:
    reference: str
    hypothesis: str
    error_rate: float  # WER for English, CER for Mandarin
    audio_s: float
    synthesis_s: float


def measure(tts, asr, sentences, language: str) -> tuple[list[IntelligibilityRow], float]:
    """Synthesize each sentence, transcribe it with `language` as hint; rows + pooled rate."""
    unit = "char" if language == "zh" else "word"
    per_sentence = cer if unit == "char" else wer
    rows: list[IntelligibilityRow] = []
    for sentence in sentences:
        start = time.perf_counter()
        speech = tts.synthesize(sentence)
        synthesis_s = time.perf_counter() - start
        heard = asr.transcribe(speech.audio, language=language).text
        rows.append(
            IntelligibilityRow(
                reference=sentence,
                hypothesis=heard,
                error_rate=per_sentence(sentence, heard),
                audio_s=speech.audio.duration_s,
                synthesis_s=synthesis_s,
            )
        )
    overall = corpus_error_rate([(row.reference, row.hypothesis) for row in rows], unit)
    return rows, overall
