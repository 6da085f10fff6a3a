"""Engines of the live server: loaded once per process, shared by every session.

Sessions run on one event loop, so blocking calls are serialised per engine with asyncio locks
(Whisper must be called from one thread at a time, and on 2 cores parallel TTS calls would only
slow each other down) and run in worker threads so pacing never stalls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avatar.core.errors import InputError
from avatar.engines.choice import EngineChoice

LLM_KINDS = ("stub", "answerer", "openai", "local")


def limit_kernel_threads() -> None:
    """One thread per BLAS / OpenCV call in the server process.

    A live server runs many small kernels at once (every session draws frames, encodes video and
    runs VAD in its own worker threads). If each matrix product and remap also fans out over all
    cores, the threads oversubscribe the CPU and everything gets slower; parallelism comes from
    the sessions instead. Whisper keeps its own `cpu_threads`, set when it is loaded.
    """
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class LiveConfig:
    photo_path: Path
    size_px: int | None = 512
    face_index: int | None = None
    llm: str = "stub"
    knowledge_paths: tuple[Path, ...] = ()
    persona_name: str = "Mona"
    greeting: str | None = None
    language: str | None = None  # TTS language; None = detect per sentence
    barge_in_min_speech_ms: float = 200.0
    end_of_turn_silence_ms: float = 500.0
    # A saved voices.voice_profile.VoiceProfile (a library avatar's voice_profile.json): every
    # reply is DSP-matched toward it, as `avatar render --voice` does for videos.
    voice_profile_path: Path | None = None
    persona_prompt: str = ""  # the avatar's persona / system prompt; "" = a generic one
    avatar_label: str | None = None  # what /health and the page call the avatar (default: photo file name)
    # --llm openai: server URL and model (else AVATAR_LLM_BASE_URL / AVATAR_LLM_MODEL, see llm_openai)
    llm_url: str | None = None
    llm_model: str | None = None
    llm_model_dir: Path | None = None  # --llm local: a transformers chat model folder
    asr: str = "whisper"  # or "sensevoice": also hears the speaker's emotion and audio events
    asr_model_dir: Path | None = None  # --asr sensevoice: default the registry's folder
    # --tts cosyvoice / cosyvoice-http / dashscope: the neural voice, cloned from voice_sample_path
    # (a recording) and what it says (tts_choice.voice_text; None = Whisper's transcript of it)
    tts_choice: EngineChoice = field(default_factory=EngineChoice)
    voice_sample_path: Path | None = None

    @property
    def avatar_name(self) -> str:
        return self.avatar_label or self.photo_path.name

    @property
    def system_prompt(self) -> str:
        persona = self.persona_prompt.strip() or f"You are {self.persona_name}, a friendly talking avatar."
        if self.llm in ("openai", "local"):  # a chat model needs the rules that make replies speakable
            from avatar.llm.prompt import system_prompt

            return system_prompt(persona, self.language)
        return persona


def load_asr(config: LiveConfig):
    """The recogniser named by `config.asr` (blocking)."""
    if config.asr == "sensevoice":
        from avatar.asr.sensevoice import SenseVoiceASR
        from avatar.engines.registry import engine_dir

        return SenseVoiceASR(config.asr_model_dir or engine_dir("sensevoice")).load()
    if config.asr != "whisper":
        raise InputError(f"unknown --asr {config.asr!r}", "use whisper or sensevoice")
    from avatar.asr.whisper import WhisperASR

    # greedy decoding over a window just longer than the turn: ~0.1 s per question instead
    # of ~0.7 s, same words on our tests (see avatar/asr/whisper.py)
    return WhisperASR(beam_size=1, short_window=True).load()


def load_llm(config: LiveConfig):
    """The reply engine named by `config.llm` (blocking: the answerer and a local model load weights).

    The OpenAI-compatible client is built first (a missing URL or model fails here, in one line)
    and then asked for its model list, so an unreachable server is reported at startup instead of
    as a fallback line in the first conversation."""
    if config.llm == "answerer":
        from avatar.llm.answerer import OfflineAnswerer

        return OfflineAnswerer(list(config.knowledge_paths), config.persona_name, config.greeting).load()
    if config.llm == "openai":
        from avatar.llm.openai_compat import OpenAICompatibleLLM

        llm = OpenAICompatibleLLM(config.llm_url, config.llm_model)
        llm.check()
        return llm
    if config.llm == "local":
        from avatar.llm.local_model import TransformersLLM

        return TransformersLLM(config.llm_model_dir).load()
    from avatar.llm.stub import InstantReplyLLM

    return InstantReplyLLM()


class AvatarVoice:
    """Speech in one avatar's voice: the shared TTS engines (a `TTSSelector`), in the configured
    language or the one detected per sentence, DSP-matched to the avatar's voice profile if any;
    or, with a neural voice (`cloned`, e.g. CosyVoice), that engine alone: it already sounds like
    the avatar and speaks every language it knows."""

    def __init__(self, tts, profile=None, language: str | None = None, cloned=None) -> None:
        self._tts, self._profile, self._language, self._cloned = tts, profile, language, cloned

    def synthesize(self, text: str):
        from voices.language import detect_language

        if self._cloned is not None:
            return self._cloned.synthesize(text)

        engine = self._tts.get(self._language or detect_language(text))
        if self._profile is not None:
            from voices.voice_match import VoiceMatchedTTS

            engine = VoiceMatchedTTS(engine, self._profile)  # a thin wrapper: cheap per call
        return engine.synthesize(text)


class LiveEngines:
    """Shared engines plus per-engine locks."""

    def __init__(self, config: LiveConfig) -> None:
        if config.llm not in LLM_KINDS:
            raise InputError(f"unknown --llm {config.llm!r}", f"use one of: {', '.join(LLM_KINDS)}")
        if config.llm == "answerer" and not config.knowledge_paths:
            raise InputError("--llm answerer needs --knowledge FILE", "e.g. assets/knowledge/shop_faq.md")
        if config.llm == "local" and config.llm_model_dir is None:
            raise InputError("--llm local needs --llm-model-dir DIR", "a transformers chat model folder")
        self.config = config
        self.renderer = None
        self.vad_model = None
        self.asr = None
        self.tts = None
        self.voice_profile = None
        self.cloned_voice = None  # the neural TTS of config.tts_choice, in the avatar's voice
        self._cloned_by_sample: dict[tuple, Any] = {}
        self.llm = None
        self._locks: dict[str, asyncio.Lock] = {}

    def load(self, *, listening: bool = True) -> LiveEngines:
        """Blocking: prepare the avatar and load every model (a few seconds).

        `listening=False` skips the microphone side (VAD, Whisper): a livestream only speaks."""
        from avatar.turns.vad_silero import SileroModel
        from lipsync.avatar_assets import prepare_avatar
        from lipsync.procedural_renderer import ProceduralRenderer

        config = self.config
        limit_kernel_threads()
        self.load_voice()  # first: a bad voice profile or an unreachable LLM fails before the slow loads
        self.llm = load_llm(config)
        assets = prepare_avatar(config.photo_path, config.size_px, config.face_index)
        self.renderer = ProceduralRenderer(assets)
        if listening:
            self.vad_model = SileroModel()
            self.asr = load_asr(config)
        self.tts.get(config.language or "en")
        return self

    def load_voice(self) -> LiveEngines:
        """The TTS selector and the voice profile to match toward (if any); engines load lazily."""
        from voices.tts_select import TTSSelector

        if self.config.voice_profile_path is not None and self.voice_profile is None:
            from voices.voice_profile import VoiceProfile

            self.voice_profile = VoiceProfile.load(self.config.voice_profile_path)
        if self.tts is None:
            self.tts = TTSSelector()
        if self.config.tts_choice.tts != "embedded" and self.cloned_voice is None:
            choice = self.config.tts_choice
            self.cloned_voice = self.clone_voice(self.config.voice_sample_path, choice.voice_text or "")
        return self

    def clone_voice(self, sample_path: Path | None, text: str = ""):
        """Blocking: the neural TTS in the voice of `sample_path` (kept per sample: a livestream that
        switches back to an avatar does not load it again)."""
        from avatar.engines.choice import cloned_voice_engine

        key = (str(sample_path), text)
        if key not in self._cloned_by_sample:
            language = self.config.language or "en"
            self._cloned_by_sample[key] = cloned_voice_engine(
                self.config.tts_choice, sample_path, text, language
            )
        return self._cloned_by_sample[key]

    def voice(self, profile=None, language: str | None = None, cloned=None) -> AvatarVoice:
        return AvatarVoice(self.tts, profile, language, cloned)

    def synthesize(self, text: str):
        """One sentence of reply speech, in the avatar's matched voice when it has a profile."""
        return self.voice(self.voice_profile, self.config.language, self.cloned_voice).synthesize(text)

    async def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking engine call in a thread, one call at a time per engine."""
        owner = getattr(fn, "__self__", None)
        shared = owner is not None and (owner is self.asr or owner is self)  # Whisper, TTS (self.synthesize)
        if not shared:  # per-session work (a session's own lip-sync) may run in parallel
            return await asyncio.to_thread(fn, *args)
        lock = self._locks.setdefault(type(owner).__name__, asyncio.Lock())
        async with lock:
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be stopped: keep the engine locked until it is done, so a
                # cancelled call (a void speculative ASR) never overlaps the next one.
                await asyncio.wait([work])
                raise

    def close(self) -> None:
        if self.tts is not None:
            self.tts.close()
        for engine in self._cloned_by_sample.values():
            engine.close()
        self._cloned_by_sample.clear()
