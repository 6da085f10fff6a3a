"""Silero VAD on real speech: onset and end error, confirmation latency, compute cost.

    .venv/bin/python bench/vad_latency.py [--pad-before-s 1.0] [--pad-after-s 1.5] [--chunk-ms 20]

Each eval speech clip is padded with digital silence, streamed through `SileroVAD` in chunks (as
a microphone would deliver it) and compared with a reference taken from the signal energy:
onset error = VAD speech start - reference onset, end error = VAD speech end - reference end
(positive = late). Confirmation latency = confirmed_at_s - time_s of the start event, i.e. how
long after the real onset barge-in could fire. Real-time factor = wall seconds of VAD compute
per second of audio, on one thread (the VAD's ONNX session is single-threaded by design).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from tests.support.live_probe_analysis import speech_bounds

ROOT = Path(__file__).resolve().parents[1]
SPEECH_DIR = ROOT.parent / "shared" / "eval" / "speech"
SPEECH_CLIPS = (
    "en_male_jfk.flac",
    "en_female_ljspeech_LJ050-0131.wav",
    "en_female_librispeech_1995-1837-0001.wav",
    "zh_female_cosyvoice_zero_shot_prompt.wav",
    "zh_male_cosyvoice_cross_lingual_prompt.wav",
    "zh_male_funasr_asr_example.wav",
    "zh_female_aishell1_BAC009S0724W0121.wav",
)
NON_SPEECH_CLIPS = (
    "event_applause_freesound_119028.wav",
    "event_crowd_cheering_freesound_365132.wav",
    "event_laughter_esc50_4-132816-A.wav",
)


def speech_bounds_by_energy(pcm: np.ndarray, sample_rate_hz: int) -> tuple[float, float]:
    """Reference (onset_s, end_s) of the sound in a clip, from its energy, independent of the VAD:
    the live benchmark's rule (`tests.support.live_probe_analysis.speech_bounds`), in seconds."""
    onset, end = speech_bounds(np.asarray(pcm, np.float32), sample_rate_hz)
    return onset / sample_rate_hz, end / sample_rate_hz


def stream_through_vad(vad, pcm: np.ndarray, sample_rate_hz: int, chunk_samples: int) -> tuple[list, float]:
    """Feed `pcm` chunk by chunk as a live source would; return the events and the compute seconds."""
    from avatar.core.types import AudioChunk

    vad.reset()
    events = []
    started = time.perf_counter()
    for offset in range(0, len(pcm), chunk_samples):
        events += vad.process(AudioChunk(pcm[offset : offset + chunk_samples], sample_rate_hz))
    events += vad.flush()
    return events, time.perf_counter() - started


def padded(pcm: np.ndarray, sample_rate_hz: int, before_s: float, after_s: float) -> np.ndarray:
    silence_before = np.zeros(round(before_s * sample_rate_hz), dtype=np.float32)
    silence_after = np.zeros(round(after_s * sample_rate_hz), dtype=np.float32)
    return np.concatenate([silence_before, pcm, silence_after])


def measure_clip(vad, path: Path, args) -> dict:
    from avatar.core.audio_io import load_audio

    pcm = load_audio(path, 16000).pcm
    onset_s, end_s = speech_bounds_by_energy(pcm, 16000)
    stream = padded(pcm, 16000, args.pad_before_s, args.pad_after_s)
    events, compute_s = stream_through_vad(vad, stream, 16000, round(args.chunk_ms * 16))
    starts = [event for event in events if event.kind == "speech_start"]
    ends = [event for event in events if event.kind == "speech_end"]
    row = {
        "clip": path.name,
        "audio_s": len(stream) / 16000,
        "segments": len(starts),
        "rtf": compute_s / (len(stream) / 16000),
    }
    if starts:
        row["onset_error_ms"] = 1000 * (starts[0].time_s - (args.pad_before_s + onset_s))
        row["end_error_ms"] = 1000 * (ends[-1].time_s - (args.pad_before_s + end_s))
        row["confirm_ms"] = 1000 * (starts[0].confirmed_at_s - starts[0].time_s)
        row["end_confirm_ms"] = 1000 * (ends[-1].confirmed_at_s - ends[-1].time_s)
    return row


def resampled_rtf(vad, path: Path, sample_rate_hz: int, chunk_ms: float) -> float:
    """Compute per audio second when the input arrives at another rate (WebRTC mics: 48 kHz)."""
    from avatar.core.audio_io import load_audio

    pcm = load_audio(path, sample_rate_hz).pcm
    _, compute_s = stream_through_vad(vad, pcm, sample_rate_hz, round(chunk_ms * sample_rate_hz / 1000))
    return compute_s / (len(pcm) / sample_rate_hz)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pad-before-s", type=float, default=1.0)
    parser.add_argument("--pad-after-s", type=float, default=1.5)
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from machine_info import describe_machine

    from avatar.turns.vad_silero import SileroVAD

    if not SPEECH_DIR.is_dir():
        print(f"eval speech not found at {SPEECH_DIR}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    vad = SileroVAD().load()
    load_s = time.perf_counter() - started
    print(f"machine: {describe_machine()}")
    print(
        f"model load: {load_s * 1000:.0f} ms; chunks of {args.chunk_ms:g} ms at 16 kHz; "
        f"padding {args.pad_before_s:g} s before, {args.pad_after_s:g} s after; "
        f"start {vad.start_threshold}/end {vad.end_threshold}, min speech "
        f"{vad.min_speech_samples / 16:.0f} ms, min silence {vad.min_silence_samples / 16:.0f} ms\n"
    )
    print(
        "| clip | segments | onset error ms | end error ms | start confirmed after ms | end confirmed after ms | RTF |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = [measure_clip(vad, SPEECH_DIR / name, args) for name in SPEECH_CLIPS]
    for row in rows:
        print(
            f"| {row['clip']} | {row['segments']} | {row['onset_error_ms']:+.0f} | {row['end_error_ms']:+.0f} "
            f"| {row['confirm_ms']:.0f} | {row['end_confirm_ms']:.0f} | {row['rtf']:.4f} |"
        )
    onset = [abs(row["onset_error_ms"]) for row in rows]
    ends = [abs(row["end_error_ms"]) for row in rows]
    print(
        f"\n|onset error|: median {statistics.median(onset):.0f} ms, max {max(onset):.0f} ms; "
        f"|end error|: median {statistics.median(ends):.0f} ms, max {max(ends):.0f} ms; "
        f"RTF median {statistics.median(row['rtf'] for row in rows):.4f} "
        f"(= {1 / statistics.median(row['rtf'] for row in rows):.0f}x faster than real time, one thread)"
    )
    rtf_48k = resampled_rtf(vad, SPEECH_DIR / SPEECH_CLIPS[0], 48000, args.chunk_ms)
    print(f"RTF with 48 kHz input (streaming resampler included): {rtf_48k:.4f}\n")
    print("| non-speech clip | segments | seconds flagged as speech | of clip s | max probability |")
    print("|---|---|---|---|---|")
    for name in NON_SPEECH_CLIPS:
        row = measure_clip_non_speech(vad, SPEECH_DIR / name, args)
        print(f"| {name} | {row[0]} | {row[1]:.2f} | {row[2]:.2f} | {row[3]:.2f} |")
    return 0


def measure_clip_non_speech(vad, path: Path, args) -> tuple[int, float, float, float]:
    from avatar.core.audio_io import load_audio

    pcm = load_audio(path, 16000).pcm
    stream = padded(pcm, 16000, args.pad_before_s, args.pad_after_s)
    events, _ = stream_through_vad(vad, stream, 16000, round(args.chunk_ms * 16))
    starts = [event.time_s for event in events if event.kind == "speech_start"]
    ends = [event.time_s for event in events if event.kind == "speech_end"]
    flagged_s = sum(end - start for start, end in zip(starts, ends, strict=True))
    return len(starts), flagged_s, len(pcm) / 16000, float(vad.probabilities.max())


if __name__ == "__main__":
    raise SystemExit(main())
