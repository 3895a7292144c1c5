"""The Anthropic dialect on synthetic generations: whole messages, event streams, the SDK's view."""

import asyncio
import json

import anthropic
import httpx2
import pydantic
import pytest

from xinference.errors import InvalidRequestError
from xinference.model.llm.deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from xinference.model.llm.serving import anthropic as dialect
from xinference.model.operations import Dialect, InferenceCall, Operation

EVENTS = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
BODY = {"model": "m", "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]}


class Config:
    model_uid = "m"


class Engine:
    """Answers every chat with the items it was given; records what it was asked."""

    config = Config()

    def __init__(self, *items, tokens=7):
        self.items, self.tokens, self.requests, self.closed = items, tokens, [], False

    def start_chat(self, request):
        self.requests.append(request)
        if request["messages"][-1].get("content") == "bad":
            raise InvalidRequestError("bad message", param="messages")
        return Generation(request_id="r1", created=0, n_choices=1, deltas=self._deltas())

    async def _deltas(self):
        try:
            for item in self.items:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed = True

    def count_chat_tokens(self, request):
        self.requests.append(request)
        return self.tokens


def call(operation=Operation.CHAT, stream=False, **body):
    return InferenceCall(operation, {**BODY, **body}, Dialect.ANTHROPIC, stream)


def answer(engine, **body):
    return asyncio.run(dialect.answer(engine, call(**body)))


def events(engine, **body):
    async def drain():
        return [e async for e in dialect.stream(engine, call(stream=True, **body))]
    return asyncio.run(drain())


THINK_AND_CALL = (
    ChoiceDelta(reasoning="Weather "), ChoiceDelta(reasoning="needed."),
    ChoiceDelta(content="\n\n"),
    ChoiceDelta(tool_calls=[ToolCallDelta(0, "call_A1", "get_weather", '{"city": ')]),
    ChoiceDelta(tool_calls=[ToolCallDelta(0, arguments='"Paris"}')]),
    ChoiceDelta(tool_calls=[ToolCallDelta(1, "call_B2", "get_time", "")],
                finish_reason="tool_calls"),
    Usage(prompt_tokens=20, completion_tokens=9, cached_tokens=4))


def test_whole_message_with_thinking_tool_use_and_usage():
    message = answer(Engine(*THINK_AND_CALL))
    assert message == {
        "id": "msg_r1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "thinking", "thinking": "Weather needed.", "signature": ""},
                    {"type": "tool_use", "id": "toolu_A1", "name": "get_weather",
                     "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_B2", "name": "get_time", "input": {}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 16, "output_tokens": 9, "cache_read_input_tokens": 4}}
    anthropic.types.Message.model_validate(message)


def test_stream_events_in_anthropic_order():
    out = events(Engine(*THINK_AND_CALL))
    for event in out:
        EVENTS.validate_python(event)
    assert [e["type"] for e in out] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_delta", "content_block_stop", "content_block_start",
        "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_stop", "message_delta", "message_stop"]
    start = out[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert out[1] == {"type": "content_block_start", "index": 0,
                      "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    assert out[4]["delta"] == {"type": "signature_delta", "signature": ""}
    assert out[6]["content_block"] == {"type": "tool_use", "id": "toolu_A1",
                                       "name": "get_weather", "input": {}}
    assert [e["delta"]["partial_json"] for e in out[7:9]] == ['{"city": ', '"Paris"}']
    assert [e["index"] for e in out[6:12]] == [1, 1, 1, 1, 2, 2]
    assert out[-2] == {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"input_tokens": 16, "output_tokens": 9,
                                 "cache_read_input_tokens": 4}}


def test_text_answer_keeps_its_whitespace():
    out = answer(Engine(ChoiceDelta(content="\n"), ChoiceDelta(content=" Hello"),
                        ChoiceDelta(content=" world", finish_reason="stop"),
                        Usage(prompt_tokens=5, completion_tokens=3)))
    assert out["content"] == [{"type": "text", "text": "\n Hello world"}]
    assert out["usage"] == {"input_tokens": 5, "output_tokens": 3}


@pytest.mark.parametrize("items, reason", [
    ((ChoiceDelta(content="a", finish_reason="stop"),), "end_turn"),
    ((ChoiceDelta(content="a", finish_reason="length"),), "max_tokens"),
    ((ChoiceDelta(tool_calls=[ToolCallDelta(0, "call_1", "f", "{}")],
                  finish_reason="tool_calls"),), "tool_use"),
    ((ChoiceDelta(tool_calls=[ToolCallDelta(0, "call_1", "f", "{}")],
                  finish_reason="stop"),), "tool_use"),
    ((ChoiceDelta(tool_calls=[ToolCallDelta(0, "call_1", "f", '{"a"')],
                  finish_reason="length"),), "max_tokens"),
    ((ChoiceDelta(content="a"),), "end_turn"),
])
def test_stop_reason_mapping(items, reason):
    message = answer(Engine(*items, Usage(1, 1)))
    assert message["stop_reason"] == reason and message["stop_sequence"] is None


def test_empty_answer_is_one_empty_text_block():
    message = answer(Engine(ChoiceDelta(finish_reason="stop"), Usage(3, 0)))
    assert message["content"] == [{"type": "text", "text": ""}]
    out = events(Engine(ChoiceDelta(content=" ", finish_reason="stop"), Usage(3, 1)))
    assert [e["type"] for e in out[1:4]] == ["content_block_start", "content_block_delta",
                                             "content_block_stop"]


def test_other_choices_and_bad_arguments():
    message = answer(Engine(
        ChoiceDelta(index=1, content="ignored"),
        ChoiceDelta(tool_calls=[ToolCallDelta(0, None, "f", "not json")], finish_reason="stop"),
        Usage(1, 1)))
    [block] = message["content"]
    assert block["input"] == {"arguments": "not json"} and block["id"].startswith("toolu_")


def test_request_is_converted_and_validated_eagerly():
    engine = Engine(Usage())
    with pytest.raises(InvalidRequestError):
        dialect.stream(engine, call(messages=[{"role": "user", "content": "bad"}]))
    with pytest.raises(InvalidRequestError):
        dialect.stream(engine, call(messages=[{"role": "user", "content": [{"type": "audio"}]}]))
    events(engine, thinking={"type": "enabled", "budget_tokens": 2000})
    assert engine.requests[-1]["chat_template_kwargs"] == {"enable_thinking": True}
    assert engine.requests[-1]["max_tokens"] == 32


@pytest.mark.parametrize("pulled", [1, 2, 3])
def test_closing_the_stream_stops_the_generation(pulled):
    engine = Engine(ChoiceDelta(content="a"), ChoiceDelta(content="b"), Usage())
    gen = engine.start_chat({"messages": [{"role": "user", "content": "x"}]})

    async def pull():
        stream = dialect.message_events(gen, "m")
        for _ in range(pulled):
            await stream.__anext__()
        await stream.aclose()
    asyncio.run(pull())
    assert gen.deltas.ag_frame is None
    assert engine.closed  # the generation starts before message_start goes out


def test_engine_error_mid_stream_propagates():
    engine = Engine(ChoiceDelta(content="a"), RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        events(engine)
    assert engine.closed


def test_count_tokens():
    engine = Engine(tokens=42)
    body = {"system": "S", "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    out = asyncio.run(dialect.answer(engine, call(Operation.COUNT_TOKENS, **body)))
    assert out == {"input_tokens": 42}
    assert engine.requests[-1]["messages"][0] == {"role": "system", "content": "S"}
    assert engine.requests[-1]["tools"][0]["function"]["name"] == "f"
    anthropic.types.MessageTokensCount.model_validate(out)
    with pytest.raises(InvalidRequestError, match="streamed token counting"):
        dialect.stream(engine, call(Operation.COUNT_TOKENS))


def sse(event_list):
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()
                    for e in event_list)


def test_the_sdk_accumulates_our_stream_into_our_message():
    whole = answer(Engine(*THINK_AND_CALL[:2], ChoiceDelta(content="It is sunny."),
                          *THINK_AND_CALL[3:]))
    frames = sse(events(Engine(*THINK_AND_CALL[:2], ChoiceDelta(content="It is sunny."),
                               *THINK_AND_CALL[3:])))
    transport = httpx2.MockTransport(lambda request: httpx2.Response(
        200, content=frames, headers={"content-type": "text/event-stream"}))
    client = anthropic.Anthropic(api_key="k", base_url="http://test",
                                 http_client=httpx2.Client(transport=transport))
    with client.messages.stream(model="m", max_tokens=32,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["It is sunny."]
    assert final.model_dump(exclude_none=True) == anthropic.types.Message.model_validate(
        whole).model_dump(exclude_none=True)
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.usage.input_tokens == 16 and final.stop_reason == "tool_use"


@pytest.mark.parametrize("matched, expected", [("END", ("stop_sequence", "END")),
                                               ("<|im_end|>", ("end_turn", None)),
                                               (None, ("end_turn", None))])
def test_a_requested_stop_sequence_is_named(matched, expected):
    engine = Engine(ChoiceDelta(content="a"),
                    ChoiceDelta(finish_reason="stop", stop_sequence=matched), Usage(3, 1))
    gen = engine.start_chat({"messages": [{"role": "user", "content": "x"}]})

    async def pull():
        return [e async for e in dialect.message_events(gen, "m", ["END"])]
    delta = asyncio.run(pull())[-2]["delta"]
    assert (delta["stop_reason"], delta["stop_sequence"]) == expected
