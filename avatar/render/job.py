"""Render one talking-head video: photo + (text | audio) -> H.264/AAC MP4.

The engines come from an `EngineSet` (avatar.engines.engine_set), which loads each one once and
keeps it for the next job, so the batch runner's worker processes and the web console pay model
loading once, not per video.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from avatar.core.errors import AvatarError, EngineFailed, InputError
from avatar.core.types import EMOTIONS, FRAME_RATE_FPS, Speech
from avatar.engines.engine_set import EngineSet
from avatar.render.request import RenderRequest, RenderResult

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)
AUDIO_RATE_HZ = 24000  # recordings are lip-synced at this rate (a whole number of samples a frame)
MAX_AUDIO_S = 4 * 3600.0  # memory no longer limits a recording; disk and patience still do


def validate_request(request: RenderRequest) -> None:
    """Cheap checks before any engine loads, so a typo fails in milliseconds."""
    if (request.text is None) == (request.audio_path is None):
        raise InputError("give either --text or --audio (exactly one)")
    if request.text is not None and not request.text.strip():
        raise InputError("the text is empty", "give the words the avatar should say")
    if request.text is not None:
        from avatar.core.text_script import parse_script

        parse_script(request.text, default_emotion=request.emotion)  # unknown tags, over-long text
    if request.size_px is not None and not 64 <= request.size_px <= 4096:  # as lipsync's fit_to_size
        # checked here, before the photo is decoded (and, in a batch, before a worker starts)
        raise InputError(
            f"--size {request.size_px} is out of range", "use 64..4096 pixels for the longest side"
        )
    photo = Path(request.photo_path)
    if not photo.is_file():
        raise InputError(
            f"photo not found: {photo}" if not photo.exists() else f"photo path is not a file: {photo}"
        )
    from lipsync.avatar_assets import DEFAULT_MAX_SIDE_PX, check_photo_pixels

    # a 40000x40000 PNG is refused from its header, before any engine loads
    check_photo_pixels(photo, request.size_px or DEFAULT_MAX_SIDE_PX)
    require_image_reader(photo)
    if request.audio_path is not None:
        from avatar.core.audio_io import check_audio_duration

        # from the container's header: a 9-hour file is refused before a sample is decoded
        check_audio_duration(request.audio_path, MAX_AUDIO_S)
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


def require_image_reader(photo: Path) -> None:
    """Refuse a file that neither Pillow nor OpenCV recognises as an image (a text file named
    .jpg) from its first bytes: the photo is decoded only after the speech is synthesised, so it
    was found 4 s and a TTS load later."""
    import warnings

    import cv2
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(photo):
                return
        except Exception:  # any failure to identify: OpenCV has the last word, as in read_photo
            pass
    if not cv2.haveImageReader(str(photo)):
        raise InputError(
            f"cannot read {photo.name} as an image (corrupt or not a photo)",
            "use a JPEG, PNG or WebP portrait",
        )


def same_file(a: Path, b: Path) -> bool:
    """The same file by path (resolved) or by identity (a link to it, another spelling)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def text_voice(request: RenderRequest, engines: EngineSet) -> Callable[[str, str], Speech | None]:
    """`synthesize(sentence, emotion)` the one way (`avatar.speech.speaker`): in the cloned voice
    or the embedded one (DSP-matched to `--voice`), wordless sentences left out (None)."""
    import logging

    from avatar.speech.speaker import AvatarVoice, speak_now
    from voices.language import detect_language

    if engines.choice.tts != "embedded":
        # a cloning engine speaks in the sample's own voice: no DSP matching on top
        from avatar.core.text_script import parse_script

        segments = parse_script(request.text, default_emotion=request.emotion)
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

    return synthesize


def speech_from_text(request: RenderRequest, engines: EngineSet, progress: ProgressFn | None):
    """The whole script as one Speech (an AssembledSpeech with its emotion spans); `render_video`
    itself speaks it window by window instead, so its memory does not grow with the text."""
    from avatar.core.audio_io import resample
    from avatar.core.text_script import parse_script, split_sentences
    from avatar.speech.assembly import assemble_speech

    segments = parse_script(request.text, default_emotion=request.emotion)

    def on_sentence(done: int, total: int) -> None:
        if progress is not None:
            progress("speech", done, total)

    return assemble_speech(segments, text_voice(request, engines), split_sentences, resample, on_sentence)


def speech_from_audio(
    request: RenderRequest, engines: EngineSet
) -> tuple[Speech, list[tuple[float, float, str]]]:
    """The whole recording as one Speech; optionally with phoneme timing from ASR word timestamps
    + g2p. `render_video` reads the recording window by window instead."""
    from avatar.core.audio_io import load_audio

    audio = load_audio(request.audio_path, sample_rate_hz=AUDIO_RATE_HZ, max_duration_s=MAX_AUDIO_S)
    spans = [(0.0, audio.duration_s + 1.0, request.emotion)]
    if request.audio_timing == "loudness":
        return Speech(audio), spans
    return _with_asr_timing(Speech(audio), request, engines), spans


def _with_asr_timing(speech: Speech, request: RenderRequest, engines: EngineSet) -> Speech:
    audio = speech.audio
    transcript, words = engines.asr().transcribe_words(audio, language=request.language)
    phonemes = engines.phonemizer().phonemes(words, transcript.language, audio)
    return Speech(audio, transcript.text, transcript.language, phonemes)


def speech_windows(request: RenderRequest, engines: EngineSet, estimate: RenderEstimate):
    """The job's speech as `avatar.render.windows.SpeechWindow`s, produced as they are rendered."""
    from avatar.render.windows import AUDIO_BLOCK_S, audio_windows, text_windows

    if request.text is not None:
        from avatar.core.audio_io import resample
        from avatar.core.text_script import parse_script, split_sentences
        from avatar.speech.assembly import lay_out_pieces

        segments = parse_script(request.text, default_emotion=request.emotion)
        pieces = lay_out_pieces(
            segments, text_voice(request, engines), split_sentences, resample, estimate.sentence_done
        )
        yield from text_windows(pieces, FRAME_RATE_FPS)
        return
    from avatar.core.audio_io import audio_has_sound, iter_audio, probe_audio

    info = probe_audio(request.audio_path)
    estimate.known_duration(info.duration_s)
    if not audio_has_sound(request.audio_path, max_duration_s=MAX_AUDIO_S):
        raise InputError(
            f"audio file contains only silence (peak below -50 dBFS): {request.audio_path}",
            "check the microphone or pick another file",
        )
    blocks = iter_audio(request.audio_path, AUDIO_RATE_HZ, block_s=AUDIO_BLOCK_S, max_duration_s=MAX_AUDIO_S)
    for window in audio_windows(blocks, AUDIO_RATE_HZ, FRAME_RATE_FPS, request.emotion):
        if request.audio_timing == "asr":
            window = replace(window, speech=_with_asr_timing(window.speech, request, engines))
        yield window


class RenderEstimate:
    """How many frames the whole video will have, for progress and the ETA: from the container's
    duration for a recording, extrapolated from the sentences spoken so far for a text."""

    def __init__(self) -> None:
        self.total_frames: int | None = None
        self.frames_done = 0
        self._sentences = (0, 0)  # (done, total)

    def known_duration(self, duration_s: float | None) -> None:
        if duration_s:
            self.total_frames = max(1, round(duration_s * FRAME_RATE_FPS))

    def sentence_done(self, done: int, total: int) -> None:
        self._sentences = (done, total)

    def total(self, laid_out_frames: int) -> int:
        done, total = self._sentences
        if total and done:
            return max(self.frames_done, round(laid_out_frames * total / done))
        return max(self.frames_done, self.total_frames or laid_out_frames)


def checked_video_frames(frames: Iterator[np.ndarray], shape: tuple[int, int, int]) -> Iterator[np.ndarray]:
    """The renderer's frames, each checked (`checked_frames`): a renderer that raises or draws a
    frame of another size or type ends the render with one line naming the lip-sync stage, not
    with an encoder's complaint (or a traceback) far from the cause."""
    from avatar.playout.letterbox import checked_frames

    iterator = iter(frames)
    while True:
        try:
            frame = next(iterator, None)
        except AvatarError:
            raise
        except Exception as error:  # the renderer's bug: the job ends, named, with no partial file
            raise EngineFailed("lip-sync", f"{type(error).__name__}: {error}") from error
        if frame is None:
            return
        yield checked_frames([frame], 1, shape)[0]


def render_video(
    request: RenderRequest, engines: EngineSet | None = None, progress: ProgressFn | None = None
) -> RenderResult:
    """The whole job, window by window (`avatar.render.windows`): memory stays the same for a
    minute or an hour. Raises InputError/EngineUnavailable with one-line messages; the MP4
    appears whole or not at all (no partial file on an error or Ctrl-C). `progress("video",
    frames_done, frames_total)` is called as frames are written; the total is an estimate that
    becomes exact with the last window."""
    from avatar.core.heap_trim import fix_mmap_threshold, limit_malloc_arenas, load_malloc_trim
    from avatar.render.video_writer import Mp4Writer, check_output_path, find_ffmpeg
    from avatar.render.windows import window_frames
    from lipsync.face_motion import IdleMotion

    validate_request(request)
    check_output_path(Path(request.output_path))  # before any engine loads or sentence is spoken
    find_ffmpeg()
    # Piper's onnxruntime threads allocate at once; glibc then gives each its own malloc arena,
    # which keeps its freed memory: measured, Piper alone stepped 467 -> 629 MB after 4 minutes of
    # speech and a 60-minute text render 735 -> 886 MB, flat at 474 MB with two arenas
    # (docs/measurements/long_renders.md). Set before the engines start their threads.
    limit_malloc_arenas()
    fix_mmap_threshold()  # large buffers mapped and unmapped, never left to fragment the heap
    started = time.perf_counter()
    owned = engines is None
    engines = engines or EngineSet()
    try:
        renderer = engines.renderer(request.photo_path, request.size_px, request.face_index)
        motion = IdleMotion(renderer.fps, getattr(renderer, "seed", 0))
        estimate = RenderEstimate()
        writer: Mp4Writer | None = None
        width, height = renderer.size_wh
        trim_heap = load_malloc_trim()
        try:
            for window in speech_windows(request, engines, estimate):
                if writer is None:
                    rate_hz = window.speech.audio.sample_rate_hz
                    writer = Mp4Writer(
                        request.output_path, width, height, FRAME_RATE_FPS, audio_sample_rate_hz=rate_hz
                    )
                    writer.open()
                writer.write_audio(window.speech.audio.pcm)
                total = estimate.total(window.start_frame + window.frame_count)
                for frame in checked_video_frames(
                    window_frames(renderer, window, motion), (height, width, 3)
                ):
                    writer.write(frame)
                    estimate.frames_done += 1
                    if progress is not None and estimate.frames_done % 5 == 0:
                        progress("video", estimate.frames_done, total)
                if trim_heap is not None:  # hand each window's freed buffers back (~ms); see heap_trim
                    trim_heap(0)
            if writer is None:
                raise InputError("there is no speech to render", "the audio is probably empty")
            written = writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if progress is not None:
            progress("video", written.frame_count, written.frame_count)
        return RenderResult(
            output_path=Path(request.output_path),
            duration_s=written.duration_s,
            frame_count=written.frame_count,
            render_time_s=time.perf_counter() - started,
            notes=tuple(renderer.assets.notes),
        )
    finally:
        if owned:
            engines.close()
