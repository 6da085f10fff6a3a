"""Lip-sync against real talking faces (GRID clips in ../shared/eval/video).

    .venv/bin/python bench/lipsync_ground_truth.py

For each clip: take its first frame as the photo, drive the procedural renderer with the clip's
own audio, run the face landmarker on the real video and on the render, and compare the two
mouth-opening series (Pearson correlation at lag 0 and best lag within +-1 frame, and mean
absolute error in % of face height). Three drivers are compared: loudness alone, phoneme timing
spread over the embedded ASR's word timestamps (grapheme-to-phoneme), and the same words force-
aligned to the embedded voice saying them (lipsync/forced_align.py). SERIES_JSON=path writes the
per-frame openings.
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
    from tests.support.lipsync_measure import best_lag_correlation, measure_frames
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
    rows = []
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
                mae = float(np.mean(np.abs((t[ok] - t[ok][0]) - (r[ok] - r[ok][0])))) * 100
                rows.append((name, transcript.text, driver, corr0, lag, corr, mae))
                series[name][driver] = rendered.tolist()
    if os.environ.get("SERIES_JSON"):  # per-frame openings, for plots and analysis
        Path(os.environ["SERIES_JSON"]).write_text(json.dumps(series))
    print(
        "| clip | ASR transcript | driver | corr at lag 0 | best lag (frames) | corr at best lag | mean abs error (% face height) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, text, driver, corr0, lag, corr, mae in rows:
        print(f"| {name} | {text} | {driver} | {corr0:.2f} | {lag:+d} | {corr:.2f} | {mae:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
