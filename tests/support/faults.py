"""Fault injection around the fakes (and any real engine): an engine that raises, hangs or returns
garbage on chosen calls and behaves normally otherwise, so a test can check that the fault ends
one turn, item or render and the next one works.

A hang must be visible to a virtual-time test: a faulty blocking method returns `HANG`, and the
session's `run_blocking` (`hanging_run_blocking`) then waits forever on a future nobody resolves,
shielded like a worker thread that cannot be stopped. An async fault (the LLM stream) waits on
such a future itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import numpy as np

from avatar.core.types import AudioChunk, Speech, Transcript, TTSChunk

HANG = object()  # returned by a blocking call that "never returns"


class InjectedFault(RuntimeError):
    """What a faulty engine raises: an engine bug, not a user-facing AvatarError."""


def hanging_run_blocking(run_blocking):
    """`run_blocking` in which a call that returned `HANG` never completes (cancellable from
    outside, like a thread: the caller stops waiting, the work does not end)."""

    async def run(fn, *args, **kwargs):
        result = await run_blocking(fn, *args, **kwargs)
        if result is HANG:
            await asyncio.shield(asyncio.get_running_loop().create_future())
        return result

    return run


class _Faulty:
    """Counts calls and says whether this one is faulty (`on_calls`: the indices that fail)."""

    def __init__(self, inner, mode: str, on_calls: tuple[int, ...] = (0,)) -> None:
        self.inner, self.mode, self.on_calls = inner, mode, set(on_calls)
        self.calls = 0
        self.faults = 0

    def _faulty(self) -> bool:
        index, self.calls = self.calls, self.calls + 1
        if index in self.on_calls:
            self.faults += 1
            return True
        return False

    def __getattr__(self, name):  # everything not faulted is the inner engine's
        return getattr(self.inner, name)


class FaultyASR(_Faulty):
    """modes: raise, hang, none (returns None), not_text (text is bytes), huge (1 MB of text)."""

    def transcribe(self, audio: AudioChunk, language: str | None = None):
        if not self._faulty():
            return self.inner.transcribe(audio, language)
        if self.mode == "raise":
            raise InjectedFault("injected ASR fault")
        if self.mode == "hang":
            return HANG
        if self.mode == "none":
            return None
        if self.mode == "not_text":
            return Transcript(b"\x00\xff", "en")  # type: ignore[arg-type]
        if self.mode == "huge":
            self.inner.transcribe(audio, language)  # keep the script's order
            return Transcript("word " * 200_000, "en")
        raise ValueError(self.mode)


class FaultyLLM(_Faulty):
    """modes: raise (before any token), raise_midway (after one sentence), hang (before any
    token), hang_midway, not_text (a token that is an int), endless (sentences forever)."""

    def __init__(self, inner, mode: str, on_calls: tuple[int, ...] = (0,), clock=None) -> None:
        super().__init__(inner, mode, on_calls)
        self.clock = clock
        self.closed = 0  # faulty streams closed (by a deadline, a cap or the end of the turn)

    def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        if not self._faulty():
            return self.inner.stream(messages)
        return self._faulty_stream()

    async def _faulty_stream(self) -> AsyncIterator[str]:
        try:
            if self.mode in ("raise_midway", "hang_midway"):
                yield "Well, let me see."
                yield " Now"  # the splitter knows the first sentence is complete
            if self.mode.startswith("raise"):
                raise InjectedFault("injected LLM fault")
            if self.mode.startswith("hang"):
                await asyncio.get_running_loop().create_future()
            if self.mode == "not_text":
                yield "Hello"
                yield 42
            while self.mode == "endless":
                if self.clock is not None:
                    await self.clock.sleep_until(self.clock.now_s() + 0.01)
                yield " La la la."
        finally:
            self.closed += 1


class FaultyTTS(_Faulty):
    """modes: raise, hang, nan, empty, int16, zero_rate, not_speech; faults `synthesize` (a voice
    that streams whole sentences, as the embedded ones do)."""

    def synthesize(self, text: str, *, emotion: str | None = None):
        if not self._faulty():
            return self.inner.synthesize(text, emotion=emotion)
        if self.mode == "raise":
            raise InjectedFault("injected TTS fault")
        if self.mode == "hang":
            return HANG
        if self.mode == "not_speech":
            return None
        good = self.inner.synthesize(text, emotion=emotion)
        pcm, rate_hz = good.audio.pcm, good.audio.sample_rate_hz
        if self.mode == "nan":
            pcm = np.full_like(pcm, np.nan)
        elif self.mode == "empty":
            pcm = pcm[:0]
        elif self.mode == "int16":
            pcm = (pcm * 32767).astype(np.int16)
        elif self.mode == "zero_rate":
            rate_hz = 0
        else:
            raise ValueError(self.mode)
        return Speech(AudioChunk(pcm, rate_hz), text, good.language)

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        yield TTSChunk(self.synthesize(text, emotion=emotion), is_last=True)


class FaultyLipSync(_Faulty):
    """modes: raise, hang, wrong_shape, wrong_count, float_frames; faults `draw` (and `prepare`
    for raise_prepare)."""

    def prepare(self, speech: Speech):
        if self.mode == "raise_prepare" and self._faulty():
            raise InjectedFault("injected lip-sync fault while planning")
        return self.inner.prepare(speech)

    def draw(self, rows):
        if self.mode == "raise_prepare" or self.mode.startswith("idle_") or not self._faulty():
            return self.inner.draw(rows)
        if self.mode == "raise":
            raise InjectedFault("injected lip-sync fault")
        if self.mode == "hang":
            return HANG
        frames = self.inner.draw(rows)
        if self.mode == "wrong_shape":
            return [np.zeros((4, 6, 3), np.uint8) for _ in frames]
        if self.mode == "wrong_count":
            return frames[:-1]
        if self.mode == "float_frames":
            return [frame.astype(np.float32) for frame in frames]
        raise ValueError(self.mode)

    def idle_frame(self, tick_index: int | None = None):
        """modes idle_raise / idle_garbage: the idle picture fails (`on_calls` counts idle calls)."""
        if not self.mode.startswith("idle_"):
            return self.inner.idle_frame(tick_index)
        if not self._faulty():
            return self.inner.idle_frame(tick_index)
        if self.mode == "idle_raise":
            raise InjectedFault("injected idle picture fault")
        return np.zeros((8, 8), np.float64)  # idle_garbage: no colour channels, not uint8

    def render(self, *args, **kwargs):
        """The batch renderer's whole-video call (`LipSyncRenderer.render`)."""
        return self.inner.render(*args, **kwargs)


class FakeVideoRenderer:
    """A batch renderer (`LipSyncRenderer`) that draws one grey frame per 40 ms of speech, so a
    render runs through the real windows and the real MP4 writer without a face model."""

    fps = 25
    seed = 0

    def __init__(self, size_px: int = 32) -> None:
        from types import SimpleNamespace

        self.size_wh = (size_px, size_px)
        self.assets = SimpleNamespace(notes=())

    def render(self, speech: Speech, spans) -> Iterator[np.ndarray]:
        count = int(np.ceil(len(speech.audio.pcm) / speech.audio.sample_rate_hz * self.fps))
        for index in range(count):
            yield np.full((self.size_wh[1], self.size_wh[0], 3), 40 + index % 100, np.uint8)


class FaultyVideoRenderer(_Faulty):
    """modes: raise (at the fourth frame), wrong_shape, float_frames."""

    def render(self, speech: Speech, spans) -> Iterator[np.ndarray]:
        for index, frame in enumerate(self.inner.render(speech, spans)):
            if index == 3 and self.mode == "raise":
                raise InjectedFault("injected renderer fault")
            if self.mode == "wrong_shape":
                frame = frame[:-2]
            elif self.mode == "float_frames":
                frame = frame.astype(np.float32)
            yield frame


def install_render_fakes(monkeypatch_setattr, tts=None, renderer=None) -> None:
    """Make every `EngineSet` of this process speak with `tts` (default a ToneTTS) and draw with
    `renderer` (default a FakeVideoRenderer): `monkeypatch_setattr(obj, name, value)`."""
    from avatar.engines.engine_set import EngineSet
    from tests.support.fakes import ToneTTS

    voice = tts if tts is not None else ToneTTS()
    drawer = renderer if renderer is not None else FakeVideoRenderer()
    monkeypatch_setattr(EngineSet, "tts", lambda self, language: voice)
    monkeypatch_setattr(EngineSet, "renderer", lambda self, *args: drawer)


if __name__ == "__main__":  # `python -m tests.support.faults ARGS`: the avatar CLI on the fakes
    import sys

    from avatar.cli import main

    install_render_fakes(setattr)
    sys.exit(main(sys.argv[1:]))
