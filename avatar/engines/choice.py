"""Which speech and lip-sync engines a render uses, chosen by name, and how each one is built.

The embedded engines need nothing; the neural ones need a voice sample, a model folder, a server
or a key. Everything a choice needs travels in one frozen `EngineChoice`, so the CLI, the batch
workers (it is pickled to them) and the web console build the same engines the same way, and a
missing piece is one `InputError`/`EngineUnavailable` line before any slow work starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import EngineUnavailable, InputError
from avatar.engines.registry import cloning_options, engine_dir, engine_options, file_names, require_engine

# The names --tts and --lipsync accept, as the model registry lists them (the first is the default).
TTS_ENGINES = engine_options("tts")
LIPSYNC_ENGINES = engine_options("lipsync")
CLONING_ENGINES = cloning_options()  # they clone from --voice (a recording + its text)


@dataclass(frozen=True)
class EngineChoice:
    tts: str = "embedded"
    lipsync: str = "procedural"
    cosyvoice_version: int = 2  # 2 or 3: which model folder (`avatar models path cosyvoice2`)
    cosyvoice_model_dir: Path | None = None  # default: the registry's folder for that version
    cosyvoice_checkout: Path | None = None  # default: $COSYVOICE_HOME or an importable `cosyvoice`
    cosyvoice_url: str | None = None  # --tts cosyvoice-http; default $AVATAR_COSYVOICE_URL
    dashscope_voice: str | None = None  # --tts dashscope: an enrolled voice id
    voice_text: str | None = None  # what the --voice recording says (default: Whisper's transcript)
    wav2lip_checkpoint: Path | None = None  # default: the registry's wav2lip(_gan).pth
    device: str = "cpu"  # cpu or cuda, for wav2lip and the in-process CosyVoice

    def validate(self) -> None:
        """Cheap checks (names, required settings) that must fail before photos and models load."""
        if self.tts not in TTS_ENGINES:
            raise InputError(f"unknown --tts {self.tts!r}", f"use one of: {', '.join(TTS_ENGINES)}")
        if self.lipsync not in LIPSYNC_ENGINES:
            raise InputError(
                f"unknown --lipsync {self.lipsync!r}", f"use one of: {', '.join(LIPSYNC_ENGINES)}"
            )
        if self.cosyvoice_version not in (2, 3):
            raise InputError(f"unknown CosyVoice version {self.cosyvoice_version}", "use 2 or 3")
        if self.tts == "dashscope" and not (self.dashscope_voice or "").strip():
            raise InputError(
                "--tts dashscope needs --dashscope-voice ID",
                "enroll your voice sample once (voices.cosyvoice_dashscope.enroll_voice) and pass its id",
            )
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InputError(f"unknown --device {self.device!r}", "use cpu or cuda")

    @property
    def clones_voice(self) -> bool:
        return self.tts in CLONING_ENGINES


def cloned_voice_engine(
    choice: EngineChoice,
    sample_path: Path | None,
    sample_text: str,
    language: str,
    transcribe: Callable[[Path], str] | None = None,
):
    """The neural TTS for `choice.tts`, speaking in the voice of `sample_path` (blocking: loads).

    CosyVoice needs to know what the sample says: `sample_text`, else `transcribe(sample_path)`
    (default: the embedded Whisper; a caller with a loaded Whisper passes its own)."""
    if choice.tts == "dashscope":
        from voices.cosyvoice_dashscope import DashScopeCosyVoiceTTS

        return DashScopeCosyVoiceTTS(choice.dashscope_voice, language=language).load()
    if sample_path is None:
        raise InputError(
            f"--tts {choice.tts} clones a voice and needs --voice SAMPLE",
            "give 3-10 s of clear speech (WAV/MP3) and, ideally, --voice-text with what it says",
        )
    if Path(sample_path).suffix.lower() == ".json":
        raise InputError(
            f"--tts {choice.tts} clones from a recording, not a saved voice profile ({Path(sample_path).name})",
            "pass the voice recording itself (WAV/MP3) with --voice",
        )
    if not sample_text.strip():
        if transcribe is None:
            from avatar.asr.whisper import transcribe_file

            def transcribe(path: Path) -> str:
                return transcribe_file(path).text

        sample_text = transcribe(sample_path)
    if choice.tts == "cosyvoice-http":
        from voices.cosyvoice_http import CosyVoiceHTTPTTS

        url = choice.cosyvoice_url or os.environ.get("AVATAR_COSYVOICE_URL")
        if not url:
            raise InputError(
                "--tts cosyvoice-http needs --cosyvoice-url URL",
                "start CosyVoice's runtime/python/fastapi/server.py and pass e.g. http://127.0.0.1:50000",
            )
        return CosyVoiceHTTPTTS(
            url,
            reference_wav=sample_path,
            reference_text=sample_text,
            language=language,
            model_version=choice.cosyvoice_version,
        ).load()
    from voices.cosyvoice_local import CosyVoiceLocalTTS

    model_dir = choice.cosyvoice_model_dir or engine_dir(f"cosyvoice{choice.cosyvoice_version}")
    return CosyVoiceLocalTTS(
        choice.cosyvoice_checkout,
        model_dir,
        reference_wav=sample_path,
        reference_text=sample_text,
        language=language,
        fp16=choice.device.startswith("cuda"),
    ).load()


def wav2lip_checkpoint_path(choice: EngineChoice) -> Path:
    """The checkpoint file: the one given, or the registry's; a missing one names the fix."""
    if choice.wav2lip_checkpoint is not None:
        path = Path(choice.wav2lip_checkpoint).expanduser()
        if not path.is_file():
            raise EngineUnavailable(
                f"Wav2Lip checkpoint not found: {path}",
                f"run `avatar models download {choice.lipsync}` or give the .pth file's path",
            )
        return path
    return require_engine(choice.lipsync) / file_names(choice.lipsync)[0]
