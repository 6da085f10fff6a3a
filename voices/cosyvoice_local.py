"""CosyVoice 2/3 zero-shot cloning in this process, driven through the user's own CosyVoice checkout.

CosyVoice is not a pip package of its own (the `cosyvoice` name on PyPI is an unrelated wrapper):
the user clones https://github.com/FunAudioLLM/CosyVoice, or installs a fork that vendors it
(`cosyvoice2-fr-infer`, on which tests/test_cosyvoice_real.py runs us), and we import its API:
`cosyvoice.cli.cosyvoice.CosyVoice2/CosyVoice3`, `add_zero_shot_spk`, `save_spkinfo`,
`inference_zero_shot`, `inference_instruct2` and `frontend.spk2info`.

Three things upstream does that we must steer around:
- Its constructors call `modelscope.snapshot_download(model_dir)` when `model_dir` does not
  exist, i.e. a silent multi-GB download. We check the folder, its yaml and its weight files
  first and only ever pass an existing absolute path.
- Speaker features (speech tokens, mel features, x-vector of the prompt) are recomputed on every
  call unless registered with `add_zero_shot_spk`. We register each voice once under an id
  derived from the sample's bytes and transcript and persist it: `save_spkinfo()` writes
  `spk2info.pt` into the model folder; when that cannot be written we keep our own copy under
  the cache folder and load it back into `frontend.spk2info`.
- `frontend_zero_shot` returns the *cached* dict for a registered id and `frontend_instruct2`
  then deletes the LLM prompt tokens from it, so a registered entry used for instruct breaks
  on its second use (KeyError), even within one sentence that upstream splits into segments,
  and is saved damaged. Instruct entries therefore get their own id per emotion; we split the
  sentence with upstream's own `text_normalize` and put a fresh shallow copy of the entry in
  place before each segment.

Each step of upstream's generator runs under a lock: the cached dict is shared, so two
concurrent calls could overwrite each other's text between the frontend and the model. The lock is
never held while a chunk is out with the caller, so an abandoned stream blocks nobody.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import Speech, TTSChunk
from voices.cosyvoice_common import (
    ReferenceVoice,
    check_language,
    instruct_text_for,
    join_speech,
    load_reference,
    prompt_text_for,
    sentence_chunks,
    split_text,
)

log = logging.getLogger(__name__)

CLONE_FIX = (
    "git clone --recursive https://github.com/FunAudioLLM/CosyVoice and pass --cosyvoice-checkout DIR "
    "(or set COSYVOICE_HOME)"
)
MODEL_FIX = (
    "download Fun-CosyVoice3-0.5B-2512 or CosyVoice2-0.5B into a folder "
    "(see the CosyVoice README) and pass that folder as --cosyvoice-model"
)
# Keys of a zero-shot speaker entry that instruct2 deletes; an entry without them is damaged.
_ENTRY_KEYS = ("llm_prompt_speech_token", "flow_embedding")


@dataclass(frozen=True)
class ModelLayout:
    """Which CosyVoice generation a model folder holds and the class that loads it."""

    version: int
    class_name: str
    yaml_path: Path


_LAYOUTS = (
    (3, "CosyVoice3", "cosyvoice3.yaml", "speech_tokenizer_v3.onnx"),
    (2, "CosyVoice2", "cosyvoice2.yaml", "speech_tokenizer_v2.onnx"),
    (1, "CosyVoice", "cosyvoice.yaml", "speech_tokenizer_v1.onnx"),
)


def inspect_model_dir(model_dir: str | Path) -> ModelLayout:
    """Check a local model folder before upstream sees it (upstream would download a missing one)."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise EngineUnavailable(f"CosyVoice model folder not found: {model_dir}", MODEL_FIX)
    for version, class_name, yaml_name, tokenizer in _LAYOUTS:
        yaml_path = model_dir / yaml_name
        if not yaml_path.is_file():
            continue
        needed = ["llm.pt", "flow.pt", "hift.pt", "campplus.onnx", tokenizer]
        missing = [name for name in needed if not (model_dir / name).is_file()]
        if version >= 2 and not (model_dir / "CosyVoice-BlankEN").is_dir():
            missing.append("CosyVoice-BlankEN/")
        if missing:
            raise EngineUnavailable(
                f"CosyVoice model folder {model_dir} is incomplete: missing {', '.join(missing)}",
                "download the whole model folder again",
            )
        return ModelLayout(version, class_name, yaml_path)
    names = " or ".join(layout[2] for layout in _LAYOUTS)
    raise EngineUnavailable(f"{model_dir} is not a CosyVoice model folder (no {names})", MODEL_FIX)


def import_cosyvoice(checkout_dir: str | Path | None = None):
    """`cosyvoice.cli.cosyvoice` from `checkout_dir` (or $COSYVOICE_HOME, or already importable).

    The checkout and its third_party/Matcha-TTS go to the front of sys.path, as upstream's own
    scripts do, so that a checkout wins over anything else called `cosyvoice`.
    """
    checkout = checkout_dir or os.environ.get("COSYVOICE_HOME") or None
    if checkout is not None:
        checkout = Path(checkout).expanduser().resolve()
        if not (checkout / "cosyvoice" / "cli" / "cosyvoice.py").is_file():
            raise EngineUnavailable(
                f"not a CosyVoice checkout: {checkout} (no cosyvoice/cli/cosyvoice.py)", CLONE_FIX
            )
        for entry in (checkout / "third_party" / "Matcha-TTS", checkout):
            if str(entry) not in sys.path:
                sys.path.insert(0, str(entry))
    try:
        module = importlib.import_module("cosyvoice.cli.cosyvoice")
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if missing == "cosyvoice" or missing.startswith("cosyvoice."):
            raise EngineUnavailable("CosyVoice is not importable", CLONE_FIX) from error
        where = checkout or "your CosyVoice checkout"
        raise EngineUnavailable(
            f"CosyVoice needs the Python package {missing or error}",
            f"pip install -r {where}/requirements.txt (and git submodule update --init --recursive)",
        ) from error
    if checkout is not None:
        origin = Path(module.__file__).resolve()
        if checkout not in origin.parents:
            raise EngineUnavailable(
                f"another 'cosyvoice' package is imported from {origin}, not from {checkout}",
                "pip uninstall cosyvoice (the PyPI package of that name is unrelated to CosyVoice)",
            )
    return module


class CosyVoiceLocalTTS:
    """Zero-shot cloned speech from a local CosyVoice 2/3 model; load once, speak many times."""

    def __init__(
        self,
        checkout_dir: str | Path | None,
        model_dir: str | Path,
        *,
        reference_wav: str | Path,
        reference_text: str,
        language: str = "zh",
        cache_dir: str | Path | None = None,
        speed: float = 1.0,
        fp16: bool = False,
    ) -> None:
        """`cache_dir` keeps prompt WAVs and speaker features when the model folder is read-only
        (default: the toolkit cache, `$AVATAR_CACHE_DIR/cosyvoice`)."""
        if not 0.5 <= speed <= 2.0:
            raise InputError(f"speed must be within 0.5-2.0, got {speed}")
        self.checkout_dir = checkout_dir
        self.model_dir = Path(model_dir).expanduser().resolve()
        self.reference_wav = Path(reference_wav)
        self.reference_text = reference_text
        self.language = check_language(language)
        self.speed = speed
        self.fp16 = fp16
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._lock = threading.Lock()
        self._model = None
        self._layout: ModelLayout | None = None
        self._voice: ReferenceVoice | None = None
        self._entries: dict[str, dict] = {}  # pristine speaker entries, by id

    @property
    def model(self):
        """The upstream model object (CosyVoice2/CosyVoice3), for callers that need more."""
        return self._loaded()

    @property
    def sample_rate_hz(self) -> int:
        return int(self._loaded().sample_rate)

    @property
    def voice_id(self) -> str:
        self._loaded()
        return self._voice.voice_id

    def load(self) -> CosyVoiceLocalTTS:
        """Import the checkout, load the model, register the voice (blocking; seconds to minutes)."""
        if self._model is not None:
            return self
        voice = load_reference(self.reference_wav, self.reference_text)
        layout = inspect_model_dir(self.model_dir)
        module = import_cosyvoice(self.checkout_dir)
        model_class = getattr(module, layout.class_name, None)
        if model_class is None:
            raise EngineUnavailable(
                f"this CosyVoice checkout has no {layout.class_name} (needed by {self.model_dir.name})",
                "update the checkout: git pull && git submodule update --init --recursive",
            )
        # `final=True`: packaged forks (cosyvoice2-fr-infer) load `llm-original.pt` etc. unless
        # told that the folder holds the stock `llm.pt`, `flow.pt`, `hift.pt`.
        wanted = {"fp16": self.fp16, "load_jit": False, "load_trt": False, "final": True}
        accepted = inspect.signature(model_class).parameters
        kwargs = {name: value for name, value in wanted.items() if name in accepted}
        try:
            model = model_class(str(self.model_dir), **kwargs)
        except ImportError as error:
            raise EngineUnavailable(
                f"CosyVoice needs the Python package {getattr(error, 'name', None) or error}",
                "pip install -r requirements.txt in your CosyVoice checkout",
            ) from error
        except Exception as error:  # upstream raises ValueError/AssertionError/RuntimeError alike
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise EngineUnavailable(
                f"CosyVoice could not load {self.model_dir}: {reason}",
                "check that the model folder matches the checkout version",
            ) from error
        if not hasattr(model, "add_zero_shot_spk"):
            raise EngineUnavailable(
                "this CosyVoice checkout is too old to cache a voice (no add_zero_shot_spk)",
                "update the checkout: git pull && git submodule update --init --recursive",
            )
        self._model, self._layout, self._voice = model, layout, voice
        self._ensure_entry(voice.voice_id, prompt_text_for(layout.version, voice.text))
        return self

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        """All of `text` as one Speech (upstream's non-streaming mode, which is faster overall)."""
        chunks = list(self._chunks(split_text(text), emotion, stream=False))
        return join_speech(chunks, text, self.language, self.sample_rate_hz)

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """Chunks as upstream streams them; each carries its sentence, the sentence's last is_last."""
        return self._chunks(split_text(text), emotion, stream=True)

    def close(self) -> None:
        self._model = None
        self._entries.clear()

    def _loaded(self):
        if self._model is None:
            self.load()
        return self._model

    def _chunks(self, sentences: list[str], emotion: str | None, stream: bool) -> Iterator[TTSChunk]:
        model = self._loaded()
        for sentence in sentences:
            with self._lock:
                calls = self._upstream_calls(model, sentence, emotion, stream)
            pieces = (pcm for call in calls for pcm in self._run_locked(call))
            yield from sentence_chunks(pieces, sentence, self.language, int(model.sample_rate))

    def _upstream_calls(
        self, model, sentence: str, emotion: str | None, stream: bool
    ) -> list[Callable[[], Iterator]]:
        """The upstream generator(s) that speak `sentence`, not started yet."""
        instruction = instruct_text_for(self._layout.version, emotion)
        if instruction is not None and not hasattr(model, "inference_instruct2"):
            log.debug("%s has no inference_instruct2; emotion %r ignored", type(model).__name__, emotion)
            instruction = None
        if instruction is None:
            voice_id = self._voice.voice_id
            return [
                lambda: model.inference_zero_shot(
                    sentence, "", "", zero_shot_spk_id=voice_id, stream=stream, speed=self.speed
                )
            ]
        params = inspect.signature(model.inference_instruct2).parameters
        if "zero_shot_spk_id" not in params or "text_frontend" not in params:
            # older checkouts: instruct2 takes the prompt on every call and caches nothing
            prompt = self._prompt_argument(model)
            return [
                lambda: model.inference_instruct2(
                    sentence, instruction, prompt, stream=stream, speed=self.speed
                )
            ]
        entry_id = f"{self._voice.voice_id}-{emotion}"
        self._ensure_entry(entry_id, instruction)
        # instruct2 deletes keys from the cached entry on every text segment it speaks, so we
        # split the sentence as upstream would and hand it a fresh copy for each segment.
        segments = model.frontend.text_normalize(sentence, split=True, text_frontend=True)

        def segment_call(segment: str) -> Callable[[], Iterator]:
            def start() -> Iterator:
                model.frontend.spk2info[entry_id] = dict(self._entries[entry_id])
                return model.inference_instruct2(
                    segment,
                    instruction,
                    "",
                    zero_shot_spk_id=entry_id,
                    stream=stream,
                    speed=self.speed,
                    text_frontend=False,  # already normalized and split above
                )

            return start

        return [segment_call(segment) for segment in segments]

    def _run_locked(self, start: Callable[[], Iterator]) -> Iterator[np.ndarray]:
        """Step an upstream generator under the lock, never holding it across our own yield, so an
        abandoned stream cannot block other callers."""
        with self._lock:
            outputs = start()
            output = next(outputs, None)
        try:
            while output is not None:
                yield output["tts_speech"].detach().float().cpu().numpy().reshape(-1)
                with self._lock:
                    output = next(outputs, None)
        finally:
            outputs.close()

    # -- speaker entries: computed once per (voice, prompt text), persisted -----------------------

    def _ensure_entry(self, entry_id: str, prompt_text: str) -> None:
        if entry_id in self._entries:
            return
        model = self._model
        spk2info = model.frontend.spk2info
        entry = spk2info.get(entry_id)
        if not _usable(entry):
            entry = self._load_cached(entry_id)
            if _usable(entry):
                spk2info[entry_id] = dict(entry)
        if _usable(entry):
            self._entries[entry_id] = dict(entry)
            return
        log.info("computing CosyVoice speaker features for %s (once)", entry_id)
        model.add_zero_shot_spk(prompt_text, self._prompt_argument(model), entry_id)
        self._entries[entry_id] = dict(spk2info[entry_id])
        self._persist(entry_id)

    def _prompt_argument(self, model):
        """Upstream's prompt argument: a 16 kHz tensor (older API `prompt_speech_16k`) or a path
        to a WAV file (current API `prompt_wav`, which upstream loads itself)."""
        names = list(inspect.signature(model.add_zero_shot_spk).parameters)
        if len(names) > 1 and names[1] == "prompt_speech_16k":
            import torch

            return torch.from_numpy(np.ascontiguousarray(self._voice.pcm_16k)).unsqueeze(0)
        path = self._cache_root() / "prompts" / f"{self._voice.voice_id}.wav"
        if not path.is_file():
            self._voice.write_wav(path)
        return str(path)

    def _persist(self, entry_id: str) -> None:
        """`save_spkinfo()` into the model folder; our own copy when that folder cannot be written."""
        model = self._model
        if hasattr(model, "save_spkinfo") and os.access(self.model_dir, os.W_OK):
            spk2info = model.frontend.spk2info
            for known_id, entry in self._entries.items():  # never save an entry instruct2 damaged
                spk2info[known_id] = dict(entry)
            try:
                model.save_spkinfo()
                return
            except (OSError, RuntimeError) as error:  # torch.save raises RuntimeError for bad paths
                log.warning(
                    "cannot write %s/spk2info.pt (%s); keeping speaker features in the cache",
                    self.model_dir,
                    error,
                )
        import torch

        from avatar.core.storage import open_atomically

        path = self._entry_path(entry_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_atomically(path, "wb") as handle:
            torch.save(self._entries[entry_id], handle)

    def _load_cached(self, entry_id: str) -> dict | None:
        path = self._entry_path(entry_id)
        if not path.is_file():
            return None
        import torch

        device = getattr(self._model.frontend, "device", "cpu")
        try:
            return torch.load(path, map_location=device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as error:
            log.warning("ignoring unreadable speaker cache %s (%s)", path, error)
            return None

    def _entry_path(self, entry_id: str) -> Path:
        # Features depend on the model's tokenizer and encoder: one folder per model.
        key = hashlib.sha256(str(self.model_dir).encode() + self._layout.yaml_path.read_bytes()).hexdigest()[
            :16
        ]
        return self._cache_root() / "speakers" / key / f"{entry_id}.pt"

    def _cache_root(self) -> Path:
        if self._cache_dir is not None:
            return self._cache_dir
        from avatar.core.storage import cache_root

        return cache_root() / "cosyvoice"


def _usable(entry) -> bool:
    return isinstance(entry, dict) and all(key in entry for key in _ENTRY_KEYS)
