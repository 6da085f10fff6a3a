"""The OpenAI-compatible client against a scripted local server: streaming, retries, fallbacks, barge-in."""

from __future__ import annotations

import asyncio
import time

import pytest

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.system_tools import free_port
from avatar.core.types import Transcript
from avatar.live.conversation import _user_content
from avatar.llm.openai_compat import DEFAULT_FALLBACK_LINE, OpenAICompatibleLLM, _sse_data
from avatar.llm.prompt import system_prompt
from avatar.speech.sentence_stream import SentenceStream, SpokenSentence
from tests.fake_openai_server import FakeOpenAIServer, ScriptedReply, error_reply
from tests.stream_stopping import read_then_stop

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]
ENV_NAMES = (
    "AVATAR_LLM_BASE_URL",
    "OPENAI_BASE_URL",
    "AVATAR_LLM_MODEL",
    "OPENAI_MODEL",
    "AVATAR_LLM_API_KEY",
    "OPENAI_API_KEY",
)


@pytest.fixture(autouse=True)
def no_llm_environment(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def client(server_or_url, **options) -> OpenAICompatibleLLM:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    options = {"backoff_s": 0.01, "first_token_timeout_s": 10.0} | options
    return OpenAICompatibleLLM(url, "tiny-model", options.pop("api_key", None), **options)


def collect(llm: OpenAICompatibleLLM, messages=MESSAGES, on_piece=None) -> list[str]:
    async def main():
        pieces = []
        try:
            async for piece in llm.stream(messages):
                pieces.append(piece)
                if on_piece is not None:
                    on_piece(piece)
        finally:
            await llm.aclose()
        return pieces

    return asyncio.run(main())


def test_pieces_arrive_while_the_server_is_still_writing_and_join_to_the_reply():
    tokens = ("Hello", " there", "!", " How", " are", " you", "?")
    reply = ScriptedReply(tokens, token_delay_s=0.05, reasoning=("Let me think.",), keepalive_comments=True)
    with FakeOpenAIServer([reply]) as server:
        llm = client(server, api_key="sk-test", max_tokens=50, temperature=0.2)
        sent_at_first_piece = []
        pieces = collect(llm, on_piece=lambda _: sent_at_first_piece.append(server.requests[0].tokens_sent))
    assert "".join(pieces) == "Hello there! How are you?"  # reasoning and keep-alives are not spoken
    assert sent_at_first_piece[0] < len(tokens)  # streamed, not buffered until the end
    request = server.chat_requests[0]
    assert request.body == {
        "model": "tiny-model",
        "messages": MESSAGES,
        "stream": True,
        "temperature": 0.2,
        "max_tokens": 50,
    }
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.completed and llm.last_error is None


def test_no_authorization_header_without_a_key():
    with FakeOpenAIServer([ScriptedReply(("Hi.",))]) as server:
        assert collect(client(server)) == ["Hi."]
    assert "Authorization" not in server.chat_requests[0].headers


def test_events_split_across_tcp_chunks_and_multibyte_characters_are_reassembled():
    tokens = ("[hap", "py] 你好，", "欢迎光临。", " Nice", " to meet you.")
    with FakeOpenAIServer([ScriptedReply(tokens, split_bytes=7, keepalive_comments=True)]) as server:
        pieces = collect(client(server))
    assert "".join(pieces) == "[happy] 你好，欢迎光临。 Nice to meet you."


def test_a_server_that_ignores_stream_true_still_gives_its_reply():
    with FakeOpenAIServer([ScriptedReply(("[happy] **All**", " in one go."), as_sse=False)]) as server:
        assert "".join(collect(client(server))) == "[happy] All in one go."


def test_the_sse_parser_handles_crlf_comments_multiline_data_and_a_missing_final_blank_line():
    raw = b': hello\r\n\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\ndata:2\n\n\ndata: [DONE]'

    async def events(step: int) -> list[str]:
        async def chunks():
            for start in range(0, len(raw), step):
                yield raw[start : start + step]

        return [data async for data in _sse_data(chunks())]

    for step in (1, 2, 5, len(raw)):
        assert asyncio.run(events(step)) == ['{"a":\n1}', "2", "[DONE]"]


def test_server_errors_are_retried_until_a_reply_comes():
    replies = [error_reply(500, "boom"), error_reply(503, "overloaded"), ScriptedReply(("Back", " again."))]
    with FakeOpenAIServer(replies) as server:
        llm = client(server, max_retries=2)
        assert "".join(collect(llm)) == "Back again."
    assert len(server.chat_requests) == 3
    assert llm.last_error is None


def test_when_every_retry_fails_the_fallback_line_is_spoken():
    with FakeOpenAIServer([error_reply(500, "boom")]) as server:
        llm = client(server, max_retries=1, fallback_line="[sad] Try later.")
        assert collect(llm) == ["[sad] Try later."]
    assert len(server.chat_requests) == 2
    assert "HTTP 500" in llm.last_error and "boom" in llm.last_error


def test_429_waits_for_retry_after():
    replies = [error_reply(429, "slow down", **{"Retry-After": "0.4"}), ScriptedReply(("Ok.",))]
    with FakeOpenAIServer(replies) as server:
        assert collect(client(server)) == ["Ok."]
    first, second = server.chat_requests
    assert second.received_at_s - first.received_at_s >= 0.35  # backoff alone would be 0.01 s


def test_429_asking_for_longer_than_the_cap_gives_up_at_once():
    with FakeOpenAIServer([error_reply(429, "quota", **{"Retry-After": "3600"})]) as server:
        llm = client(server)
        assert collect(llm) == [DEFAULT_FALLBACK_LINE]
    assert len(server.chat_requests) == 1
    assert "429" in llm.last_error and "3600" in llm.last_error


def test_a_refused_key_is_not_retried_and_the_reason_names_the_fix():
    with FakeOpenAIServer([error_reply(401, "Incorrect API key provided")]) as server:
        llm = client(server, api_key="sk-wrong")
        assert collect(llm) == [DEFAULT_FALLBACK_LINE]
    assert len(server.chat_requests) == 1
    assert "refused the API key" in llm.last_error and "AVATAR_LLM_API_KEY" in llm.last_error
    assert "Incorrect API key provided" in llm.last_error


def test_an_unknown_model_is_not_retried_and_the_reason_names_the_model():
    with FakeOpenAIServer([error_reply(404, "model 'tiny-model' not found")]) as server:
        llm = client(server)
        assert collect(llm) == [DEFAULT_FALLBACK_LINE]
    assert len(server.chat_requests) == 1
    assert "no model 'tiny-model'" in llm.last_error and "AVATAR_LLM_MODEL" in llm.last_error


def test_an_unreachable_server_gives_the_fallback_without_waiting_for_the_timeout():
    llm = client(f"http://127.0.0.1:{free_port()}/v1", first_token_timeout_s=30.0, max_retries=2)
    started = time.monotonic()
    assert collect(llm) == [DEFAULT_FALLBACK_LINE]
    assert time.monotonic() - started < 5.0
    assert "cannot reach the LLM" in llm.last_error and "connection refused" in llm.last_error


def test_no_first_token_in_time_gives_the_fallback_and_hangs_up():
    with FakeOpenAIServer([ScriptedReply(("Too", " late."), first_token_delay_s=30.0)]) as server:
        llm = client(server, first_token_timeout_s=0.5)
        assert collect(llm) == [DEFAULT_FALLBACK_LINE]
        assert server.chat_requests[0].client_gone.wait(2.0)
    assert "within 0.5 s" in llm.last_error
    assert len(server.chat_requests) == 1  # the deadline covers retries too


@pytest.mark.parametrize("failure", ["drop_after_tokens", "error_after_tokens"])
def test_a_failure_after_the_first_words_ends_the_reply_with_what_was_said(failure):
    reply = ScriptedReply(("One", " two", " three", " four."), token_delay_s=0.01, **{failure: 2})
    with FakeOpenAIServer([reply]) as server:
        llm = client(server)
        assert "".join(collect(llm)) == "One two"
    assert len(server.chat_requests) == 1  # never restarted once words were spoken
    assert llm.last_error.startswith("the reply broke off")


@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_barge_in_closes_the_http_connection(how):
    tokens = tuple(f" word{i}" for i in range(100))
    with FakeOpenAIServer([ScriptedReply(tokens, token_delay_s=0.02)]) as server:
        llm = client(server)

        async def main():
            try:
                return await read_then_stop(llm.stream(MESSAGES), how, poll_s=0.005)
            finally:
                await llm.aclose()

        got = asyncio.run(main())
        request = server.chat_requests[0]
        assert request.client_gone.wait(2.0)
    assert len(got) >= 3
    assert request.tokens_sent < len(tokens) and not request.completed


def test_a_session_like_request_carries_the_persona_prompt_and_the_emotion_note():
    transcript = Transcript("Where is my parcel?", "en", emotion="ANGRY", events=("Cough",))
    messages = [
        {"role": "system", "content": system_prompt("You are Mona, the shop's assistant.")},
        {"role": "user", "content": _user_content(transcript)},
    ]
    tokens = ("[s", "ad] I am **so** sorry", " about that! ", "[exci", "ted] It ships", " today.")
    with FakeOpenAIServer([ScriptedReply(tokens, split_bytes=11)]) as server:
        pieces = collect(client(server), messages)
    sent = server.chat_requests[0].body["messages"]
    assert sent[0]["content"].startswith("You are Mona, the shop's assistant.")
    assert "[happy]" in sent[0]["content"]
    assert sent[1]["content"] == "Where is my parcel? (speaker sounds angry; audio events: Cough)"
    splitter = SentenceStream()
    spoken = [sentence for piece in pieces for sentence in splitter.feed(piece)] + splitter.finish()
    assert spoken == [
        SpokenSentence("I am so sorry about that!", "sad"),
        SpokenSentence("It ships today.", "happy"),
    ]


def test_check_lists_models_and_explains_what_is_wrong():
    with FakeOpenAIServer([ScriptedReply(("Hi.",))], models=("tiny-model", "other")) as server:
        assert client(server).check() == ["tiny-model", "other"]
    with (
        FakeOpenAIServer([error_reply(401, "bad key")]) as server,
        pytest.raises(EngineUnavailable) as refused,
    ):
        client(server, api_key="sk-wrong").check()
    assert "refused the API key" in str(refused.value) and "AVATAR_LLM_API_KEY" in str(refused.value)
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineUnavailable, match=r"cannot reach the LLM at .* \(connection refused\)"):
        client(url).check()


def test_configuration_comes_from_arguments_then_the_environment(monkeypatch):
    with pytest.raises(EngineUnavailable, match="no LLM server is configured"):
        OpenAICompatibleLLM(model="m")
    with pytest.raises(EngineUnavailable, match="no LLM model name"):
        OpenAICompatibleLLM("http://127.0.0.1:11434/v1")
    with pytest.raises(InputError, match="cannot use the LLM URL"):
        OpenAICompatibleLLM("localhost:11434", "m")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-test")
    llm = OpenAICompatibleLLM()
    assert (llm.base_url, llm.model, llm.api_key) == ("https://api.openai.com/v1", "gpt-test", "sk-env")
    monkeypatch.setenv("AVATAR_LLM_BASE_URL", "http://127.0.0.1:8080/v1/")
    monkeypatch.setenv("AVATAR_LLM_MODEL", "qwen")
    llm = OpenAICompatibleLLM()
    assert (llm.base_url, llm.model) == ("http://127.0.0.1:8080/v1", "qwen")
    assert OpenAICompatibleLLM("http://example.test/v1", "x", "sk-arg").api_key == "sk-arg"
