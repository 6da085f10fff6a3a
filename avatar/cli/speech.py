"""`avatar transcribe` and `avatar voice-profile`: speech in, text or a voice profile out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avatar.cli.options import add_asr_options


def add_speech_parsers(sub) -> None:
    """Register transcribe and voice-profile on the CLI's subparsers object."""
    transcribe = sub.add_parser(
        "transcribe", help="speech to text (embedded Whisper, or SenseVoice with emotion and audio events)"
    )
    transcribe.add_argument("file", type=Path, help="audio file (any format ffmpeg reads)")
    transcribe.add_argument("--lang", help="language hint, e.g. en or zh (default: detect)")
    add_asr_options(transcribe)
    transcribe.set_defaults(run=cmd_transcribe)

    voice = sub.add_parser(
        "voice-profile", help="analyse a 3-30 s recording into a reusable voice profile (DSP voice matching)"
    )
    voice.add_argument("sample", type=Path, help="recording of the target speaker, 3-30 s")
    voice.add_argument("-o", "--output", type=Path, help="profile file (default: SAMPLE.voice.json)")
    voice.add_argument("--name", help="profile name (default: the sample's file name)")
    voice.set_defaults(run=cmd_voice_profile)


def cmd_transcribe(args: argparse.Namespace) -> int:
    if args.asr == "whisper":
        from avatar.asr.whisper import transcribe_file

        transcript = transcribe_file(args.file, language=args.lang)
        print(f"[{transcript.language}] {transcript.text}")
        return 0
    from avatar.core.audio_io import load_audio
    from avatar.engines.engine_set import sensevoice_asr

    asr = sensevoice_asr(args.asr_model_dir).load()
    transcript = asr.transcribe(load_audio(args.file, sample_rate_hz=16000), language=args.lang)
    tags = [transcript.language, transcript.emotion or "unknown", *transcript.events]
    print(f"[{' | '.join(tags)}] {transcript.text}")
    return 0


def cmd_voice_profile(args: argparse.Namespace) -> int:
    from voices.voice_profile import build_voice_profile

    profile = build_voice_profile(args.sample, name=args.name or args.sample.stem)
    output = args.output or args.sample.with_suffix(".voice.json")
    profile.save(output)
    for warning in profile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"wrote {output}: median pitch {profile.f0.median_f0_hz:.0f} Hz, "
        f"vocal tract ~{profile.envelope.vocal_tract_length_cm:.1f} cm, from {profile.sample_duration_s:.1f} s of speech"
    )
    return 0
