"""What one render job asks for, shared by the CLI, the batch runner and the web console.

A plain frozen dataclass so a job can be read from a manifest line, validated, pickled to a
worker process and reported back without importing any engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RenderRequest:
    """One talking-head video to make: a photo plus either text to speak or audio to mouth."""

    photo_path: Path
    output_path: Path
    text: str | None = None
    audio_path: Path | None = None
    voice_sample_path: Path | None = None  # 3-30 s recording: DSP voice matching toward it
    emotion: str = "neutral"  # expression when the text has no inline [tags]
    language: str | None = None  # "en" / "zh"; None = detect from the text
    size_px: int | None = None  # longest side of the output; None = keep the photo's size
    face_index: int | None = None  # which face when the photo has several (0 = largest)
    # Recorded audio: "loudness" drives the mouth from the signal; "asr" adds phoneme timing from
    # Whisper word timestamps + g2p (measured no better on GRID clips yet: see docs/measurements).
    audio_timing: str = "loudness"


@dataclass(frozen=True)
class RenderResult:
    """What was written, for progress reports and batch summaries."""

    output_path: Path
    duration_s: float
    frame_count: int
    render_time_s: float
    notes: tuple[str, ...] = ()  # e.g. "2 faces found, used the largest"
