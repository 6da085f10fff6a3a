"""Engines of the live servers (`avatar serve`, `avatar live`): loaded once per process, shared by
every session.

The engines themselves come from the process's `EngineSet` (the same one a render uses); what this
adds is the live side: the avatar's configuration, the engines it needs picked out of the set, and
locks. Sessions run on one event loop, so blocking calls are serialised per engine with asyncio
locks (Whisper must be called from one thread at a time, and on 2 cores parallel TTS calls would
only slow each other down) and run in worker threads so pacing never stalls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avatar.core.deadlines import StageTimeouts
from avatar.core.errors import AvatarError
from avatar.core.types import AudioChunk, Speech, TTSChunk
from avatar.engines.choice import EngineChoice
from avatar.engines.engine_set import EngineSet
from avatar.engines.replies import check_llm, describe_llm
from avatar.speech.speaker import AvatarVoice  # one avatar's voice over the shared engines
from avatar.speech.speech_cache import DEFAULT_MAX_ENTRIES, SpeechCache

log = logging.getLogger("avatar.live")
MAX_PREPARED_OPENINGS = 64  # start-up cost ~0.1 s each on 2 cores; a larger FAQ fills up lazily


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
    llm: str = "answerer"  # see avatar.engines.replies.resolve_llm; "stub" only when asked for
    knowledge_paths: tuple[Path, ...] = ()
    persona_name: str = "Mona"
    greeting: str | None = None
    language: str | None = None  # TTS language; None = detect per sentence
    barge_in_min_speech_ms: float = 200.0
    end_of_turn_silence_ms: float = 500.0  # the silence rule: --turn silence, or no turn model
    # Semantic end of turn (avatar.turns.smart_turn): "auto" = Smart Turn where installed, else the
    # silence rule; "smart" = Smart Turn or a one-line error; "silence" = the fixed rule alone.
    turn: str = "auto"
    # Silence after which the turn model is asked, and after which a turn it called incomplete
    # ends anyway (bench/turn_taking.py, docs/measurements/turn_taking.md).
    turn_check_silence_ms: float = 150.0
    turn_fallback_silence_ms: float = 1200.0
    # Probability of "complete" above which the turn ends at once, and above which (the model is
    # unsure) it ends as the silence rule would; None: calibrated per language (smart_turn).
    turn_threshold: float | None = None
    turn_unsure_threshold: float | None = None
    # A saved voices.voice_profile.VoiceProfile (a library avatar's voice_profile.json): every
    # reply is DSP-matched toward it, as `avatar render --voice` does for videos.
    voice_profile_path: Path | None = None
    persona_prompt: str = ""  # the avatar's persona / system prompt; "" = a generic one
    avatar_label: str | None = None  # what /health and the page call the avatar (default: photo file name)
    # --llm openai: server URL and model (else AVATAR_LLM_BASE_URL / AVATAR_LLM_MODEL, see llm_openai)
    llm_url: str | None = None
    llm_model: str | None = None
    llm_model_dir: Path | None = None  # --llm local: a transformers chat model folder
    llm_model_path: Path | None = None  # --llm gguf: the model file (None: the one in the models folder)
    asr: str = "whisper"  # or "sensevoice": also hears the speaker's emotion and audio events
    asr_model_dir: Path | None = None  # --asr sensevoice: default the registry's folder
    # --tts cosyvoice / cosyvoice-http / dashscope: the neural voice, cloned from voice_sample_path
    # (a recording) and what it says (tts_choice.voice_text; None = Whisper's transcript of it)
    tts_choice: EngineChoice = field(default_factory=EngineChoice)
    voice_sample_path: Path | None = None
    # Live, a cloned voice's chunks go to the face as they come (--no-tts-stream: whole sentences;
    # bench/cosyvoice_streaming.py, docs/measurements/cosyvoice_streaming.md)
    tts_stream: bool = True
    # How long a reply waits on each engine before it ends with `turn_failed` and an apology
    # (avatar.core.deadlines; docs/measurements/faults.md); the livestream uses the same.
    stage_timeouts: StageTimeouts = field(default_factory=StageTimeouts)
    # False (--no-speech-cache): every sentence is synthesized anew and no known opening is said at
    # start-up, so a latency benchmark whose replies repeat measures the voice, not the memory.
    speech_cache: bool = True

    @property
    def avatar_name(self) -> str:
        return self.avatar_label or self.photo_path.name

    @property
    def system_prompt(self) -> str:
        persona = self.persona_prompt.strip() or f"You are {self.persona_name}, a friendly talking avatar."
        if self.llm in (
            "openai",
            "local",
            "gguf",
        ):  # a chat model needs the rules that make replies speakable
            from avatar.llm.prompt import system_prompt

            return system_prompt(persona, self.language)
        return persona


class LiveEngines:
    """The avatar's engines out of the process's `EngineSet`, plus per-engine locks."""

    def __init__(self, config: LiveConfig, engines: EngineSet | None = None) -> None:
        """`engines`: the process's engine set to draw from (default: a new one, closed with this)."""
        check_llm(config)
        self.config = config
        self.engines = engines if engines is not None else EngineSet(config.tts_choice)
        self._owns_engines = engines is None
        self.renderer = None
        self.vad_model = None
        self.asr = None
        self.tts = None
        self.voice_profile = None
        self.cloned_voice = None  # the neural TTS of config.tts_choice, in the avatar's voice
        self.llm = None
        self.turn_model = None  # Smart Turn, shared by every session (stateless ONNX session)
        self.reply_engine = describe_llm(config)  # one line for the start-up log and /health
        self._locks: dict[str, asyncio.Lock] = {}
        # sentences said before, shared by every session; one that keeps nothing when turned off
        self.speech_cache = SpeechCache(max_entries=DEFAULT_MAX_ENTRIES if config.speech_cache else 0)

    def load(self, *, listening: bool = True) -> LiveEngines:
        """Blocking: prepare the avatar and load every model (a few seconds).

        `listening=False` skips the microphone side (VAD, Whisper): a livestream only speaks."""
        config, engines = self.config, self.engines
        limit_kernel_threads()
        self.load_voice()  # first: a bad voice profile or an unreachable LLM fails before the slow loads
        self.llm = engines.chat_model(config)
        self.reply_engine = describe_llm(config, self.llm)
        self.renderer = engines.renderer(config.photo_path, config.size_px, config.face_index)
        if listening:
            from avatar.turns.smart_turn import load_turn_model

            self.turn_model = load_turn_model(
                config.turn, config.turn_threshold, config.turn_unsure_threshold
            )
            self.vad_model = engines.vad_model()
            self.asr = engines.recognizer(config.asr, config.asr_model_dir)
        self.tts.get(config.language or "en")
        started_s = time.perf_counter()
        prepared = self.say_known_openings()
        if prepared:
            log.info(
                "said %d known reply openings in advance (%.1f s)", prepared, time.perf_counter() - started_s
            )
        return self

    @property
    def turn_rule(self) -> str:
        """Which rule ends the user's turns, in one line (start-up log, /health)."""
        from avatar.turns.smart_turn import describe_turn_rule

        config = self.config
        return describe_turn_rule(
            self.turn_model,
            config.turn_check_silence_ms,
            config.turn_fallback_silence_ms,
            config.end_of_turn_silence_ms,
        )

    def load_voice(self) -> LiveEngines:
        """The TTS selector and the voice profile to match toward (if any); engines load lazily."""
        if self.config.voice_profile_path is not None and self.voice_profile is None:
            self.voice_profile = self.engines.voice_profile(self.config.voice_profile_path)
        if self.tts is None:
            self.tts = self.engines.tts_selector()
        if self.config.tts_choice.tts != "embedded" and self.cloned_voice is None:
            choice = self.config.tts_choice
            self.cloned_voice = self.clone_voice(self.config.voice_sample_path, choice.voice_text or "")
        return self

    def clone_voice(self, sample_path: Path | None, text: str = ""):
        """Blocking: the neural TTS in the voice of `sample_path` (kept by the engine set per sample
        file, transcript and language: a livestream that switches back to an avatar does not load it
        again)."""
        return self.engines.cloned_voice(sample_path, self.config.language or "en", text)

    def voice(self, profile=None, language: str | None = None, cloned=None) -> AvatarVoice:
        """One avatar's voice over the shared engines: `cloned` alone, else the embedded voice for
        `language` (None: detected per sentence), DSP-matched toward `profile` when given."""
        matcher = None
        if profile is not None and cloned is None:
            from voices.voice_match import VoiceProfileMatcher

            matcher = VoiceProfileMatcher(profile)
        return AvatarVoice(
            self.tts.get,
            language=language,
            matcher=matcher,
            cloned=cloned,
            stream_cloned=self.config.tts_stream,
        )

    def synthesize(self, text: str, *, emotion: str | None = None):
        """One sentence of reply speech with its emotion, in the avatar's voice (see `voice`);
        a sentence said before comes from the speech cache (avatar.speech.speech_cache)."""
        voice = self.voice(self.voice_profile, self.config.language, self.cloned_voice)
        key = self._speech_key(text, emotion)
        return self.speech_cache.get_or_make(key, lambda: voice.synthesize(text, emotion=emotion))

    def _speech_key(self, text: str, emotion: str | None) -> tuple:
        return (text, emotion, self.config.language, id(self.voice_profile), id(self.cloned_voice))

    def say_known_openings(self, max_sentences: int = MAX_PREPARED_OPENINGS) -> int:
        """Blocking: synthesize the first sentence of every reply the reply engine knows in advance
        (the answerer's greeting, "I don't know" and FAQ answers) into the speech cache, so the
        first question of each kind is answered as fast as a repeated one. Returns how many."""
        from avatar.speech.speech_cache import first_sentences

        known = getattr(self.llm, "known_replies", None)
        if known is None or not self.config.speech_cache:  # nothing would be kept
            return 0
        # Without a fixed language, replies come in the question's language: prepare each one the
        # reply engine speaks (the answerer: English and Mandarin), or a Mandarin speaker's first
        # question waits for the Mandarin voice while an English speaker's does not.
        languages = getattr(self.llm, "reply_languages", ("en",))
        if self.config.language:
            languages = (self.config.language,)
        replies = [reply for language in languages for reply in known(language)]
        openings = first_sentences(replies)[:max_sentences]
        for text, emotion in openings:
            try:
                self.synthesize(text, emotion=emotion)
            except AvatarError as error:  # a line the voice cannot say is skipped live as well
                log.info("not prepared: %r (%s)", text, error.message)
        return len(openings)

    @property
    def streams_audio(self) -> bool:
        """Live replies take the cloned voice's chunks as they come (`avatar.speech.speaker`)."""
        return self.config.tts_stream and self.cloned_voice is not None

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """One sentence of reply speech as the cloned voice makes it (see `speak_stream`); not
        serialised like `synthesize`: each engine guards its own state per chunk. A sentence said
        before comes whole from the speech cache; one streamed to its end is kept there."""
        key = self._speech_key(text, emotion)
        cached = self.speech_cache.get(key)
        if cached is not None:
            yield TTSChunk(cached, is_last=True)
            return
        voice = self.voice(self.voice_profile, self.config.language, self.cloned_voice)
        pieces, chunk = [], None
        for chunk in voice.stream(text, emotion=emotion):
            pieces.append(chunk.speech.audio.pcm)
            yield chunk
        if chunk is not None:  # spoken to its end (a closed stream stops at the yield above)
            audio = AudioChunk(np.concatenate(pieces), chunk.speech.audio.sample_rate_hz)
            self.speech_cache.keep(key, Speech(audio, text, chunk.speech.language))

    async def run_blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking engine call in a thread, one call at a time per engine."""
        owner = getattr(fn, "__self__", None)
        shared = owner is not None and (owner is self.asr or owner is self)  # Whisper, TTS (self.synthesize)
        if not shared:  # per-session work (a session's own lip-sync) may run in parallel
            return await asyncio.to_thread(fn, *args, **kwargs)
        lock = self._locks.setdefault(type(owner).__name__, asyncio.Lock())
        async with lock:
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be stopped: keep the engine locked until it is done, so a
                # cancelled call (a void speculative ASR) never overlaps the next one.
                await asyncio.wait([work])
                raise

    def close(self) -> None:
        """Close the engines when the set is this object's own (a shared set is its owner's)."""
        if self._owns_engines:
            self.engines.close()
