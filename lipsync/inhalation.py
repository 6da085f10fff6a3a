"""Audible inhalations before speech: the mouth opens to breathe in, then speaks.

Speakers take a quick breath through the open mouth before an utterance. On the GRID clips the
real mouth is already open 0.3 s before the voice starts, as wide as for a vowel (9-10% of face
height), exactly while the recording carries breath noise: 10-20 dB above the room's floor,
40-55 dB below the speech. A mouth driven by the voice alone stays shut there, which was the
largest single error against the real speaker (issue 14). The rule only reads the audio, frame by
frame, so it holds for streamed chunks as for whole clips; TTS audio, whose pauses are digital
silence, never contains such a breath, so synthetic speech keeps its closed silent frames.
"""

from __future__ import annotations

import numpy as np

from lipsync.audio_features import FrameFeatures

BELOW_SPEECH_DB = 30.0  # louder than speech minus this is speech (frication), not breath
AUDIBLE_BELOW_SPEECH_DB = 60.0  # quieter than speech minus this is inaudible next to it
ABOVE_FLOOR_DB = 6.0  # a breath stands out of the recording's own noise floor by this much
FLOOR_PERCENTILE = 10.0
MIN_PAUSE_S = 0.2  # no one breathes in through a shorter pause
TAIL_S = 0.08  # the decay of the previous word is not a breath
MAX_GAP_S = 0.08  # quieter moments inside one inhalation
MAX_INHALE_S = 0.8  # an inhalation before speech lasts 0.3-0.6 s; never more than this
MIN_BREATH_S = 0.2  # a breath in is heard this long at least; a consonant's soft onset is shorter


def speech_frames(features: FrameFeatures, jaw: np.ndarray) -> np.ndarray:
    """Frames that are speech: voiced (the jaw track moves) or loud in the breath band (s, sh, f)."""
    loud = features.breath_db > features.reference_db - BELOW_SPEECH_DB
    return (jaw > 0) | loud


def breath_frames(features: FrameFeatures, speech: np.ndarray) -> np.ndarray:
    """Non-speech frames whose breath-band noise is audible and stands out of the noise floor."""
    floor_db = float(np.percentile(features.breath_db, FLOOR_PERCENTILE))
    threshold_db = max(floor_db + ABOVE_FLOOR_DB, features.reference_db - AUDIBLE_BELOW_SPEECH_DB)
    return ~speech & (features.breath_db >= threshold_db)


def inhalations(features: FrameFeatures, jaw: np.ndarray, fps: int) -> np.ndarray:
    """True on frames from the start of an audible breath up to the speech it precedes.

    The breath must sit in a pause of at least MIN_PAUSE_S (after the previous word's decay) and
    be heard for at least MIN_BREATH_S, gaps of up to MAX_GAP_S allowed."""
    out = np.zeros(len(jaw), bool)
    if features.breath_db is None or len(jaw) == 0:
        return out
    speech = speech_frames(features, jaw)
    breath = breath_frames(features, speech)
    min_pause, tail = int(round(MIN_PAUSE_S * fps)), int(round(TAIL_S * fps))
    max_gap, longest = int(round(MAX_GAP_S * fps)), int(round(MAX_INHALE_S * fps))
    heard = max(1, int(round(MIN_BREATH_S * fps)))
    previous_end = -1  # last speech frame before the current onset (-1: none yet)
    for onset in np.flatnonzero(speech & ~np.concatenate([[False], speech[:-1]])):
        pause = onset - previous_end - 1
        earliest = max(previous_end + 1 + (tail if previous_end >= 0 else 0), onset - longest)
        previous_end = _last_speech_frame(speech, onset)
        if pause < min_pause:
            continue
        start = _breath_run_start(breath, onset, earliest, max_gap)
        if start is not None and breath[start:onset].sum() >= heard:
            out[start:onset] = True
    return out


def _last_speech_frame(speech: np.ndarray, onset: int) -> int:
    after = np.flatnonzero(~speech[onset:])
    return int(onset + after[0] - 1) if len(after) else len(speech) - 1


def _breath_run_start(breath: np.ndarray, onset: int, earliest: int, max_gap: int) -> int | None:
    """First frame of the breath run that ends just before `onset` (gaps up to `max_gap` frames)."""
    start, gap = None, 0
    for k in range(onset - 1, earliest - 1, -1):
        if breath[k]:
            start, gap = k, 0
        else:
            gap += 1
            if gap > max_gap:
                break
    return start
