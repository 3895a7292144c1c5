"""``/v1/responses`` through the ``openai`` SDK: whole, streamed, a function tool and a
conversation continued by ``previous_response_id`` (the Responses tier's own cases live in
tests/serving/test_responses_api.py)."""

import json

import openai
import pytest

TOOL = {"type": "function", "name": "lookup", "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}


async def test_whole_with_reasoning(api):
    response = await api.openai.responses.create(model="think", input="Hello there")
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "echo: Hello there"
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.usage.output_tokens == 3


async def test_streamed(api):
    stream = await api.openai.responses.create(model="chat", input="one two", stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: one two"
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_function_tool_round_trip(api):
    first = await api.openai.responses.create(model="chat", input="ping", tools=[TOOL],
                                              tool_choice="required")
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "lookup" and json.loads(call.arguments) == {"input": "ping"}
    second = await api.openai.responses.create(
        model="chat", previous_response_id=first.id, tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "pong"}])
    assert second.status == "completed" and second.previous_response_id == first.id


async def test_previous_response_id_carries_the_conversation(api):
    first = await api.openai.responses.create(model="chat", input="My name is Ada",
                                              instructions="Be brief.")
    second = await api.openai.responses.create(model="chat", input="Who am I",
                                               previous_response_id=first.id)
    assert second.output_text == "echo: Who am I"
    history = api.cluster.models["chat"].replicas[0].calls[-1].context["history"]
    assert "echo: My name is Ada" in json.dumps(history)
    assert (await api.openai.responses.retrieve(second.id)).output_text == second.output_text


async def test_errors(api):
    with pytest.raises(openai.BadRequestError) as unknown:
        await api.openai.responses.create(model="chat", input="x", previous_response_id="resp_0")
    assert unknown.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as wrong_type:
        await api.openai.responses.create(model="embed", input="x")
    assert "does not serve chat" in wrong_type.value.message
