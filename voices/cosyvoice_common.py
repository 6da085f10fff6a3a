"""What the three CosyVoice engines share: the reference voice, sentence bookkeeping, emotion prompts.

CosyVoice clones a voice zero-shot from a short recording *and its exact transcript*: the LLM
continues the prompt's speech tokens after the prompt's text tokens, so a missing or wrong
transcript makes it speak the mismatch (mumbling, repeated or dropped words). The transcript is
therefore required. The recording must be 3-30 s: below 3 s the speaker embedding is poor, and
upstream's speech tokenizer asserts on more than 30 s.

Audio rates: upstream's speech tokenizer and speaker encoder read the prompt at 16 kHz, the flow
model's features at 24 kHz, and upstream's `load_wav` refuses to *up*sample (it asserts that the
file's rate is above the target). So in-process callers get the 16 kHz array, and every file we
hand to upstream (a prompt path, an HTTP upload) is written at 24 kHz, which serves both reads.

Streaming: CosyVoice yields sub-sentence chunks whose total length is unknown until the sentence
ends, so a chunk's text cannot be apportioned by duration without guessing. Each chunk carries the
whole sentence it belongs to and the sentence's final chunk is marked `is_last=True`; a consumer
that stops mid-sentence knows exactly which sentence was being spoken.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk, Speech, TTSChunk

log = logging.getLogger(__name__)

REFERENCE_MIN_S = 3.0
REFERENCE_MAX_S = 30.0  # upstream _extract_speech_token asserts <= 30 s
PROMPT_SAMPLE_RATE_HZ = 16000  # the rate of `prompt_speech_16k` in upstream's API
UPLOAD_SAMPLE_RATE_HZ = 24000  # >= every rate upstream's load_wav reads a prompt file at
MIN_SPEECH_S = 1.0  # a 3 s file that is mostly silence clones the room, not the voice
SUPPORTED_LANGUAGES = ("zh", "en", "ja", "ko", "yue")  # CosyVoice 2/3's languages
MIN_CHUNK_S = 0.1  # network pieces shorter than this are merged before they become chunks

# CosyVoice 3 was trained with a system prompt in front of every prompt text and instruction
# (upstream example.py and cosyvoice/utils/common.py `instruct_list`).
COSYVOICE3_SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"
# Instructions from upstream's CosyVoice 3 `instruct_list`, verbatim: the model follows the strings
# it was trained on; paraphrases are out of distribution. 'surprised' has no trained instruction.
_COSYVOICE3_INSTRUCTIONS = {
    "happy": "You are a helpful assistant. 请非常开心地说一句话。<|endofprompt|>",
    "sad": "You are a helpful assistant. 请非常伤心地说一句话。<|endofprompt|>",
    "angry": "You are a helpful assistant. 请非常生气地说一句话。<|endofprompt|>",
}
# CosyVoice 2 takes free-form Chinese instructions ending in <|endofprompt|> (upstream example.py:
# '用四川话说这句话<|endofprompt|>'); its demo page lists these four emotions.
_COSYVOICE2_INSTRUCTIONS = {
    "happy": "用开心的语气说这句话<|endofprompt|>",
    "sad": "用伤心的语气说这句话<|endofprompt|>",
    "angry": "用生气的语气说这句话<|endofprompt|>",
    "surprised": "用惊讶的语气说这句话<|endofprompt|>",
}
_SPOKEN = re.compile(r"\w")  # a sentence with no letter or digit is punctuation: nothing to say


@dataclass(frozen=True)
class ReferenceVoice:
    """A checked prompt recording with its transcript, and the id its speaker features go by."""

    source: Path
    text: str
    pcm_16k: np.ndarray  # mono float32 at PROMPT_SAMPLE_RATE_HZ
    voice_id: str  # stable across runs: sha256 of the file bytes and the transcript

    @property
    def duration_s(self) -> float:
        return len(self.pcm_16k) / PROMPT_SAMPLE_RATE_HZ

    def wav_bytes(self, sample_rate_hz: int = UPLOAD_SAMPLE_RATE_HZ) -> bytes:
        """16-bit mono WAV decoded from the original file (not from the 16 kHz copy, which has
        lost everything above 8 kHz that the 24 kHz flow features want)."""
        import soundfile

        from avatar.core.audio_io import load_audio

        chunk = load_audio(self.source, sample_rate_hz)
        buffer = io.BytesIO()
        soundfile.write(buffer, chunk.pcm, sample_rate_hz, subtype="PCM_16", format="WAV")
        return buffer.getvalue()

    def write_wav(self, path: Path, sample_rate_hz: int = UPLOAD_SAMPLE_RATE_HZ) -> Path:
        from avatar.core.storage import open_atomically

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_atomically(path, "wb") as handle:
            handle.write(self.wav_bytes(sample_rate_hz))
        return path


def load_reference(path: str | Path, text: str) -> ReferenceVoice:
    """Load and check a prompt recording: 3-30 s, not silent, transcript given."""
    from avatar.core.audio_io import load_audio
    from avatar.core.storage import sha256_file

    if not isinstance(text, str) or not _SPOKEN.search(text):
        raise InputError(
            "CosyVoice cloning needs the transcript of the reference sample",
            "pass the exact words spoken in the sample (e.g. --voice-text '...')",
        )
    transcript = " ".join(text.split())
    path = Path(path)
    chunk = load_audio(path, PROMPT_SAMPLE_RATE_HZ)  # raises InputError for missing/silent files
    duration_s = chunk.duration_s
    if duration_s < REFERENCE_MIN_S:
        raise InputError(
            f"reference sample {path} is {duration_s:.1f} s; CosyVoice needs {REFERENCE_MIN_S:.0f}-"
            f"{REFERENCE_MAX_S:.0f} s",
            "record 3-10 s of one person speaking",
        )
    if duration_s > REFERENCE_MAX_S:
        raise InputError(
            f"reference sample {path} is {duration_s:.1f} s; CosyVoice accepts at most {REFERENCE_MAX_S:.0f} s",
            "trim it to 3-10 s of clean speech",
        )
    speech_s = active_speech_s(chunk.pcm, PROMPT_SAMPLE_RATE_HZ)
    if speech_s < MIN_SPEECH_S:
        raise InputError(
            f"reference sample {path} has only {speech_s:.1f} s of sound in {duration_s:.1f} s",
            "record 3-10 s of continuous speech close to the microphone",
        )
    digest = hashlib.sha256()
    digest.update(sha256_file(path).encode())
    digest.update(b"\0" + transcript.encode("utf-8"))
    return ReferenceVoice(path, transcript, chunk.pcm, "avatar-" + digest.hexdigest()[:16])


def active_speech_s(pcm: np.ndarray, sample_rate_hz: int, frame_s: float = 0.02) -> float:
    """Seconds of 20 ms frames within 35 dB of the loudest frame and above -50 dBFS RMS."""
    frame = max(1, int(sample_rate_hz * frame_s))
    count = len(pcm) // frame
    if count == 0:
        return 0.0
    frames = np.asarray(pcm[: count * frame], dtype=np.float64).reshape(count, frame)
    rms_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = (rms_db > rms_db.max() - 35.0) & (rms_db > -50.0)
    return float(active.sum()) * frame / sample_rate_hz


def check_language(language: str) -> str:
    """'zh-CN' -> 'zh'; one of SUPPORTED_LANGUAGES or an InputError."""
    code = str(language).strip().lower().replace("_", "-").split("-")[0]
    code = "zh" if code == "cmn" else code
    if code not in SUPPORTED_LANGUAGES:
        raise InputError(
            f"CosyVoice does not speak language {language!r}", f"use one of: {', '.join(SUPPORTED_LANGUAGES)}"
        )
    return code


def prompt_text_for(model_version: int, transcript: str) -> str:
    """The prompt text the model expects: CosyVoice 3 wants its system prompt in front."""
    if model_version >= 3 and END_OF_PROMPT not in transcript:
        return f"{COSYVOICE3_SYSTEM_PROMPT}{END_OF_PROMPT}{transcript}"
    return transcript


def instruct_text_for(model_version: int, emotion: str | None) -> str | None:
    """The instruction for `emotion`, or None for plain zero-shot (neutral, unknown, CosyVoice 1)."""
    if not emotion or emotion == "neutral":
        return None
    table = _COSYVOICE3_INSTRUCTIONS if model_version >= 3 else _COSYVOICE2_INSTRUCTIONS
    instruction = table.get(emotion) if model_version >= 2 else None
    if instruction is None:
        log.debug(
            "CosyVoice %s has no instruction for emotion %r; speaking it neutrally", model_version, emotion
        )
    return instruction


def split_text(text: str) -> list[str]:
    """Sentences to synthesize one by one; an InputError when there is nothing to say."""
    from avatar.core.text_script import split_sentences

    if not isinstance(text, str):
        raise InputError(f"text to speak must be a string, got {type(text).__name__}")
    sentences = [s for s in split_sentences(text) if _SPOKEN.search(s)]
    if not sentences:
        raise InputError("no text to speak: the text is empty or has no letters or digits")
    return sentences


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


class SentenceAssembler:
    """Turns one sentence's audio pieces into TTSChunks: tiny pieces merged, the final one is_last.

    Only the last `min_chunk_s` of audio is held back, so that the end of the sentence can be
    marked on a chunk that is really last: everything before it goes out as soon as it arrives
    (holding a whole upstream chunk back would delay a live reply's first audio by the time the
    model takes to make the second one).
    """

    def __init__(
        self, text: str, language: str, sample_rate_hz: int, min_chunk_s: float = MIN_CHUNK_S
    ) -> None:
        self.text = text
        self.language = language
        self.sample_rate_hz = sample_rate_hz
        self._min_samples = max(1, int(min_chunk_s * sample_rate_hz))
        self._pending: list[np.ndarray] = []

    @property
    def empty(self) -> bool:
        """No audio waiting to be handed out."""
        return not self._pending

    def add(self, pcm: np.ndarray) -> list[TTSChunk]:
        if len(pcm) == 0:
            return []
        self._pending.append(np.asarray(pcm, dtype=np.float32))
        if sum(len(p) for p in self._pending) < 2 * self._min_samples:
            return []
        pending = np.concatenate(self._pending)
        self._pending = [pending[-self._min_samples :]]
        return [self._chunk(pending[: -self._min_samples], is_last=False)]

    def finish(self) -> list[TTSChunk]:
        """Everything left, marked last; nothing at all when the sentence had no audio."""
        pieces, self._pending = self._pending, []
        if not pieces:
            log.warning("CosyVoice returned no audio for %r", self.text)
            return []
        return [self._chunk(np.concatenate(pieces), is_last=True)]

    def _chunk(self, pcm: np.ndarray, is_last: bool) -> TTSChunk:
        audio = AudioChunk(
            pcm=np.clip(pcm, -1.0, 1.0).astype(np.float32, copy=False), sample_rate_hz=self.sample_rate_hz
        )
        return TTSChunk(speech=Speech(audio=audio, text=self.text, language=self.language), is_last=is_last)


def sentence_chunks(
    pieces: Iterable[np.ndarray], text: str, language: str, sample_rate_hz: int
) -> Iterator[TTSChunk]:
    """TTSChunks of one sentence from its audio pieces, the sentence's last chunk is_last."""
    assembler = SentenceAssembler(text, language, sample_rate_hz)
    for pcm in pieces:
        yield from assembler.add(pcm)
    yield from assembler.finish()


def join_speech(chunks: Iterable[TTSChunk], text: str, language: str, sample_rate_hz: int) -> Speech:
    """One Speech for a whole `synthesize()` call."""
    parts = [chunk.speech.audio.pcm for chunk in chunks]
    pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return Speech(
        AudioChunk(pcm=pcm, sample_rate_hz=sample_rate_hz), text=collapse_whitespace(text), language=language
    )


class Pcm16Decoder:
    """Little-endian int16 bytes -> float32, carrying an odd trailing byte to the next piece
    (HTTP and TCP split a stream wherever they like, not on sample boundaries)."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> np.ndarray:
        data = self._rest + data
        usable = len(data) - len(data) % 2
        self._rest = data[usable:]
        return np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0

    def finish(self) -> None:
        if self._rest:
            log.warning("CosyVoice audio stream ended in the middle of a sample; dropped 1 byte")
            self._rest = b""
