"""Idle blinks over a long stream: only the blinks near the asked frames are looked at, and the
result is the same as scanning every blink (a livestream collects ~900 blinks an hour)."""

from __future__ import annotations

import numpy as np

from lipsync.face_motion import BLINK_PROFILE, IdleMotion


def all_blinks_scan(motion: IdleMotion, start: int, count: int) -> np.ndarray:
    motion._schedule_blinks_until(start + count)
    closure = np.zeros(count, np.float32)
    for blink_start in motion._blink_starts:
        for i, value in enumerate(BLINK_PROFILE):
            if 0 <= blink_start + i - start < count:
                closure[blink_start + i - start] = max(closure[blink_start + i - start], value)
    return closure


def test_blinks_after_an_hour_match_a_full_scan():
    fast, reference = IdleMotion(25, seed=7), IdleMotion(25, seed=7)
    hour = 25 * 3600
    fast.blinks(0, hour)  # an hour of timeline: hundreds of blinks scheduled
    assert len(fast._blink_starts) > 500
    rng = np.random.default_rng(0)
    windows = [
        (int(s), int(n)) for s, n in zip(rng.integers(0, hour, 50), rng.integers(1, 60, 50), strict=True)
    ]
    for start, count in [*windows, (0, 10), (hour - 5, 5)]:
        assert np.array_equal(fast.blinks(start, count), all_blinks_scan(reference, start, count))
    assert fast.blinks(hour, 25 * 60).max() > 0  # blinks go on (gaps are at most 6 s)
