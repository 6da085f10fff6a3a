"""Lip-sync and expression measured on rendered MP4s, as a viewer's face tracker sees them.

    .venv/bin/python bench/lipsync_measure.py [--lipsync-only]

For each text: render through the whole pipeline (TTS -> renderer -> MP4), decode the MP4, run the
face landmarker on every frame, and compare the mouth opening with the decoded audio's RMS
envelope (Pearson correlation at the best lag within +-5 frames), and check the mouth is closed
where the audio is silent. Then smile blendshapes of [happy] vs [neutral] renders per photo.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("LIPSYNC_FROM"):  # another copy of lipsync/, for the before/after comparison
    sys.path.insert(0, os.environ["LIPSYNC_FROM"])
EVAL_FACES = ROOT.parent / "shared" / "eval" / "faces"
SILENT_CLOSED_BELOW = 0.012  # inner-lip gap / face height under which a mouth counts as closed

TEXTS = [
    ("en", "Hello there. My name is Mona, and I am glad to meet you."),
    ("en", "Please remember to bring your passport. [pause 1s] The bus leaves at nine."),
    ("en", "Peter picked a bunch of purple plums, but Bob ate them all."),
    ("zh", "大家好，欢迎来到我们的直播间。今天给大家介绍三款新产品。"),
    ("zh", "明天下午我们一起去看电影吧。"),
]
PHOTOS = [
    "sample_portrait.jpg",
    "female_astronaut_eileen_collins.png",
    "male_older_biden_official_portrait.jpg",
    "female_older_grid_lwbsza_frame.png",
    "male_glasses_grid_lbax4n_frame.png",
]


def main() -> int:
    from avatar.engines.engine_set import EngineSet
    from avatar.render.job import render_video
    from avatar.render.request import RenderRequest
    from lipsync.face_landmarker import FaceLandmarker
    from tests.support.lipsync_measure import best_lag_correlation, measure_frames, rms_envelope, smile_score
    from tests.support.media_probe import read_audio, read_video_frames

    engines = EngineSet()
    photo = ROOT / "assets" / "sample_portrait.jpg"
    try:
        with tempfile.TemporaryDirectory() as tmp, FaceLandmarker() as landmarker:
            print(
                "| lang | text | frames | corr at lag 0 | corr at best lag | best lag (frames) | "
                "silent frames closed (gap < 1.2% face h) | max opening in silence (% face h) | max opening (% face h) |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for index, (lang, text) in enumerate(TEXTS):
                out = Path(tmp) / f"t{index}.mp4"
                render_video(RenderRequest(photo, out, text=text, language=lang, size_px=512), engines)
                frames = list(read_video_frames(out))
                audio = read_audio(out)
                openings, _ = measure_frames(frames, landmarker)
                envelope = rms_envelope(audio.pcm, audio.sample_rate_hz, 25, len(frames))
                lag, corr = best_lag_correlation(openings, envelope)
                _, corr0 = best_lag_correlation(openings, envelope, max_lag=0)
                quiet = envelope < 0.02 * envelope.max()
                closed = float(np.mean(openings[quiet] < SILENT_CLOSED_BELOW))
                print(
                    f"| {lang} | {text} | {len(frames)} | {corr0:.2f} | {corr:.2f} | {lag:+d} | {100 * closed:.0f}% | "
                    f"{100 * np.nanmax(openings[quiet]):.2f} | {100 * np.nanmax(openings):.2f} |"
                )
            if "--lipsync-only" in sys.argv:  # expressions per face: bench/face_expressions.py
                return 0
            print()
            print("| photo | smile, [neutral] render | smile, [happy] render | gain |")
            print("|---|---|---|---|")
            for name in PHOTOS:
                path = ROOT / "assets" / name if name.startswith("sample") else EVAL_FACES / name
                if not path.is_file():
                    continue
                scores = {}
                for emotion in ("neutral", "happy"):
                    out = Path(tmp) / f"{emotion}.mp4"
                    render_video(
                        RenderRequest(
                            path,
                            out,
                            text="I am so glad to see you again, my friend.",
                            emotion=emotion,
                            size_px=512,
                        ),
                        engines,
                    )
                    frames = list(read_video_frames(out))[25:]  # after the expression blended in
                    _, shapes = measure_frames(frames, landmarker)
                    scores[emotion] = float(np.mean([smile_score(s) for s in shapes if s]))
                print(
                    f"| {name} | {scores['neutral']:.2f} | {scores['happy']:.2f} | {scores['happy'] - scores['neutral']:+.2f} |"
                )
    finally:
        engines.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
