"""The Render tab's fields as a RenderRequest, and render progress as one bar.

Kept out of webui.console so the Console class holds state and handlers only; everything here is
a plain function of the page's values.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from avatar.core.errors import InputError
from webui import formatting

ProgressFn = Callable[[float, str], None]  # (fraction 0-1, description)

DEFAULT_SIZE_PX = 512
MIN_SIZE_PX, MAX_SIZE_PX = 128, 1024
SPEECH_SHARE = 0.25  # of the progress bar, for the speech stage of a text render


def render_request(
    avatar, output: Path, source: str, text, audio: Path | None, emotion, language_choice, size_px, timing
):
    """The RenderRequest of the Render tab's fields for a library avatar (AvatarInputs)."""
    from avatar.render.request import RenderRequest

    size = int(size_px or DEFAULT_SIZE_PX)
    if not MIN_SIZE_PX <= size <= MAX_SIZE_PX:
        raise InputError(f"size {size} px is out of range", f"use {MIN_SIZE_PX}-{MAX_SIZE_PX} px")
    if source == "audio":
        if audio is None:
            raise InputError("upload or record the audio to lip-sync first")
        speech = {"audio_path": audio, "audio_timing": timing or "loudness"}
    else:
        if not (text or "").strip():
            raise InputError("type what the avatar should say", "e.g. [happy] Hello there!")
        voice, _transcript = avatar.voice_reference(cloning=False)  # the console speaks embedded
        speech = {"text": text, "voice_sample_path": voice}
    language = formatting.language_from_choice(language_choice)
    return RenderRequest(
        photo_path=avatar.photo_path,
        output_path=output,
        emotion=emotion or "neutral",
        language=language if language is not None else avatar.language,
        size_px=size,
        face_index=avatar.face_index,
        **speech,
    )


def progress_adapter(progress: ProgressFn | None, *, text_first: bool):
    """render_video's (stage, done, total) callback as one bar: speech first (a text render),
    then the frames."""
    speech_share = SPEECH_SHARE if text_first else 0.0

    def on_progress(stage: str, done: int, total: int) -> None:
        if progress is None or total <= 0:
            return
        if stage == "speech":
            progress(speech_share * done / total, f"synthesizing speech: sentence {done}/{total}")
        else:
            fraction = speech_share + (1 - speech_share) * done / total
            progress(fraction, f"rendering video: frame {done}/{total}")

    return on_progress
