"""Expressions on every face: landmarker blendshapes per emotion, and a contact sheet per face.

    .venv/bin/python bench/face_expressions.py [--faces ../shared/eval/faces] [--json out.json]
        [--only male_obama_official_portrait.jpg --only ...]

For each photo with exactly one face (the bundled portrait and every one-face photo in the eval
folder), the procedural renderer plans 3.2 s of a silent lead-in followed by a held open vowel,
once per emotion, and draws two frames: mouth closed (after the expression blended in) and mouth
open (mid-vowel). The MediaPipe face landmarker measures each frame's blendshapes, the way a
viewer's face tracker would. Frames with a blink are avoided (the idle blinks are seeded).

The rules checked per face (issue 14; tests/support/expression_measure.verdicts):
  happy      smile (mouthSmileLeft/Right) >= neutral + 0.15, or >= 0.9 where the photo already smiles
  angry      browDown (mean of left/right) >= neutral + 0.05
  surprised  browInnerUp or eyeWide >= neutral + 0.05
  sad        browInnerUp or mouthFrown >= neutral + 0.05
  (a score whose neutral is already >= 0.8 may instead reach 0.9). "min / max area ratio" is the
  warp's smallest and largest local area change over the head: below 0 it would fold (tear).

Contact sheets (5 emotions x closed/open, face crops) go to bench/out/faces/ (git-ignored: real
people's faces stay internal); sheets of the public-domain painting and the bundled portrait also
go to docs/images/faces/ with --public-sheets. Set LIPSYNC_FROM=/path/to/old/tree to measure
another copy of lipsync/ (the before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("LIPSYNC_FROM"):
    sys.path.insert(0, os.environ["LIPSYNC_FROM"])
EVAL_FACES = ROOT.parent / "shared" / "eval" / "faces"
PUBLIC = ("sample_portrait.jpg", "painting_mona_lisa.jpg")


EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised")


def contact_sheet(crops: dict[tuple[str, str], np.ndarray], title: str) -> np.ndarray:
    import cv2

    cell_h = 300
    cells = {k: cv2.resize(v, (int(v.shape[1] * cell_h / v.shape[0]), cell_h)) for k, v in crops.items()}
    cell_w = max(c.shape[1] for c in cells.values())
    sheet = np.full((40 + 2 * (cell_h + 30), 110 + len(EMOTIONS) * cell_w, 3), 255, np.uint8)
    cv2.putText(sheet, title, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    for row, mouth in enumerate(("closed", "open")):
        y = 40 + row * (cell_h + 30)
        cv2.putText(sheet, mouth, (8, y + cell_h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1)
        for col, emotion in enumerate(EMOTIONS):
            cell = cells[(emotion, mouth)]
            x = 110 + col * cell_w
            sheet[y : y + cell_h, x : x + cell.shape[1]] = cell
            cv2.putText(sheet, emotion, (x + 6, y + cell_h + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1)
    return sheet


def crop_face(frame: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    x0, y0 = landmarks_px[:, :2].min(axis=0)
    x1, y1 = landmarks_px[:, :2].max(axis=0)
    pad_x, pad_y = 0.2 * (x1 - x0), 0.15 * (y1 - y0)
    h, w = frame.shape[:2]
    return frame[
        max(int(y0 - pad_y), 0) : min(int(y1 + pad_y), h), max(int(x0 - pad_x), 0) : min(int(x1 + pad_x), w)
    ]


def measure_face(path: Path, landmarker, cache: Path, seed: int) -> tuple[dict, np.ndarray] | None:
    import cv2

    from avatar.core.errors import InputError
    from lipsync.avatar_assets import prepare_avatar
    from lipsync.procedural_renderer import ProceduralRenderer
    from tests.support.expression_measure import render_emotions

    image = cv2.imread(str(path))
    if image is None or len(landmarker.detect(image)) != 1:
        return None
    try:
        assets = prepare_avatar(path, cache_dir=cache, landmarker=landmarker)
    except InputError:
        return None
    renderer = ProceduralRenderer(assets, seed=seed)
    table, frames = render_emotions(renderer, landmarker, seed)
    crops = {key: crop_face(frame, assets.landmarks_px) for key, frame in frames.items()}
    sheet = contact_sheet(crops, f"{path.name}  ({assets.size_wh[0]}x{assets.size_wh[1]} px)")
    return table, sheet


def main() -> int:
    import tempfile

    import cv2

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=Path, default=EVAL_FACES)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "faces")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--public-sheets", type=Path, default=None, help="e.g. docs/images/faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="PHOTO",
        help="measure only this photo (file name; repeat for several): a quick run on the faces that fail",
    )
    args = parser.parse_args()

    from lipsync.face_landmarker import FaceLandmarker
    from tests.support.expression_measure import verdicts

    photos = [ROOT / "assets" / "sample_portrait.jpg"]
    if args.faces.is_dir():
        photos += sorted(p for p in args.faces.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if args.only:
        unknown = sorted(set(args.only) - {p.name for p in photos})
        if unknown:
            parser.error(f"no such photo: {', '.join(unknown)} (in {args.faces} or the bundled portrait)")
        photos = [p for p in photos if p.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp, FaceLandmarker() as landmarker:
        for path in photos:
            measured = measure_face(path, landmarker, Path(tmp), args.seed)
            if measured is None:
                print(f"skipped {path.name}: not exactly one face")
                continue
            table, sheet = measured
            cv2.imwrite(str(args.out / f"{path.stem}.png"), sheet)
            if args.public_sheets is not None and path.name in PUBLIC:
                args.public_sheets.mkdir(parents=True, exist_ok=True)
                target = args.public_sheets / f"{path.stem}.jpg"  # committed: JPEG keeps the repo small
                cv2.imwrite(str(target), sheet, [cv2.IMWRITE_JPEG_QUALITY, 88])
            results[path.name] = {mouth: {"scores": t, "pass": verdicts(t)} for mouth, t in table.items()}
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    failed = [
        (name, mouth, rule)
        for name, by_mouth in results.items()
        for mouth, r in by_mouth.items()
        for rule, ok in r["pass"].items()
        if not ok
    ]
    print(f"\n{len(failed)} rule(s) failed: {failed}" if failed else "\nall rules pass on every face")
    return 0


def print_table(results: dict) -> None:
    print(
        "| photo | mouth | smile N -> happy | browDown N -> angry | browInnerUp N -> surprised | "
        "eyeWide N -> surprised | browInnerUp N -> sad | mouthFrown N -> sad | min / max area ratio | all pass |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, by_mouth in results.items():
        for mouth, r in by_mouth.items():
            s = r["scores"]

            def arrow(key: str, emotion: str, s=s) -> str:
                before, after = s["neutral"].get(key, float("nan")), s[emotion].get(key, float("nan"))
                return f"{before:.2f} -> {after:.2f}"

            ok = (
                "yes"
                if all(r["pass"].values())
                else "no: " + ", ".join(k for k, v in r["pass"].items() if not v)
            )
            print(
                f"| {name} | {mouth} | {arrow('smile', 'happy')} | {arrow('browDown', 'angry')} | "
                f"{arrow('browInnerUp', 'surprised')} | {arrow('eyeWide', 'surprised')} | "
                f"{arrow('browInnerUp', 'sad')} | {arrow('mouthFrown', 'sad')} | "
                f"{min(e.get('fold_margin', float('nan')) for e in s.values()):.2f} / "
                f"{max(e.get('stretch', float('nan')) for e in s.values()):.2f} | {ok} |"
            )


if __name__ == "__main__":
    sys.exit(main())
