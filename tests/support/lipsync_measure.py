"""Measurements of rendered video, shared by tests and benchmarks.

Lip-sync is judged the way a viewer would: a face landmarker looks at the rendered frames, and
the mouth opening it sees is compared with the audio's loudness envelope.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lipsync import face_mesh_indices as fm


def mouth_opening(landmarks_px: np.ndarray) -> float:
    """Inner-lip gap as a fraction of face height (chin to forehead)."""
    lm = landmarks_px[:, :2]
    face_height = float(np.linalg.norm(lm[fm.CHIN] - lm[fm.FOREHEAD_TOP]))
    gap = float(np.linalg.norm(lm[fm.INNER_LIP_MID_LOWER] - lm[fm.INNER_LIP_MID_UPPER]))
    return gap / max(face_height, 1e-6)


def measure_frames(frames: Iterable[np.ndarray], landmarker) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Mouth opening and blendshapes per frame (NaN / {} where no face was found)."""
    openings, shapes = [], []
    for frame in frames:
        faces = landmarker.detect(frame)
        if faces:
            openings.append(mouth_opening(faces[0].landmarks_px))
            shapes.append(faces[0].blendshapes)
        else:
            openings.append(np.nan)
            shapes.append({})
    return np.array(openings), shapes


def smile_score(blendshapes: dict[str, float]) -> float:
    return 0.5 * (blendshapes.get("mouthSmileLeft", 0.0) + blendshapes.get("mouthSmileRight", 0.0))


def best_lag_correlation(signal: np.ndarray, reference: np.ndarray, max_lag: int = 5) -> tuple[int, float]:
    """Lag (frames, positive = signal later than reference) maximising Pearson correlation."""
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, b = signal[lag:], reference[: len(reference) - lag]
        else:
            a, b = signal[:lag], reference[-lag:]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 5 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            continue
        r = float(np.corrcoef(a[ok], b[ok])[0, 1])
        if r > best[1]:
            best = (lag, r)
    return best


def change_error(rendered: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference of two mouth-opening series, each taken relative to its own first
    frame (the photo is the real video's first frame, so that is their common baseline)."""
    n = min(len(rendered), len(truth))
    r, t = rendered[:n], truth[:n]
    ok = np.isfinite(r) & np.isfinite(t)
    return float(np.mean(np.abs((t[ok] - t[ok][0]) - (r[ok] - r[ok][0]))))


def rms_envelope(pcm: np.ndarray, sample_rate_hz: int, fps: int, frame_count: int) -> np.ndarray:
    """Plain RMS of the audio under each frame: the reference the mouth should follow."""
    hop = sample_rate_hz / fps
    out = np.zeros(frame_count)
    for k in range(frame_count):
        chunk = pcm[int(k * hop) : int((k + 1) * hop)]
        out[k] = np.sqrt(np.mean(chunk**2)) if len(chunk) else 0.0
    return out
