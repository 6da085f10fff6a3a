"""The local transformers LLM on a tiny random Llama made here, with a word-level tokenizer trained here."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from avatar.core.errors import EngineUnavailable
from avatar.llm.local_model import TransformersLLM
from tests.stream_stopping import read_then_stop

CORPUS = [
    "hello there how are you",
    "i am fine thank you",
    "the shop opens at nine",
    "we sell tea and coffee",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MESSAGES = [
    {"role": "system", "content": "Be nice."},
    {"role": "user", "content": "hello there", "name": "ann"},
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 1-layer, 16-wide Llama whose output head is zero, so greedy decoding always picks token 0
    (a plain word, "you"): a reply is exactly `max_new_tokens` words unless it is stopped."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(CORPUS, trainers.WordLevelTrainer())
    vocab = tokenizer.get_vocab()
    tokenizer.model = models.WordLevel(vocab=vocab | {"<unk>": len(vocab)}, unk_token="<unk>")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    folder = tmp_path_factory.mktemp("tiny-llm")
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.lm_head.weight.data.zero_()
    model.save_pretrained(folder)
    assert fast.convert_ids_to_tokens(0) == "you"
    return folder


def generation_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "TransformersLLM-generate"]


def test_a_reply_streams_as_strings_and_stops_at_max_new_tokens(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, max_new_tokens=7, temperature=0).load()

    async def main():
        return [piece async for piece in llm.stream(MESSAGES)]

    pieces = asyncio.run(main())
    assert len(pieces) > 1 and all(isinstance(piece, str) for piece in pieces)
    assert "".join(pieces).split() == ["you"] * 7
    assert llm.generated_tokens == 7
    assert not generation_threads()


@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_closing_the_stream_stops_generation_and_joins_the_thread(tiny_model_dir, how):
    llm = TransformersLLM(tiny_model_dir, max_new_tokens=3000, temperature=0).load()

    got = asyncio.run(read_then_stop(llm.stream(MESSAGES), how))
    assert len(got) >= 3
    assert llm.generated_tokens < 3000  # stopped by the flag, not by max_new_tokens
    assert not generation_threads()


def test_a_sampled_reply_streams_too(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, max_new_tokens=4, temperature=0.7).load()

    async def main():
        return [piece async for piece in llm.stream(MESSAGES)]

    pieces = asyncio.run(main())  # a zero head samples uniformly: any words, possibly an early end
    assert all(isinstance(piece, str) for piece in pieces)
    assert 1 <= llm.generated_tokens <= 4


def test_a_missing_folder_or_file_is_named(tiny_model_dir, tmp_path):
    with pytest.raises(EngineUnavailable, match="does not exist"):
        TransformersLLM(tmp_path / "nowhere").load()
    for missing, named in (
        ("config.json", "config.json"),
        ("model.safetensors", "model.safetensors"),
        ("tokenizer.json", "tokenizer.json"),
    ):
        folder = tmp_path / missing
        shutil.copytree(tiny_model_dir, folder)
        (folder / missing).unlink()
        with pytest.raises(EngineUnavailable, match=rf"has no .*{named}"):
            TransformersLLM(folder).load()


def test_a_tokenizer_without_a_chat_template_is_refused(tiny_model_dir, tmp_path):
    folder = tmp_path / "base-model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(EngineUnavailable, match="no chat template"):
        TransformersLLM(folder).load()
