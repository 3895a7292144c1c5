"""``/v1/responses`` through the ``openai`` SDK: whole, streamed, stored (retrieve, input
items, delete), a function tool, a conversation continued by ``previous_response_id`` as
the engine receives it, cuts by ``max_output_tokens`` and errors before and mid-stream."""

import json

import openai
import pytest
from harness import Api

from xinference.errors import ModelUnavailableError

TOOL = {"type": "function", "name": "lookup", "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}


async def test_whole_with_reasoning_is_stored_until_deleted(api):
    responses = api.openai.responses
    response = await responses.create(model="think", input="Hello there",
                                      instructions="Be brief.", metadata={"k": "v"})
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "echo: Hello there"
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.usage.output_tokens == 3 and response.metadata == {"k": "v"}
    again = await responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()
    items = await responses.input_items.list(response.id)
    assert [item.type for item in items.data] == ["message"]
    assert items.data[0].content[0].text == "Hello there"
    await responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        await responses.delete(response.id)


async def test_streamed(api):
    stream = await api.openai.responses.create(model="chat", input="one two", stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: one two"
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_streamed_response_is_stored_and_accumulated_by_the_sdk(api):
    async with api.openai.responses.stream(model="think", input="one two three") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in kinds
    assert final.output_text == "echo: one two three"
    stored = await api.openai.responses.retrieve(final.id)
    assert stored.output_text == final.output_text
    follow = await api.openai.responses.create(model="think", input="more",
                                               previous_response_id=final.id)
    assert api.cluster.models["think"].requests[-1]["messages"][1]["content"] \
        == "echo: one two three"
    assert follow.status == "completed"


async def test_function_tool_round_trip(api):
    first = await api.openai.responses.create(model="chat", input="ping", tools=[TOOL],
                                              tool_choice="required")
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "lookup" and json.loads(call.arguments) == {"input": "ping"}
    second = await api.openai.responses.create(
        model="chat", previous_response_id=first.id, tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "pong"}])
    assert second.status == "completed" and second.previous_response_id == first.id
    messages = api.cluster.models["chat"].requests[-1]["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "pong"}


async def test_function_call_streamed(api):
    async with api.openai.responses.stream(model="think", input="ping", tools=[TOOL],
                                           tool_choice="required") as stream:
        streamed = await stream.get_final_response()
    assert [item.type for item in streamed.output] == ["reasoning", "function_call"]
    assert streamed.output[1].name == "lookup"
    assert streamed.output[1].arguments == '{"input": "ping"}'


async def test_previous_response_id_carries_the_conversation(api):
    first = await api.openai.responses.create(model="think", input="My name is Ada",
                                              instructions="Be brief.")
    second = await api.openai.responses.create(model="think", input="Who am I",
                                               previous_response_id=first.id)
    assert second.output_text == "echo: Who am I"
    model = api.cluster.models["think"]
    history = model.replicas[0].calls[-1].context["history"]
    assert "echo: My name is Ada" in json.dumps(history)
    messages = model.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "echo: My name is Ada"
    assert messages[1]["reasoning_content"] == "Thinking about the echo."
    assert (await api.openai.responses.retrieve(second.id)).output_text == second.output_text
    third = await api.openai.responses.create(model="think", input="And now",
                                              previous_response_id=second.id)
    assert len(model.requests[-1]["messages"]) == 5 and third.status == "completed"


async def test_cut_by_max_output_tokens_is_incomplete_whole_and_streamed(api):
    whole = await api.openai.responses.create(model="chat", input="a b c d e f",
                                              max_output_tokens=2)
    assert whole.status == "incomplete"
    assert whole.incomplete_details.reason == "max_output_tokens"
    events = [e async for e in await api.openai.responses.create(
        model="chat", input="a b c d e f", max_output_tokens=2, stream=True)]
    assert events[-1].type == "response.incomplete"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    stored = await api.openai.responses.retrieve(events[-1].response.id)
    assert stored.status == "incomplete"


async def test_errors(api):
    with pytest.raises(openai.BadRequestError) as unknown:
        await api.openai.responses.create(model="chat", input="x", previous_response_id="resp_0")
    assert unknown.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as wrong_type:
        await api.openai.responses.create(model="embed", input="x")
    assert "does not serve chat" in wrong_type.value.message
    with pytest.raises(openai.BadRequestError) as hosted:
        await api.openai.responses.create(model="chat", input="x",
                                          tools=[{"type": "web_search"}])
    assert "web_search" in hosted.value.message
    with pytest.raises(openai.BadRequestError) as invalid:
        await api.openai.responses.create(model="chat", input="x", temperature=5)
    assert invalid.value.body["param"] == "temperature"


async def test_store_false_keeps_nothing(api):
    unstored = await api.openai.responses.create(model="chat", input="x", store=False)
    assert unstored.status == "completed"
    with pytest.raises(openai.NotFoundError):
        await api.openai.responses.retrieve(unstored.id)


async def test_store_size_zero_keeps_nothing(cluster):
    async with Api.open(cluster, responses_store_size=0) as api:
        first = await api.openai.responses.create(model="chat", input="x")
        with pytest.raises(openai.BadRequestError) as err:
            await api.openai.responses.create(model="chat", input="y",
                                              previous_response_id=first.id)
    assert err.value.code == "previous_response_not_found"


async def test_failure_mid_stream_ends_with_an_error_event(api):
    (replica,) = api.cluster.models["chat"].replicas
    replica.engine.failure = ModelUnavailableError("the model's process died")
    events = [e async for e in await api.openai.responses.create(model="chat", input="x",
                                                                 stream=True)]
    assert events[-1].type == "error" and "died" in events[-1].message
    assert events[-1].code == "model_unavailable"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds and "response.completed" not in kinds
