"""``/v1/messages`` through the official ``anthropic`` SDK: whole, streamed, thinking,
tool use, token counts, the model list under ``/anthropic`` and Anthropic's error shape."""

import anthropic
import pytest
from harness import Api, sse_data

TOOL = {"name": "lookup", "description": "Look a word up",
        "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}}}


def user(text):
    return [{"role": "user", "content": text}]


async def test_message_whole_with_thinking(api):
    message = await api.anthropic().messages.create(model="think", max_tokens=50,
                                                    messages=user("hi there"))
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Thinking about the echo."
    assert message.content[1].text == "echo: hi there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 3)


async def test_message_streamed(api):
    async with api.anthropic().messages.stream(model="chat", max_tokens=50,
                                               messages=user("hi there")) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert final.content[0].text == "echo: hi there" and final.stop_reason == "end_turn"


async def test_max_tokens_stop_reason(api):
    message = await api.anthropic().messages.create(model="chat", max_tokens=2,
                                                    messages=user("a b c d"))
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


async def test_forced_tool_use_and_its_result(api):
    client = api.anthropic()
    message = await client.messages.create(model="chat", max_tokens=50, messages=user("hi"),
                                           tools=[TOOL], tool_choice={"type": "any"})
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "lookup" and block.input == {"input": "hi"}
    assert message.stop_reason == "tool_use"
    follow = await client.messages.create(model="chat", max_tokens=50, tools=[TOOL], messages=[
        *user("hi"), {"role": "assistant", "content": message.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                      "content": "a greeting"}]}])
    assert follow.stop_reason == "end_turn"
    sent = api.cluster.models["chat"].replicas[0].calls[-1].body["messages"]
    assert sent[-1]["content"][0]["tool_use_id"] == block.id


async def test_count_tokens(api):
    counted = await api.anthropic().messages.count_tokens(model="chat",
                                                          messages=user("hi there"))
    assert counted.input_tokens == 2


async def test_models_under_the_anthropic_prefix(api):
    page = await api.anthropic("/anthropic").models.list()
    assert [m.id for m in page.data] == ["chat", "slow", "think"]


@pytest.mark.parametrize("model, messages, error", [
    ("embed", user("hi"), anthropic.BadRequestError),
    ("chat", [], anthropic.BadRequestError),
    ("nope", user("hi"), anthropic.NotFoundError),
])
async def test_errors_take_anthropics_shape(api, model, messages, error):
    with pytest.raises(error) as raised:
        await api.anthropic().messages.create(model=model, max_tokens=5, messages=messages)
    body = raised.value.body
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}


async def test_error_mid_stream_is_an_error_event(cluster):
    cluster.models["slow"].replicas[0].fail_streams_after = 1
    async with Api.open(cluster) as api:
        resp = await api.http.post("/v1/messages", json={
            "model": "slow", "max_tokens": 50, "stream": True, "messages": user("a b c")})
    assert resp.status_code == 200
    assert resp.text.count("event: error") == 1 and "[DONE]" not in resp.text
    assert '"overloaded_error"' in sse_data(resp.text)[-1]
