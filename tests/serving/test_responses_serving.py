"""The Responses dialect over synthetic generations: whole answers and typed event streams,
each checked against the openai SDK's own types."""

from __future__ import annotations

import asyncio

import pytest
from openai.types.responses import Response

from xinference.errors import InvalidRequestError
from xinference.model.llm.deltas import ChoiceDelta, Usage
from xinference.model.llm.serving import answer, stream

from responses_fakes import EVENTS, ReplayEngine, call, call_items, text_items


def _answer(engine, body, **kw):
    return asyncio.run(answer(engine, call(body, **kw)))


def _events(engine, body, **kw):
    async def collect():
        return [e async for e in stream(engine, call(body, stream=True, **kw))]
    return asyncio.run(collect())


def _types(events):
    return [e["type"] for e in events]


def test_whole_answer_is_an_sdk_response():
    engine = ReplayEngine(text_items("Hel", "lo", reasoning="Greet them."))
    body = {"input": "Hi", "instructions": "Be kind.", "max_output_tokens": 50,
            "metadata": {"a": "b"}, "temperature": 0.5}
    out = _answer(engine, body)
    parsed = Response.model_validate(out)
    assert parsed.id.startswith("resp_") and parsed.object == "response"
    assert parsed.status == "completed" and parsed.model == "m1"
    assert [i.type for i in parsed.output] == ["reasoning", "message"]
    assert parsed.output[0].summary[0].text == "Greet them."
    assert parsed.output_text == "Hello"
    assert parsed.usage.input_tokens == 7 and parsed.usage.output_tokens == 2
    assert parsed.usage.total_tokens == 9
    assert parsed.usage.input_tokens_details.cached_tokens == 2
    assert parsed.usage.output_tokens_details.reasoning_tokens == 1
    assert parsed.instructions == "Be kind." and parsed.max_output_tokens == 50
    assert parsed.metadata == {"a": "b"} and parsed.temperature == 0.5 and parsed.store
    assert parsed.error is None and parsed.incomplete_details is None
    assert engine.requests[0]["messages"][0] == {"role": "system", "content": "Be kind."}


def test_whole_answer_with_function_call():
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    out = _answer(ReplayEngine(call_items(lead="\n")), {"input": "Weather?", "tools": tools})
    parsed = Response.model_validate(out)
    assert [i.type for i in parsed.output] == ["function_call"]
    fc = parsed.output[0]
    assert fc.id.startswith("fc_") and fc.call_id == "call_1" and fc.name == "get_weather"
    assert fc.arguments == '{"city": "Paris"}' and fc.status == "completed"
    assert parsed.tools[0].name == "get_weather"


def test_whole_answer_cut_by_length_is_incomplete():
    parsed = Response.model_validate(
        _answer(ReplayEngine(text_items("a", "b", finish="length")), {"input": "x"}))
    assert parsed.status == "incomplete"
    assert parsed.incomplete_details.reason == "max_output_tokens"
    assert parsed.output[0].status == "incomplete"


def test_history_reaches_the_engine():
    engine = ReplayEngine(text_items("Ada"))
    history = [{"role": "user", "content": "I am Ada"}, {"role": "assistant", "content": "Hi"}]
    _answer(engine, {"input": "Who am I?", "previous_response_id": "resp_x"}, history=history)
    assert [m["content"] for m in engine.requests[0]["messages"]] == ["I am Ada", "Hi",
                                                                      "Who am I?"]


def _check_stream(events):
    """Every event parses as the SDK's union, numbered 0, 1, 2 ... in order."""
    for event in events:
        EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert _types(events)[:2] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] == "in_progress"


def test_stream_of_reasoning_and_text():
    events = _events(ReplayEngine(text_items("Hel", "lo", reasoning="Think.")), {"input": "Hi"})
    _check_stream(events)
    assert _types(events)[2:] == [
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ["Hel", "lo"]
    assert {d["output_index"] for d in deltas} == {1}
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.output_text == "Hello"
    assert final.output[1].id == deltas[0]["item_id"]


def test_stream_of_function_call_skips_blank_text():
    events = _events(ReplayEngine(call_items(lead="\n\n")), {"input": "x"})
    _check_stream(events)
    assert _types(events)[2:] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert events[2]["item"]["arguments"] == "" and events[2]["item"]["call_id"] == "call_1"
    assert events[5]["arguments"] == '{"city": "Paris"}'


def test_stream_text_then_call_gives_two_items():
    events = _events(ReplayEngine(call_items(lead="Let me check.")), {"input": "x"})
    _check_stream(events)
    final = Response.model_validate(events[-1]["response"])
    assert [i.type for i in final.output] == ["message", "function_call"]
    assert final.output[0].content[0].text == "Let me check."


def test_stream_cut_by_length_ends_incomplete():
    events = _events(ReplayEngine(text_items("a", finish="length")),
                     {"input": "x", "max_output_tokens": 1})
    _check_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert done[-1]["item"]["status"] == "incomplete"


def test_empty_generation_still_has_a_message():
    engine = ReplayEngine([ChoiceDelta(finish_reason="stop"), Usage(3, 0)])
    events = _events(engine, {"input": "x"})
    _check_stream(events)
    final = Response.model_validate(events[-1]["response"])
    assert [i.type for i in final.output] == ["message"] and final.output_text == ""


def test_stream_and_answer_agree():
    items = text_items("x", "y", reasoning="r")
    whole = _answer(ReplayEngine(items), {"input": "q"})
    streamed = _events(ReplayEngine(items), {"input": "q"})[-1]["response"]
    strip = lambda r: [{k: v for k, v in i.items() if k != "id"} for i in r["output"]]  # noqa: E731
    assert strip(whole) == strip(streamed)


def test_stream_validates_before_iterating():
    engine = ReplayEngine(text_items("x"))
    with pytest.raises(InvalidRequestError):
        stream(engine, call({"input": "x", "tools": [{"type": "file_search"}]}, stream=True))


def test_closing_the_stream_closes_the_generation():
    engine = ReplayEngine(text_items("a", "b", "c"))

    async def first_three():
        events = stream(engine, call({"input": "x"}, stream=True))
        got = [await events.__anext__() for _ in range(3)]
        await events.aclose()
        return got
    asyncio.run(first_three())
    assert engine.closed


def test_blank_only_answer_is_sent_as_text():
    engine = ReplayEngine([ChoiceDelta(content="\n"), ChoiceDelta(finish_reason="stop"),
                           Usage(3, 1)])
    events = _events(engine, {"input": "x"})
    _check_stream(events)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == ["\n"] and events[-1]["response"]["output"][0]["content"][0]["text"] == "\n"
