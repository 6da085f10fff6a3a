"""The microphone history: exact sample ranges by stream index, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.live.mic_history import MicHistory


def test_slices_by_stream_index_across_slides():
    history = MicHistory(max_samples=1000)
    stream = np.arange(5000, dtype=np.float32)
    for offset in range(0, 5000, 320):  # 20 ms chunks at 16 kHz
        history.append(stream[offset : offset + 320])
    assert history.total_samples == 5000
    np.testing.assert_array_equal(history.slice(4200, 4900), stream[4200:4900])
    kept = history.slice(0, 5000)
    assert 1000 <= len(kept) <= 2000, "at least max_samples kept, never more than twice that"
    np.testing.assert_array_equal(kept, stream[5000 - len(kept) :])
    assert len(history.slice(4990, 6000)) == 10
    assert len(history.slice(100, 50)) == 0


def test_a_chunk_longer_than_the_history_keeps_its_tail():
    history = MicHistory(max_samples=100)
    history.append(np.arange(250, dtype=np.float32))
    np.testing.assert_array_equal(history.slice(0, 250), np.arange(150, 250, dtype=np.float32))
    history.append(np.array([250.0], np.float32))
    np.testing.assert_array_equal(history.slice(249, 251), [249.0, 250.0])


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        MicHistory(0)


def test_recent_is_what_was_heard_since_a_sample_capped_to_a_length():
    """What the turn model hears: from the turn's start (minus its lead-in) until now, at most 8 s."""
    history = MicHistory(max_samples=1000)
    stream = np.arange(900, dtype=np.float32)
    history.append(stream)
    np.testing.assert_array_equal(history.recent(600, 500), stream[600:])
    np.testing.assert_array_equal(history.recent(100, 200), stream[700:])
