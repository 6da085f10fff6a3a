"""Neural speech recognition: SenseVoiceSmall through funasr, from a local model directory.

Why SenseVoice next to the embedded Whisper: besides the words it tags every utterance with the
language, the speaker's emotion and audio events (laughter, applause, music...), which the avatar
uses to react. The price is a 936 MB checkpoint the user downloads once
(`avatar models download sensevoice`) and the `asr` extra (funasr + torch).

Offline by construction: funasr's `AutoModel` is given the directory's absolute path, so its hub
resolver sees an existing folder and never downloads; `disable_update=True` skips the PyPI version
check, `trust_remote_code=False` keeps it from importing a `model.py` or pip-installing a
`requirements.txt` from that folder, and no VAD or punctuation model is configured (SenseVoice
writes punctuation itself). funasr's registered `SenseVoiceSmall` class is used, not the code in
the SenseVoice GitHub repository.

funasr quirks handled here:
- It loads checkpoints with "ignore mismatched shapes" on, which would silently run a model with
  random layers when config.yaml and model.pt disagree; we turn that off so a mismatch fails.
- Without configuration.json or model.pt it quietly builds a model with random weights, so the
  files are checked before funasr sees the folder.
- It sets torch's global thread count to its `ncpu` (default 4) on load and on every call; we pass
  our own `cpu_threads` so that setting is at least the one we chose. Building also reseeds the
  global random generators (random, numpy, torch) with 0.
- Its import and AutoModel configure the root logger at INFO; that is undone after loading.
- Long audio: without a VAD model the whole input is one utterance. SenseVoice was trained on
  clips up to ~30 s; split longer recordings before calling (the live mode's turns are short).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from avatar.asr.sensevoice_tags import SenseVoiceTags, parse_sensevoice
from avatar.core.audio_io import SILENCE_PEAK_DBFS, resample
from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.optional import module_available
from avatar.core.types import AudioChunk, Transcript

SENSEVOICE_SAMPLE_RATE_HZ = 16000
# Language hints the model has query embeddings for (funasr's SenseVoiceSmall.lid_dict);
# funasr silently treats any other string as "auto", so they are checked here.
SENSEVOICE_LANGUAGES = ("auto", "zh", "en", "yue", "ja", "ko", "nospeech")
DOWNLOAD_COMMAND = "avatar models download sensevoice"
INSTALL_COMMAND = "pip install '.[asr]'"
# The three names funasr itself opens; the CMVN and tokenizer files are the ones the folder's
# configuration.json points at. The public checkpoint's full list is the model registry's, which
# the engine layer passes in as `expected_files` (this module does not read the registry).
FIXED_FILES = ("config.yaml", "configuration.json", "model.pt")
MIN_AUDIO_S = 0.025  # one 25 ms analysis frame


class SenseVoiceASR:
    """SenseVoiceSmall on CPU or GPU. Load once per process, then call from one thread at a time
    (funasr keeps per-call options in the model object)."""

    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        use_itn: bool = True,
        language: str = "auto",
        cpu_threads: int | None = None,
        expected_files: Sequence[str] = FIXED_FILES,
    ) -> None:
        """`expected_files`: the checkpoint's files (the registry's list), named when some are
        missing; without configuration.json, its CMVN and tokenizer names are the ones expected."""
        self.model_dir = Path(model_dir)
        self.expected_files = tuple(dict.fromkeys([*FIXED_FILES, *expected_files]))
        self.device = device
        self.use_itn = use_itn
        self.language = _language_hint(language)
        self.cpu_threads = cpu_threads or min(4, os.cpu_count() or 1)
        self._model = None

    def load(self) -> SenseVoiceASR:
        """Check packages and folder, then build the model (blocking; seconds for the real one)."""
        if self._model is not None:
            return self
        for module in ("torch", "funasr"):
            if not module_available(module):
                raise EngineUnavailable(
                    f"SenseVoice needs the Python package {module!r}, which is not installed", INSTALL_COMMAND
                )
        if not any(module_available(m) for m in ("kaldi_native_fbank", "torchaudio")):
            raise EngineUnavailable(
                "SenseVoice's features need kaldi-native-fbank (or torchaudio), which is not installed",
                INSTALL_COMMAND,
            )
        check_model_dir(self.model_dir, self.expected_files)
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(
                f"SenseVoice was asked to run on {self.device}, but torch sees no CUDA GPU",
                "use device='cpu', or install a CUDA build of torch",
            )
        with _root_logging_kept():
            try:
                from funasr import AutoModel
            except ImportError as error:
                raise EngineUnavailable(f"funasr does not import: {error}", INSTALL_COMMAND) from error
        with _root_logging_kept():
            try:
                self._model = AutoModel(
                    model=str(self.model_dir.resolve()),
                    hub="ms",  # only names the resolver; an existing folder is used as is
                    disable_update=True,
                    trust_remote_code=False,
                    device=self.device,
                    ncpu=self.cpu_threads,
                    disable_pbar=True,
                    ignore_init_mismatch=False,
                    log_level="WARNING",  # its basicConfig, while loading, hides the INFO chatter
                )
            except Exception as error:  # funasr raises bare RuntimeError/KeyError/AssertionError
                reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
                raise EngineUnavailable(
                    f"funasr could not build SenseVoiceSmall from {self.model_dir}: "
                    f"{(reason or type(error).__name__)[:300]}",
                    f"the files do not match each other; run `{DOWNLOAD_COMMAND}` again",
                ) from error
        return self

    def transcribe(self, audio: AudioChunk, language: str | None = None) -> Transcript:
        """Recognise `audio`; `language` ("en", "zh", ...) overrides the default hint for this call."""
        hint = self.language if language is None else _language_hint(language)
        tags = self.transcribe_tags(audio, hint)
        detected = tags.language
        if (
            not detected
            and hint not in ("auto", "nospeech")
            and all(s.language is None for s in tags.segments)
        ):
            detected = hint  # the model wrote no language tag at all: trust the caller's hint
        return Transcript(text=tags.text, language=detected, emotion=tags.emotion, events=tags.events)

    def transcribe_tags(self, audio: AudioChunk, language: str | None = None) -> SenseVoiceTags:
        """Like `transcribe`, with everything the model said: per-segment tags, ITN flag, unknown tags."""
        hint = self.language if language is None else _language_hint(language)
        pcm = _to_model_input(audio)
        if self._model is None:
            self.load()
        results = self._model.generate(input=pcm, cache={}, language=hint, use_itn=self.use_itn)
        raw = "".join(str(result.get("text", "")) for result in results)
        return parse_sensevoice(raw)


@contextmanager
def _root_logging_kept():
    """Importing funasr runs logging.basicConfig(level=INFO) and AutoModel calls it again; put the
    root logger back so the host application's logging (and its noise level) stays its own.
    funasr also prints its version to stdout, which would mix into a CLI's output: send it to stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def check_model_dir(model_dir: Path, expected_files: Sequence[str] = FIXED_FILES) -> None:
    """EngineUnavailable naming every missing file, or a config for another model; stat and a
    small YAML/JSON read only, so it is cheap to call before importing funasr."""
    model_dir = Path(model_dir)
    expected = list(dict.fromkeys([*FIXED_FILES, *expected_files]))

    def hint() -> str:
        return f"run `{DOWNLOAD_COMMAND}`, or copy {', '.join(expected)} into {model_dir}"

    if not model_dir.is_dir():
        raise EngineUnavailable(f"SenseVoice model folder {model_dir} does not exist", hint())
    # configuration.json says which tokenizer and CMVN files funasr will open; without it, the
    # expected names are wanted (and configuration.json itself is reported missing).
    metas_path = model_dir / "configuration.json"
    referenced = _referenced_files(metas_path, hint) if metas_path.is_file() else expected
    wanted = list(dict.fromkeys([*FIXED_FILES, *referenced]))
    missing = [name for name in wanted if not (model_dir / name).is_file()]
    if missing:
        raise EngineUnavailable(
            f"SenseVoice model folder {model_dir} is missing {', '.join(missing)}", hint()
        )
    import yaml

    try:
        config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise EngineUnavailable(
            f"{model_dir / 'config.yaml'} is unreadable ({type(error).__name__})", hint()
        ) from error
    model_name = config.get("model") if isinstance(config, dict) else None
    if model_name != "SenseVoiceSmall":
        raise EngineUnavailable(
            f"{model_dir / 'config.yaml'} describes model {model_name!r}, not SenseVoiceSmall",
            hint(),
        )


def _referenced_files(metas_path: Path, hint: Callable[[], str]) -> list[str]:
    """File names configuration.json's `file_path_metas` points funasr at (relative to the folder)."""
    try:
        metas = json.loads(metas_path.read_text(encoding="utf-8")).get("file_path_metas", {})
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise EngineUnavailable(f"{metas_path} is not valid JSON ({type(error).__name__})", hint()) from error
    names: list[str] = []
    pending = [metas]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, str):
            names.append(node)
    return sorted(names)


def _language_hint(language: str) -> str:
    code = language.strip().lower()
    if code not in SENSEVOICE_LANGUAGES:
        raise InputError(
            f"SenseVoice has no language {language!r}", f"use one of: {', '.join(SENSEVOICE_LANGUAGES)}"
        )
    return code


def _to_model_input(audio: AudioChunk) -> np.ndarray:
    pcm = np.asarray(audio.pcm, dtype=np.float32)
    if pcm.ndim != 1:
        raise InputError(
            f"ASR expects mono audio (1-D array), got shape {pcm.shape}", "mix the channels down"
        )
    if len(pcm) == 0:
        raise InputError("ASR got empty audio (0 samples)", "pass at least a fraction of a second of speech")
    if len(pcm) < MIN_AUDIO_S * audio.sample_rate_hz:
        raise InputError(
            f"ASR got {len(pcm)} samples ({audio.duration_s * 1000:.1f} ms), shorter than one 25 ms frame",
            "pass at least a fraction of a second of speech",
        )
    if not np.isfinite(pcm).all():
        raise InputError(
            "ASR got audio containing NaN or infinite samples", "check the decoder or the mixing"
        )
    if float(np.max(np.abs(pcm))) < 10.0 ** (SILENCE_PEAK_DBFS / 20.0):
        raise InputError(
            f"ASR got silent audio (peak below {SILENCE_PEAK_DBFS:.0f} dBFS)",
            "check the microphone or the input file",
        )
    return resample(pcm, audio.sample_rate_hz, SENSEVOICE_SAMPLE_RATE_HZ)
