"""Lip-sync against real talking faces (GRID clips in ../shared/eval/video).

    .venv/bin/python bench/lipsync_ground_truth.py

For each clip: take its first frame as the photo, drive the procedural renderer with the clip's
own audio, run the face landmarker on the real video and on the render, and compare the two
mouth-opening series (Pearson correlation at lag 0 and best lag within +-1 frame, and mean
absolute error in % of face height). Three drivers are compared: loudness alone, phoneme timing
spread over the embedded ASR's word timestamps (grapheme-to-phoneme), and the same words force-
aligned to the embedded voice saying them (lipsync/forced_align.py). SERIES_JSON=path writes the
per-frame openings. A second table splits each error into the frames before the voice starts,
while it speaks, and after it stops (where the error comes from: breath, articulation, rest).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("LIPSYNC_FROM"):  # another copy of lipsync/, for the before/after comparison
    sys.path.insert(0, os.environ["LIPSYNC_FROM"])
EVAL = ROOT.parent / "shared" / "eval" / "video"
CLIPS = ("grid_lrwp9a.mp4", "grid_swiz3n.mp4")


def main() -> int:
    from avatar.asr.whisper import WhisperASR
    from avatar.core.types import Speech
    from lipsync.avatar_assets import AvatarAssets
    from lipsync.face_landmarker import FaceLandmarker
    from lipsync.procedural_renderer import ProceduralRenderer
    from lipsync.recorded_phonemes import RecordedPhonemizer
    from tests.support.lipsync_measure import best_lag_correlation, change_error, measure_frames
    from tests.support.media_probe import read_audio, read_video_frames

    if not EVAL.is_dir():
        print(f"evaluation clips not found in {EVAL}")
        return 1
    asr = WhisperASR().load()
    phonemizer = RecordedPhonemizer()
    aligner = None
    try:  # the forced aligner takes a reference voice (absent in older copies of lipsync/)
        from voices.piper_tts import PiperTTS

        voice = PiperTTS(sampling_noise=False).load()
        aligner = RecordedPhonemizer(reference_voice=lambda text, language: voice.synthesize(text))
    except TypeError:
        pass
    series = {}
    rows, splits = [], []
    with FaceLandmarker() as landmarker:
        for name in CLIPS:
            frames = list(read_video_frames(EVAL / name))
            audio = read_audio(EVAL / name)
            truth, _ = measure_frames(frames, landmarker)
            first = frames[0][: frames[0].shape[0] // 2 * 2, : frames[0].shape[1] // 2 * 2]
            face = landmarker.detect(first)[0]
            assets = AvatarAssets(first, face.landmarks_px, face.blendshapes, "grid")
            renderer = ProceduralRenderer(assets, seed=0)
            transcript, words = asr.transcribe_words(audio, language="en")
            drivers = {
                "loudness only": Speech(audio),
                "ASR words + g2p": Speech(audio, phonemes=phonemizer.phonemes(words, "en", audio)),
            }
            if aligner is not None:
                aligned = aligner.phonemes(words, "en", audio)
                drivers["ASR + forced alignment"] = Speech(audio, phonemes=aligned)
            series[name] = {"truth": truth.tolist()}
            for driver, speech in drivers.items():
                rendered, _ = measure_frames((renderer.draw(w) for w in renderer.plan(speech)), landmarker)
                n = min(len(truth), len(rendered))
                t, r = truth[:n], rendered[:n]
                ok = np.isfinite(t) & np.isfinite(r)
                # The photo's own opening is the baseline of the real video; compare changes.
                corr0 = float(np.corrcoef(t[ok], r[ok])[0, 1])
                lag, corr = best_lag_correlation(r, t, max_lag=1)
                mae = change_error(r, t) * 100
                rows.append((name, transcript.text, driver, corr0, lag, corr, mae))
                splits.append((name, driver, error_split(r, t, voice_frames(audio, n))))
                series[name][driver] = rendered.tolist()
    if os.environ.get("SERIES_JSON"):  # per-frame openings, for plots and analysis
        Path(os.environ["SERIES_JSON"]).write_text(json.dumps(series))
    print(
        "| clip | ASR transcript | driver | corr at lag 0 | best lag (frames) | corr at best lag | mean abs error (% face height) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, text, driver, corr0, lag, corr, mae in rows:
        print(f"| {name} | {text} | {driver} | {corr0:.2f} | {lag:+d} | {corr:.2f} | {mae:.2f} |")
    print()
    print("Error split (share of the mean abs error, % face height; signed mean: + = render more open)")
    print()
    print("| clip | driver | before the voice | while speaking | after the voice |")
    print("|---|---|---|---|---|")
    for name, driver, parts in splits:
        cells = " | ".join(f"{share:.2f} ({signed:+.1f})" for share, signed in parts)
        print(f"| {name} | {driver} | {cells} |")
    return 0


def voice_frames(audio, frame_count: int, fps: int = 25) -> np.ndarray:
    """Frames where the 150-8000 Hz band is within 30 dB of its loud level: the voice, not the
    hum below it nor a breath (a breath is 40-55 dB below the voice on GRID)."""
    hop = audio.sample_rate_hz / fps
    level_db = np.full(frame_count, -120.0)
    for k in range(frame_count):
        chunk = audio.pcm[int(k * hop) : int((k + 1) * hop)]
        if len(chunk):
            spectrum = np.abs(np.fft.rfft(chunk)) ** 2
            freqs = np.fft.rfftfreq(len(chunk), 1.0 / audio.sample_rate_hz)
            power = spectrum[(freqs >= 150) & (freqs < 8000)].sum() / len(chunk) ** 2
            level_db[k] = 10 * np.log10(power + 1e-12)
    return level_db > np.percentile(level_db, 90) - 30.0


def error_split(rendered: np.ndarray, truth: np.ndarray, voice: np.ndarray) -> list[tuple[float, float]]:
    """(share of the mean abs error, signed mean error) before, during and after the voice, in %."""
    error = (rendered - rendered[0]) - (truth - truth[0])
    error = np.where(np.isfinite(error), error, 0.0) * 100
    speaking = np.flatnonzero(voice)
    first, last = (int(speaking[0]), int(speaking[-1]) + 1) if len(speaking) else (len(error), len(error))
    parts = (error[:first], error[first:last], error[last:])
    return [(float(np.abs(p).sum() / len(error)), float(p.mean()) if len(p) else 0.0) for p in parts]


if __name__ == "__main__":
    sys.exit(main())
