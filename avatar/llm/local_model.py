"""An optional LLM tier in-process: a local Hugging Face causal LM (e.g. Qwen2.5-0.5B-Instruct) on CPU/GPU.

For machines without a chat server. Weights come only from a local folder (`local_files_only`):
nothing downloads. Generation runs in a worker thread that feeds a `TextIteratorStreamer`; the
async side reads it piece by piece, so the sentence splitter gets the first words early. A barge-in
(the consumer closes the stream or is cancelled) raises a stop flag that a `StoppingCriteria`
checks after every token, and the worker thread is joined before the stream returns.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from avatar.core.errors import EngineUnavailable
from avatar.llm.prompt import SpokenTextFilter

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_STREAMER_TIMEOUT_S = 600.0  # a worker that died without ending the stream must not hang the reply forever


class TransformersLLM:
    """Streams chat replies from a local causal LM with the `stream(messages)` interface."""

    def __init__(
        self, model_dir: Path | str, device: str = "cpu", max_new_tokens: int = 200, temperature: float = 0.7
    ) -> None:
        """`temperature=0` decodes greedily (reproducible replies)."""
        self.model_dir = Path(model_dir)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.generated_tokens = 0  # of the last reply, for status pages and tests
        self._model = None
        self._tokenizer = None

    def load(self) -> TransformersLLM:
        """Blocking: check the folder, then load tokenizer and weights from it (never from the hub)."""
        _require_files(self.model_dir)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise EngineUnavailable(
                "the local LLM needs transformers and torch",
                "pip install transformers torch -c constraints.txt",
            ) from None
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        if not getattr(tokenizer, "chat_template", None):
            raise EngineUnavailable(
                f"the tokenizer in {self.model_dir} has no chat template",
                "use an instruct/chat model folder (its tokenizer_config.json or chat_template.jinja has one)",
            )
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, local_files_only=True)
        self._model = model.to(self.device).eval()
        self._tokenizer = tokenizer
        return self

    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        """The reply in pieces as the model writes it; closing the stream stops the model."""
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        if self._model is None:
            raise RuntimeError("TransformersLLM.load() must run before streaming")
        tokenizer = self._tokenizer
        inputs = tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages],
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
        ).to(self.device)
        streamer = TextIteratorStreamer(
            tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=_STREAMER_TIMEOUT_S
        )
        stop = threading.Event()
        self.generated_tokens = 0
        sampling = (
            {"do_sample": True, "temperature": self.temperature}
            if self.temperature > 0
            else {"do_sample": False}
        )
        failures: list[BaseException] = []

        def generate() -> None:
            try:
                self._model.generate(
                    **inputs,
                    streamer=streamer,
                    max_new_tokens=self.max_new_tokens,
                    stopping_criteria=StoppingCriteriaList([_StopFlag(stop, self)]),
                    pad_token_id=tokenizer.pad_token_id
                    if tokenizer.pad_token_id is not None
                    else tokenizer.eos_token_id,
                    **sampling,
                )
            except Exception as error:  # handed to the reader, which raises it in the session's task
                failures.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, name="TransformersLLM-generate", daemon=True)
        worker.start()
        spoken = SpokenTextFilter()
        pieces = iter(streamer)
        try:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                text = spoken.feed(piece)
                if text:
                    yield text
            if failures:
                raise failures[0]
            text = spoken.finish()
            if text:
                yield text
        finally:
            stop.set()
            await asyncio.to_thread(worker.join)


class _StopFlag:
    """A StoppingCriteria that ends generation when the reply's reader has gone (barge-in)."""

    def __init__(self, stop: threading.Event, owner: TransformersLLM) -> None:
        self.stop, self.owner = stop, owner

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.owner.generated_tokens += 1
        return torch.full(
            (input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device
        )


def _require_files(model_dir: Path) -> None:
    """One clear error naming the first file a usable model folder lacks."""
    fix = "download the model folder (config, weights, tokenizer) and pass its path"
    if not model_dir.is_dir():
        raise EngineUnavailable(f"the local LLM folder {model_dir} does not exist", fix)
    if not (model_dir / "config.json").is_file():
        raise EngineUnavailable(f"the local LLM folder {model_dir} has no config.json", fix)
    if not any((model_dir / name).is_file() for name in _WEIGHT_FILES):
        raise EngineUnavailable(f"the local LLM folder {model_dir} has no weights ({_WEIGHT_FILES[0]})", fix)
    if not any((model_dir / name).is_file() for name in _TOKENIZER_FILES):
        raise EngineUnavailable(
            f"the local LLM folder {model_dir} has no tokenizer ({_TOKENIZER_FILES[0]})", fix
        )
