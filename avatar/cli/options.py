"""Options and helpers shared by several command groups: engines by name, ASR, text files.

Kept apart so each command module (render, speech, live) adds the same flags with the same
defaults and help, and `engine_choice` turns them into one validated EngineChoice.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from avatar.core.errors import AvatarError

LIBRARY_HELP = "avatar library folder (default: $AVATAR_LIBRARY, else ~/.local/share/talking-avatar/avatars)"


def add_library_option(parser: argparse.ArgumentParser, help_text: str = LIBRARY_HELP) -> None:
    parser.add_argument("--library", type=Path, metavar="DIR", help=help_text)


def add_neural_render_options(parser: argparse.ArgumentParser, *, on_air: bool = False) -> None:
    """Engines by name (`avatar models` shows which can run here). On air (serve, live) the
    procedural renderer draws every frame; Wav2Lip is for rendered videos."""
    from avatar.engines.choice import LIPSYNC_ENGINES, TTS_ENGINES

    group = parser.add_argument_group("neural engines (see `avatar models`)")
    if on_air:
        group.add_argument(
            "--voice",
            type=Path,
            metavar="SAMPLE",
            help="--tts cosyvoice/cosyvoice-http: the recording to clone (default: the library avatar's sample)",
        )
    group.add_argument(
        "--tts",
        choices=TTS_ENGINES,
        default=os.environ.get("AVATAR_TTS", "embedded"),
        help="embedded: Piper/Mandarin voice, DSP-matched to --voice (default, or $AVATAR_TTS); cosyvoice: zero-shot "
        "cloning of --voice with your CosyVoice checkout; cosyvoice-http: its FastAPI server; "
        "dashscope: Alibaba Cloud's CosyVoice API with an enrolled voice",
    )
    if not on_air:
        group.add_argument(
            "--lipsync",
            choices=LIPSYNC_ENGINES,
            default=os.environ.get("AVATAR_LIPSYNC", "procedural"),
            help="procedural: embedded (default, or $AVATAR_LIPSYNC); wav2lip / wav2lip_gan: the Wav2Lip "
            "network draws the mouth",
        )
    group.add_argument("--voice-text", help="what the --voice recording says (cloning; default: transcribed)")
    if on_air:
        group.add_argument(
            "--no-tts-stream",
            dest="tts_stream",
            action="store_false",
            help="speak whole sentences with a cloned voice too (default: its chunks go on air as they come)",
        )
    group.add_argument("--cosyvoice-version", type=int, choices=(2, 3), default=2)
    group.add_argument(
        "--cosyvoice-model-dir",
        type=Path,
        metavar="DIR",
        help="CosyVoice model folder (default: `avatar models path cosyvoice2`)",
    )
    group.add_argument(
        "--cosyvoice-checkout",
        type=Path,
        metavar="DIR",
        help="your git clone of FunAudioLLM/CosyVoice (default: $COSYVOICE_HOME)",
    )
    group.add_argument(
        "--cosyvoice-url", metavar="URL", help="--tts cosyvoice-http server (default: $AVATAR_COSYVOICE_URL)"
    )
    group.add_argument("--dashscope-voice", metavar="ID", help="--tts dashscope: your enrolled voice id")
    if not on_air:
        group.add_argument(
            "--wav2lip-checkpoint",
            type=Path,
            metavar="FILE",
            help="wav2lip(.gan).pth (default: `avatar models path wav2lip`)",
        )
    group.add_argument("--device", default="cpu", help="cpu (default) or cuda, for wav2lip and cosyvoice")


def engine_choice(args: argparse.Namespace, voice_text: str | None = None):
    """The validated EngineChoice of the flags; --voice-text wins over `voice_text`."""
    from avatar.engines.choice import EngineChoice

    choice = EngineChoice(
        tts=args.tts,
        lipsync=getattr(args, "lipsync", "procedural"),
        cosyvoice_version=args.cosyvoice_version,
        cosyvoice_model_dir=args.cosyvoice_model_dir,
        cosyvoice_checkout=args.cosyvoice_checkout,
        cosyvoice_url=args.cosyvoice_url,
        dashscope_voice=args.dashscope_voice,
        voice_text=args.voice_text or voice_text,
        wav2lip_checkpoint=getattr(args, "wav2lip_checkpoint", None),
        device=args.device,
    )
    choice.validate()
    return choice


def add_asr_options(parser: argparse.ArgumentParser) -> None:
    from avatar.engines.registry import engine_options

    parser.add_argument(
        "--asr",
        choices=engine_options("asr"),
        default=os.environ.get("AVATAR_ASR", "whisper"),
        help="whisper: embedded, offline (default, or $AVATAR_ASR); sensevoice: SenseVoiceSmall via funasr, also hears the "
        "speaker's emotion and audio events (needs pip install '.[asr]' and `avatar models download sensevoice`)",
    )
    parser.add_argument(
        "--asr-model-dir",
        type=Path,
        metavar="DIR",
        help="--asr sensevoice: the model folder (default: `avatar models path sensevoice`)",
    )


def read_text_option(path: Path, flag: str) -> str:
    """A UTF-8 text file named on the command line, or one line saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AvatarError(f"cannot read {flag} {path}: {exc}") from exc


def print_warnings(warnings) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
