"""Render one talking-head video: photo + (text | audio) -> H.264/AAC MP4.

The engines come from an `EngineSet` (avatar.engines.engine_set), which loads each one once and
keeps it for the next job, so the batch runner's worker processes and the web console pay model
loading once, not per video.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from avatar.core.errors import InputError
from avatar.core.types import EMOTIONS, FRAME_RATE_FPS, Speech
from avatar.engines.engine_set import EngineSet
from avatar.render.request import RenderRequest, RenderResult

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


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
    from lipsync.avatar_assets import check_photo_pixels

    check_photo_pixels(photo)  # a 40000x40000 PNG is refused from its header, before any engine loads
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
    inputs = {"photo": photo, "audio": request.audio_path, "voice sample": request.voice_sample_path}
    for role, source in inputs.items():
        if source is not None and same_file(output, Path(source)):
            raise InputError(
                f"the output {output.name} is the input {role} itself: it would be overwritten",
                "give another -o path",
            )


def same_file(a: Path, b: Path) -> bool:
    """The same file by path (resolved) or by identity (a link to it, another spelling)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def speech_from_text(request: RenderRequest, engines: EngineSet, progress: ProgressFn | None):
    """The script spoken the one way (`avatar.speech.speaker`): each sentence with its emotion, in the
    cloned voice or the embedded one (DSP-matched to `--voice`), wordless sentences left out."""
    import logging

    from avatar.core.audio_io import resample
    from avatar.core.text_script import parse_script, split_sentences
    from avatar.speech.assembly import assemble_speech
    from avatar.speech.speaker import AvatarVoice, speak_now
    from voices.language import detect_language

    segments = parse_script(request.text, default_emotion=request.emotion)
    if engines.choice.tts != "embedded":
        # a cloning engine speaks in the sample's own voice: no DSP matching on top
        language = request.language or detect_language(" ".join(s.text for s in segments))
        voice = AvatarVoice(cloned=engines.cloned_voice(request.voice_sample_path, language))
    else:
        matcher = None
        if request.voice_sample_path:
            from voices.voice_match import VoiceProfileMatcher

            matcher = VoiceProfileMatcher(engines.voice_profile(request.voice_sample_path))
        voice = AvatarVoice(engines.tts, language=request.language, matcher=matcher)

    def log_skip(skipped) -> None:
        logging.getLogger("avatar.render").info("left out %r: %s", skipped.text, skipped.reason)

    def synthesize(sentence: str, emotion: str) -> Speech | None:
        return speak_now(voice, sentence, emotion, on_skip=log_skip)

    def on_sentence(done: int, total: int) -> None:
        if progress is not None:
            progress("speech", done, total)

    return assemble_speech(segments, synthesize, split_sentences, resample, on_sentence)


def speech_from_audio(
    request: RenderRequest, engines: EngineSet
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
    request: RenderRequest, engines: EngineSet | None = None, progress: ProgressFn | None = None
) -> RenderResult:
    """The whole job. Raises InputError/EngineUnavailable with one-line messages; leaves no partial file."""
    from avatar.render.video_writer import write_mp4
    from lipsync.audio_features import frame_count_for

    validate_request(request)
    started = time.perf_counter()
    owned = engines is None
    engines = engines or EngineSet()
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
