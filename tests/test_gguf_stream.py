"""GGUFChatModel's streaming logic against a scripted llama.cpp server (no model): what reaches the
sentence stream, failures, a full context, barge-in and one reply at a time."""

from __future__ import annotations

import asyncio

import pytest

from avatar.core.errors import EngineUnavailable, InputError
from avatar.llm.gguf import GGUFChatModel, check_gguf_file, packaged_gguf
from avatar.llm.openai_compat import DEFAULT_FALLBACK_LINE
from tests.stream_stopping import read_then_stop
from tests.support.fake_gguf_server import FakeGGUFServer, error_chunk, reply_chunks

MESSAGES = [
    {"role": "system", "content": "You are Mona."},
    {"role": "user", "content": "Hello!", "name": "ann"},
]


def model_on(server: FakeGGUFServer, **options) -> GGUFChatModel:
    model = GGUFChatModel("scripted.gguf", **options)
    model._server = server  # what load() would have started
    return model


async def reply(model: GGUFChatModel, messages=MESSAGES) -> str:
    return "".join([piece async for piece in model.stream(messages)])


def test_the_reply_is_speakable_text_with_known_tags_only():
    server = FakeGGUFServer(reply_chunks("[exc", "ited] **Great**", " question!\n- We open", " at 9."))
    assert asyncio.run(reply(model_on(server))) == "[happy] Great question! We open at 9."
    body = server.requests[0].body
    assert body["stream"] is True and body["max_tokens"] > 0
    assert body["messages"] == [{"role": m["role"], "content": m["content"]} for m in MESSAGES]  # no "name"


def test_a_failure_before_the_first_word_speaks_the_fallback_line():
    model = model_on(FakeGGUFServer(error_chunk("out of memory")))
    assert asyncio.run(reply(model)) == DEFAULT_FALLBACK_LINE
    assert "out of memory" in model.last_error


def test_a_failure_after_some_words_ends_the_reply_with_what_was_said():
    server = FakeGGUFServer(reply_chunks("We open at nine.")[:-1] + error_chunk("slot crashed"))
    model = model_on(server)
    assert asyncio.run(reply(model)) == "We open at nine."
    assert "slot crashed" in model.last_error


def test_a_conversation_too_long_for_the_context_is_answered_from_its_last_turn():
    too_long = error_chunk("the request exceeds the available context size", "exceed_context_size_error")
    server = FakeGGUFServer(too_long, reply_chunks("Nine."))
    history = [
        MESSAGES[0],
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "When do you open?"},
    ]
    model = model_on(server)
    assert asyncio.run(reply(model, history)) == "Nine."
    assert [m["content"] for m in server.requests[1].body["messages"]] == [
        "You are Mona.",
        "When do you open?",
    ]
    assert model.last_error is None


def test_a_reply_is_prompted_with_the_last_exchanges_only():
    """The cost of a turn stays bounded: persona + the last `history_messages` messages."""
    history = [MESSAGES[0]]
    for turn in range(5):
        history += [{"role": "user", "content": f"q{turn}"}, {"role": "assistant", "content": f"a{turn}"}]
    history.append({"role": "user", "content": "q5"})
    server = FakeGGUFServer(reply_chunks("Nine."))
    assert asyncio.run(reply(model_on(server, history_messages=4), history)) == "Nine."
    sent = [m["content"] for m in server.requests[0].body["messages"]]
    assert sent == ["You are Mona.", "q4", "a4", "q5"]  # never an assistant message first
    with pytest.raises(ValueError, match="at least 1"):
        GGUFChatModel("scripted.gguf", history_messages=0)


@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_barge_in_stops_generation_and_frees_the_model(how):
    words = [f" word{i}" for i in range(200)]
    server = FakeGGUFServer(reply_chunks(*words), reply_chunks("Next."), chunk_delay_s=0.005)
    model = model_on(server)

    async def main():
        got = await read_then_stop(model.stream(MESSAGES), how, pieces=3)
        first = server.requests[0]
        assert first.finished.is_set(), "the worker thread must be done when the stream has closed"
        delivered = first.delivered
        await asyncio.sleep(0.05)
        assert first.delivered == delivered  # no chunk arrives after the stop
        return got, await reply(model)

    got, after = asyncio.run(main())
    first = server.requests[0]
    assert len(got) == 3 and first.stopped and first.delivered <= 3 + 3  # role chunk + one in flight
    assert after == "Next." and not model.queue.busy


def test_sessions_take_turns_in_arrival_order_one_reply_at_a_time():
    server = FakeGGUFServer(*(reply_chunks(f"Reply {n}.", " More.") for n in range(3)), chunk_delay_s=0.01)
    model = model_on(server)

    async def session(n: int) -> str:
        await asyncio.sleep(0.002 * n)  # arrive in order 0, 1, 2
        return await reply(model, [{"role": "user", "content": f"question {n}"}])

    async def main():
        return await asyncio.gather(*(session(n) for n in range(3)))

    answers = asyncio.run(main())
    assert answers == ["Reply 0. More.", "Reply 1. More.", "Reply 2. More."]
    assert [r.body["messages"][0]["content"] for r in server.requests] == [f"question {n}" for n in range(3)]
    assert server.max_active == 1 and model.queue.turns_granted == 3


def test_model_files_are_checked_before_llama_cpp_sees_them(tmp_path):
    with pytest.raises(EngineUnavailable, match="does not exist"):
        check_gguf_file(tmp_path / "missing.gguf")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(InputError, match="not a GGUF file") as caught:
        check_gguf_file(not_gguf)
    assert "\n" not in str(caught.value) and "--llm-model-path" in str(caught.value)
    with pytest.raises(InputError, match="not a file"):
        check_gguf_file(tmp_path)
    assert packaged_gguf("no-such-distribution") is None
