"""Render one talking-head video: photo + (text | audio) -> H.264/AAC MP4.

`RenderEngines` loads each engine once and keeps it for the next job, so the batch runner's
worker processes and the web console pay model loading once, not per video.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from avatar.core.errors import InputError
from avatar.core.types import EMOTIONS, FRAME_RATE_FPS, Speech
from avatar.engines.choice import EngineChoice
from avatar.render.request import RenderRequest, RenderResult

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def _file_identity(path: Path) -> tuple[str, int, int]:
    """(resolved path, size, modification time in ns): changes whenever the file is replaced."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return (str(resolved), -1, -1)  # a missing file fails later with the loader's own error
    return (str(resolved), stat.st_size, stat.st_mtime_ns)


class RenderEngines:
    """Lazily loaded engines shared by consecutive jobs in one process."""

    def __init__(self, cache_dir: Path | None = None, choice: EngineChoice | None = None) -> None:
        self.cache_dir = cache_dir
        self.choice = choice or EngineChoice()
        self.choice.validate()
        self._tts = None
        self._cloned: dict[tuple, object] = {}
        self._profiles: dict[tuple[str, float], object] = {}
        self._renderers: dict[tuple, object] = {}
        self._landmarker = None
        self._asr = None
        self._phonemizer = None

    def asr(self):
        if self._asr is None:
            from avatar.asr.whisper import WhisperASR

            self._asr = WhisperASR().load()
        return self._asr

    def phonemizer(self):
        if self._phonemizer is None:
            from lipsync.recorded_phonemes import RecordedPhonemizer

            self._phonemizer = RecordedPhonemizer()
        return self._phonemizer

    def landmarker(self):
        if self._landmarker is None:
            from lipsync.face_landmarker import FaceLandmarker

            self._landmarker = FaceLandmarker()
        return self._landmarker

    def tts(self, language: str):
        if self._tts is None:
            from voices.tts_select import TTSSelector

            self._tts = TTSSelector()
        return self._tts.get(language)

    def cloned_voice(self, sample_path: Path | None, language: str):
        """The neural TTS of `choice.tts` in the voice of `sample_path` (CosyVoice needs to know what
        the sample says: --voice-text, else Whisper's transcript of it)."""
        key = (_file_identity(sample_path) if sample_path is not None else None, language)
        if key not in self._cloned:
            from avatar.core.audio_io import load_audio
            from avatar.engines.choice import cloned_voice_engine

            def transcribe(path: Path) -> str:  # the Whisper this process has loaded anyway
                return self.asr().transcribe(load_audio(path, sample_rate_hz=16000)).text

            self._cloned[key] = cloned_voice_engine(
                self.choice, sample_path, self.choice.voice_text or "", language, transcribe
            )
        return self._cloned[key]

    def voice_profile(self, sample_path: Path):
        key = _file_identity(sample_path)
        if key not in self._profiles:
            from voices.voice_profile import VoiceProfile, build_voice_profile

            path = Path(sample_path)
            # A saved profile (avatar voice-profile) is reused as is; a recording is analysed.
            if path.suffix.lower() == ".json":
                self._profiles[key] = VoiceProfile.load(path)
            else:
                self._profiles[key] = build_voice_profile(path, name=path.stem)
        return self._profiles[key]

    def renderer(self, photo_path: Path, size_px: int | None, face_index: int | None):
        # The file's identity, not only its path: a long-lived process (the web console) may see a
        # new photo saved under the same name, which must not reuse the old face.
        key = (*_file_identity(photo_path), size_px, face_index)
        if key not in self._renderers:
            from lipsync.avatar_assets import prepare_avatar
            from lipsync.procedural_renderer import ProceduralRenderer

            assets = prepare_avatar(
                photo_path,
                size_px,
                face_index,
                cache_dir=self.cache_dir,
                landmarker=self.landmarker(),
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
        if self._tts is not None:
            self._tts.close()
            self._tts = None
        for engine in self._cloned.values():
            engine.close()
        self._cloned.clear()
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None


def validate_request(request: RenderRequest) -> None:
    """Cheap checks before any engine loads, so a typo fails in milliseconds."""
    if (request.text is None) == (request.audio_path is None):
        raise InputError("give either --text or --audio (exactly one)")
    if request.text is not None and not request.text.strip():
        raise InputError("the text is empty", "give the words the avatar should say")
    if request.text is not None:
        from avatar.core.text_script import parse_script

        parse_script(request.text, default_emotion=request.emotion)  # unknown tags, over-long text
    photo = Path(request.photo_path)
    if not photo.is_file():
        raise InputError(
            f"photo not found: {photo}" if not photo.exists() else f"photo path is not a file: {photo}"
        )
    if request.audio_path is not None and not Path(request.audio_path).is_file():
        raise InputError(f"audio file not found: {request.audio_path}")
    if request.voice_sample_path is not None and not Path(request.voice_sample_path).is_file():
        raise InputError(f"voice sample not found: {request.voice_sample_path}")
    if request.audio_timing not in ("loudness", "asr"):
        raise InputError(f"unknown audio timing '{request.audio_timing}'", "use loudness or asr")
    if request.emotion not in EMOTIONS:
        raise InputError(f"unknown emotion '{request.emotion}'", f"use one of: {', '.join(EMOTIONS)}")
    if request.language not in (None, "en", "zh"):
        raise InputError(
            f"unsupported language '{request.language}'", "use en or zh, or leave it out to detect"
        )
    if request.audio_path is not None and request.voice_sample_path is not None:
        raise InputError("--voice applies to text only", "recorded --audio is used as it is")
    output = Path(request.output_path)
    if output.suffix.lower() != ".mp4":
        raise InputError(f"output must be an .mp4 file, got {output.name}")
    if output.is_dir():
        raise InputError(f"output path is a folder: {output}", "give a file name such as out.mp4")
    if not output.parent.exists():
        raise InputError(f"output folder does not exist: {output.parent}", "create it first")


def speech_from_text(request: RenderRequest, engines: RenderEngines, progress: ProgressFn | None):
    from avatar.core.audio_io import resample
    from avatar.core.text_script import parse_script, split_sentences
    from avatar.speech.assembly import assemble_speech
    from voices.language import detect_language

    segments = parse_script(request.text, default_emotion=request.emotion)
    if engines.choice.tts != "embedded":
        # a cloning engine speaks in the sample's own voice: no DSP matching on top
        language = request.language or detect_language(" ".join(s.text for s in segments))
        engine = engines.cloned_voice(request.voice_sample_path, language)
        profile = None

        def synthesize(sentence: str, emotion: str) -> Speech:
            return engine.synthesize(sentence, emotion=emotion)

    else:
        profile = engines.voice_profile(request.voice_sample_path) if request.voice_sample_path else None

        def synthesize(sentence: str, emotion: str) -> Speech:
            language = request.language or detect_language(sentence)
            return engines.tts(language).synthesize(sentence)

    transform = None
    if profile is not None:
        from voices.voice_match import match_voice

        def transform(speech: Speech) -> Speech:
            return match_voice(speech, profile)

    def on_sentence(done: int, total: int) -> None:
        if progress is not None:
            progress("speech", done, total)

    return assemble_speech(segments, synthesize, split_sentences, resample, transform, on_sentence)


def speech_from_audio(
    request: RenderRequest, engines: RenderEngines
) -> tuple[Speech, list[tuple[float, float, str]]]:
    """Recorded speech; optionally with phoneme timing from ASR word timestamps + g2p."""
    from avatar.core.audio_io import load_audio

    audio = load_audio(request.audio_path, sample_rate_hz=24000)
    spans = [(0.0, audio.duration_s + 1.0, request.emotion)]
    if request.audio_timing == "loudness":
        return Speech(audio), spans
    transcript, words = engines.asr().transcribe_words(audio, language=request.language)
    phonemes = engines.phonemizer().phonemes(words, transcript.language, audio)
    return Speech(audio, transcript.text, transcript.language, phonemes), spans


def render_video(
    request: RenderRequest, engines: RenderEngines | None = None, progress: ProgressFn | None = None
) -> RenderResult:
    """The whole job. Raises InputError/EngineUnavailable with one-line messages; leaves no partial file."""
    from avatar.render.video_writer import write_mp4
    from lipsync.audio_features import frame_count_for

    validate_request(request)
    started = time.perf_counter()
    owned = engines is None
    engines = engines or RenderEngines()
    try:
        renderer = engines.renderer(request.photo_path, request.size_px, request.face_index)
        if request.text is not None:
            assembled = speech_from_text(request, engines, progress)
            speech, spans = assembled.speech, assembled.emotion_spans
        else:
            speech, spans = speech_from_audio(request, engines)
        total = frame_count_for(len(speech.audio.pcm), speech.audio.sample_rate_hz, FRAME_RATE_FPS)

        def frames():
            for index, frame in enumerate(renderer.render(speech, spans)):
                if progress is not None and (index % 5 == 0 or index + 1 == total):
                    progress("video", index + 1, total)
                yield frame

        write_mp4(frames(), speech.audio, Path(request.output_path), fps=FRAME_RATE_FPS)
        return RenderResult(
            output_path=Path(request.output_path),
            duration_s=total / FRAME_RATE_FPS,
            frame_count=total,
            render_time_s=time.perf_counter() - started,
            notes=tuple(renderer.assets.notes),
        )
    finally:
        if owned:
            engines.close()
