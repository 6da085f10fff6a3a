"""Speaker similarity from Resemblyzer's d-vector encoder, to measure voice matching honestly.

Resemblyzer ships its GE2E encoder weights inside the wheel, so this works offline; it needs
torch (the `eval` extra). The encoder is loaded once per object: loading costs ~1.5 s and the
first embedding a few seconds more (librosa/numba warm-up), each later one ~0.1 s.
"""

from __future__ import annotations

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import AudioChunk

_INSTALL_HINT = "install the eval extra: pip install -c constraints.txt '.[eval]'"


class SpeakerSimilarity:
    """Cosine similarity of speaker embeddings (about 0.6-0.75 different people, >0.85 same)."""

    def __init__(self) -> None:
        self._encoder = None

    def load(self) -> SpeakerSimilarity:
        if self._encoder is not None:
            return self
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as error:
            raise EngineUnavailable(
                f"speaker similarity needs resemblyzer ({error})", _INSTALL_HINT
            ) from error
        self._encoder = VoiceEncoder(device="cpu", verbose=False)
        return self

    def embed(self, audio: AudioChunk) -> np.ndarray:
        """Unit-length 256-d embedding of the voiced part of `audio` (silences are trimmed)."""
        from resemblyzer import preprocess_wav

        self.load()
        pcm = np.asarray(audio.pcm, dtype=np.float32)
        if pcm.ndim != 1 or len(pcm) == 0:
            raise InputError(f"speaker embedding needs mono, non-empty audio, got shape {pcm.shape}")
        wav = preprocess_wav(pcm, source_sr=int(audio.sample_rate_hz))
        if len(wav) < 1600:
            raise InputError("too little speech to embed (under 0.1 s after trimming silence)")
        return np.asarray(self._encoder.embed_utterance(wav), dtype=np.float64)

    def similarity(self, first: AudioChunk, second: AudioChunk) -> float:
        return cosine(self.embed(first), self.embed(second))


def cosine(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.dot(first, second) / (np.linalg.norm(first) * np.linalg.norm(second) + 1e-12))
