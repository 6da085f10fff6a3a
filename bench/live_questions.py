"""The questions the live benchmarks ask: real recordings and synthesized ones, as 16 kHz PCM.

Real recordings (`../shared/eval/speech`, licences in its MANIFEST) are how users meet the avatar:
real voices, real pauses inside sentences (which the end-of-turn detector must not take for the
end), room tone. They are not questions and not about the shop, so the reply is the answerer's
"I don't know that" line or the chat model's own answer. The synthesized questions (Piper) are
in the domain of assets/knowledge/shop_faq.md, so the answerer replies from the FAQ. The JFK clip
is left out: its crowd noise sits within 40 dB of the voice, so an energy-based speech end lands
late and would flatter the avatar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE_HZ = 16000
PAD_S = 0.5
EVAL_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "eval" / "speech"
REAL_CLIPS = (
    "en_female_librispeech_1995-1837-0001.wav",
    "zh_female_aishell1_BAC009S0724W0121.wav",
    "en_female_ljspeech_LJ050-0131.wav",
    "zh_male_funasr_asr_example.wav",
    "zh_female_cosyvoice_zero_shot_prompt.wav",
)
SYNTHETIC_QUESTIONS = (
    "What are your opening hours?",
    "How can I return an item?",
    "Do you ship abroad?",
    "Can I pay by card?",
    "Where is your shop?",
)


@dataclass(frozen=True)
class Question:
    name: str
    language: str  # "en" / "zh"
    source: str  # "real" / "synthetic"
    pcm: np.ndarray  # 16 kHz float32 mono with PAD_S of silence either side


def _padded(pcm: np.ndarray) -> np.ndarray:
    pad = np.zeros(int(PAD_S * RATE_HZ), np.float32)
    return np.concatenate([pad, pcm.astype(np.float32), pad])


def real_questions(folder: Path = EVAL_SPEECH) -> list[Question]:
    import soundfile as sf

    from avatar.core.audio_io import resample

    questions = []
    for name in REAL_CLIPS:
        path = folder / name
        if not path.exists():
            raise SystemExit(f"missing eval recording {path}: the benchmark needs ../shared/eval")
        pcm, rate_hz = sf.read(path, dtype="float32", always_2d=True)
        mono = resample(pcm.mean(axis=1), rate_hz, RATE_HZ)
        questions.append(Question(path.stem, name[:2], "real", _padded(mono)))
    return questions


def synthetic_questions(texts: tuple[str, ...] = SYNTHETIC_QUESTIONS) -> list[Question]:
    from avatar.core.audio_io import resample
    from voices.piper_tts import PiperTTS

    tts = PiperTTS().load()
    questions = []
    for text in texts:
        speech = tts.synthesize(text)
        pcm = resample(speech.audio.pcm.astype(np.float32), speech.audio.sample_rate_hz, RATE_HZ)
        questions.append(Question(text, "en", "synthetic", _padded(pcm)))
    return questions


def question_set(kind: str) -> list[Question]:
    """ "synthetic", "real", or "mixed" (alternating real and synthetic)."""
    if kind == "synthetic":
        return synthetic_questions()
    if kind == "real":
        return real_questions()
    if kind == "mixed":
        real, synthetic = real_questions(), synthetic_questions()
        return [q for pair in zip(real, synthetic, strict=False) for q in pair]
    raise SystemExit(f"unknown question set {kind!r}: use synthetic, real or mixed")
