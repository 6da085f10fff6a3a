"""User-facing errors.

Every bad input ends as one `AvatarError`: a one-line message saying what was wrong and how to
fix it. The CLI prints it without a traceback and exits non-zero; anything else escaping is a bug.
"""

from __future__ import annotations


class AvatarError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(AvatarError):
    """A photo, audio file, text or path that cannot be used as given."""


class EngineUnavailable(AvatarError):
    """An engine whose package or weights are missing; the hint names the fix."""

    exit_code = 3


class EngineFailed(AvatarError):
    """An engine raised, hung past its deadline or returned something unusable.

    Live it ends the turn (or the livestream item) with an event naming `stage`, never the
    session; in a render it ends the job with this one line. Kept apart from the voice's own
    `AvatarError`s ("cannot say this sentence"), which skip one sentence and go on."""

    exit_code = 4

    def __init__(self, stage: str, detail: str, hint: str = "") -> None:
        super().__init__(f"{stage} failed: {detail}", hint)
        self.stage = stage
        self.detail = detail
