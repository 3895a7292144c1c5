"""``/v1/messages`` through the official ``anthropic`` SDK: whole, streamed, thinking,
tool use, token counts, what reaches the engine, the model list under ``/anthropic`` and
Anthropic's error shape (before and after a stream started)."""

import json

import anthropic
import pytest
from harness import Api, sse_data

from xinference.errors import InvalidRequestError

TOOL = {"name": "lookup", "description": "Look a word up",
        "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}}}


def user(text):
    return [{"role": "user", "content": text}]


def ask(model="chat", text="hi there", **extra):
    return {"model": model, "max_tokens": 50, "messages": user(text), **extra}


def frames_of(body):
    return [frame for frame in body.split("\n\n") if frame.strip()]


async def test_message_whole_with_thinking(api):
    message = await api.anthropic().messages.create(**ask("think"))
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "think" and message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Thinking about the echo."
    assert message.content[1].text == "echo: hi there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 3)


async def test_system_and_extra_fields_reach_the_engine(api):
    await api.anthropic().messages.create(**ask(system="Be brief.", extra_body={"top_k": 5}))
    sent = api.cluster.models["chat"].requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1] == {"role": "user", "content": "hi there"}
    assert sent["top_k"] == 5 and sent["request_id"]


async def test_message_streamed_with_thinking(api):
    async with api.anthropic().messages.stream(**ask("think")) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    texts = [event.text for event in events if event.type == "text"]
    assert "".join(texts) == "echo: hi there" and len(texts) == 3
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[1].text == "echo: hi there" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 3)


async def test_raw_stream_frames_name_their_events(api):
    resp = await api.http.post("/v1/messages", json=ask("think", stream=True),
                               headers={"x-api-key": "anything"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    frames = frames_of(resp.text)
    names = [frame.split("\n")[0] for frame in frames]
    assert names[0] == "event: message_start" and names[-1] == "event: message_stop"
    assert "event: content_block_delta" in names
    for frame in frames:
        name, data = frame.split("\n")
        assert json.loads(data[len("data: "):])["type"] == name[len("event: "):]
    assert "[DONE]" not in resp.text


async def test_max_tokens_stop_reason(api):
    message = await api.anthropic().messages.create(model="chat", max_tokens=2,
                                                    messages=user("a b c d"))
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


async def test_forced_tool_use_and_its_result(api):
    client = api.anthropic()
    message = await client.messages.create(**ask("think", "hi", tools=[TOOL],
                                                 tool_choice={"type": "any"}))
    thinking, block = message.content
    assert thinking.type == "thinking" and message.stop_reason == "tool_use"
    assert block.type == "tool_use" and block.name == "lookup" and block.input == {"input": "hi"}
    assert block.id.startswith("toolu_")
    follow = await client.messages.create(model="think", max_tokens=50, tools=[TOOL], messages=[
        *user("hi"),
        {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                          for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                      "content": "a greeting"}]}])
    assert follow.stop_reason == "end_turn"
    model = api.cluster.models["think"]
    assert model.replicas[0].calls[-1].body["messages"][-1]["content"][0]["tool_use_id"] \
        == block.id
    sent = model.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"]
    assert sent[1]["tool_calls"][0]["id"] == "call_" + block.id[len("toolu_"):]
    assert sent[1]["reasoning_content"] == "Thinking about the echo."
    assert sent[2]["content"] == "a greeting"


async def test_count_tokens(api):
    counted = await api.anthropic().messages.count_tokens(
        model="chat", messages=user("one two three"), system="four")
    assert counted.input_tokens == 4
    bare = await api.http.post("/v1/messages/count_tokens",
                               json={"model": "chat", "messages": user("a b")})
    assert bare.json() == {"input_tokens": 2}


async def test_model_list_pages_and_lookup(api):
    models = api.cluster.models
    models["chat"].created, models["chat"].context_length = 1767225600, 2048
    models["think"].created, models["slow"].created = 1700000000, 1600000000
    models["embed"].created = 1800000000
    client = api.anthropic("/anthropic")
    page = await client.models.list()
    assert [m.id for m in page.data] == ["chat", "think", "slow"]
    first = page.data[0]
    assert first.type == "model" and first.display_name == "fake"
    assert first.created_at.year == 2026
    raw = (await api.http.get("/anthropic/v1/models", params={"limit": 1})).json()
    assert raw["has_more"] is True and raw["first_id"] == raw["last_id"] == "chat"
    assert raw["data"][0]["max_input_tokens"] == 2048
    rest = (await api.http.get("/anthropic/v1/models", params={"after_id": "chat"})).json()
    assert [m["id"] for m in rest["data"]] == ["think", "slow"] and rest["has_more"] is False
    before = (await api.http.get("/anthropic/v1/models", params={"before_id": "think"})).json()
    assert [m["id"] for m in before["data"]] == ["chat"]
    assert (await client.models.retrieve("chat")).id == "chat"
    with pytest.raises(anthropic.NotFoundError) as err:
        await client.models.retrieve("embed")
    assert err.value.body["error"]["type"] == "not_found_error"
    bad = await api.http.get("/anthropic/v1/models", params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["type"] == "error"


@pytest.mark.parametrize("model, messages, error, kind", [
    ("embed", user("hi"), anthropic.BadRequestError, "invalid_request_error"),
    ("chat", [], anthropic.BadRequestError, "invalid_request_error"),
    ("nope", user("hi"), anthropic.NotFoundError, "not_found_error"),
])
async def test_errors_take_anthropics_shape(api, model, messages, error, kind):
    with pytest.raises(error) as raised:
        await api.anthropic().messages.create(model=model, max_tokens=5, messages=messages)
    body = raised.value.body
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind


@pytest.mark.parametrize("body, named", [
    ({"model": "chat", "messages": user("x")}, "max_tokens"),
    ({"model": "chat", "max_tokens": 0, "messages": []}, "max_tokens"),
    ([1, 2], "object"),
    ({**ask(), "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     "'document'"),
    ({**ask(), "tools": [TOOL], "tool_choice": {"type": "tool", "name": "missing"}},
     "'missing'"),
])
async def test_invalid_bodies_are_400s_in_anthropics_shape(api, body, named):
    resp = await api.http.post("/anthropic/v1/messages", json=body)
    assert resp.status_code == 400
    error = resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert named in error["error"]["message"]


async def test_unknown_model_streamed_is_a_not_found_error(api):
    with pytest.raises(anthropic.NotFoundError) as err:
        async with api.anthropic().messages.stream(**ask("nope")) as stream:
            await stream.get_final_message()
    assert err.value.body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("streamed", [False, True])
async def test_engine_refusal_is_a_400(api, streamed):
    api.cluster.models["chat"].replicas[0].engine.refusal = InvalidRequestError(
        "The chat template rejected the messages", "messages")
    with pytest.raises(anthropic.BadRequestError) as err:
        await api.anthropic().messages.create(**ask(stream=streamed))
    assert err.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "The chat template rejected the messages"}}


async def test_error_mid_stream_is_an_error_event(cluster):
    cluster.models["slow"].replicas[0].fail_streams_after = 1
    async with Api.open(cluster) as api:
        resp = await api.http.post("/v1/messages", json=ask("slow", "a b c", stream=True))
    assert resp.status_code == 200
    assert resp.text.count("event: error") == 1 and "[DONE]" not in resp.text
    assert '"overloaded_error"' in sse_data(resp.text)[-1]


async def test_engine_failure_mid_stream_is_an_api_error_event(api):
    api.cluster.models["chat"].replicas[0].engine.failure = RuntimeError("engine fell over")
    resp = await api.http.post("/anthropic/v1/messages", json=ask(stream=True))
    assert resp.status_code == 200
    last = frames_of(resp.text)[-1]
    assert last.startswith("event: error\ndata: ")
    error = json.loads(last.split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "engine fell over" in error["error"]["message"]
    assert "message_stop" not in resp.text and "content_block_delta" in resp.text
    with pytest.raises(anthropic.APIStatusError) as err:
        async with api.anthropic().messages.stream(**ask()) as stream:
            await stream.get_final_message()
    assert "engine fell over" in str(err.value)
