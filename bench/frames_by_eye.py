"""Save rendered frames as PNG for a look by eye (and the README picture).

    .venv/bin/python bench/frames_by_eye.py [--photo PHOTO] [--out docs/images]

Renders the sample text once per emotion, measures the mouth opening of every frame with the
face landmarker, and saves face crops of the most closed and the most open frame of each emotion:
the 2x2 `demo_frames.png` (neutral/happy x closed/open, eyes open) and `emotions_open.png`
(every emotion, mouth open).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = "Hello! I am glad to see you. Papa made bread for me."


def crop_face(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    pad = int(0.25 * (x1 - x0))
    return frame[max(y0 - pad, 0) : y1 + pad, max(x0 - pad, 0) : x1 + pad]


def main() -> int:
    import cv2

    from avatar.core.types import EMOTIONS
    from avatar.engines.engine_set import EngineSet
    from avatar.render.job import render_video
    from avatar.render.request import RenderRequest
    from lipsync.face_landmarker import FaceLandmarker
    from tests.support.lipsync_measure import measure_frames
    from tests.support.media_probe import read_video_frames

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photo", type=Path, default=ROOT / "assets" / "sample_portrait.jpg")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    engines = EngineSet()
    pairs = {}
    box = None
    try:
        with tempfile.TemporaryDirectory() as tmp, FaceLandmarker() as landmarker:
            for emotion in EMOTIONS:
                video = Path(tmp) / f"{emotion}.mp4"
                render_video(
                    RenderRequest(args.photo, video, text=TEXT, emotion=emotion, size_px=512), engines
                )
                frames = list(read_video_frames(video))
                openings, shapes = measure_frames(frames, landmarker)
                blink = np.array([s.get("eyeBlinkLeft", 1) + s.get("eyeBlinkRight", 1) for s in shapes])
                if box is None:  # one crop box for all emotions so the pictures line up
                    box = tuple(int(v) for v in landmarker.detect(frames[0])[0].box_xyxy)
                settled = np.arange(len(frames)) > 15  # after the expression has blended in
                # Of the frames with the mouth shut, the one with the eyes most open.
                shut = settled & (openings < np.nanmin(openings[settled]) + 0.004)
                closed = int(np.argmin(np.where(shut, blink, np.inf)))
                opened = int(np.nanargmax(np.where(settled, openings, -np.inf)))
                pair = [crop_face(frames[closed], box), crop_face(frames[opened], box)]
                pairs[emotion] = pair
                print(
                    f"{emotion}: closed frame {closed} (opening {openings[closed]:.3f}), open frame {opened} ({openings[opened]:.3f})"
                )
    finally:
        engines.close()
    grid = np.vstack([np.hstack(pairs["neutral"]), np.hstack(pairs["happy"])])
    cv2.imwrite(str(args.out / "demo_frames.png"), grid)
    strip = np.hstack([pairs[e][1] for e in EMOTIONS])
    cv2.imwrite(str(args.out / "emotions_open.png"), strip)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
