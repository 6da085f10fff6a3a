"""Silence chatty native libraries (MediaPipe/TFLite/absl) that write straight to file descriptor 2.

Their start-up banners ("Logging before InitGoogle", "Created TensorFlow Lite XNNPACK delegate")
are noise to a user and break the promise that a bad input yields exactly one line of error;
environment variables do not reach them, so the descriptor is redirected around the calls.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Redirect fd 2 to a scratch file for the duration; Python exceptions still propagate."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreter): nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
