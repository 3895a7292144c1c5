"""The gateway's store of Responses answers: bounds, expiry, conversations, the stream tap."""

from __future__ import annotations

import asyncio
import json

import pytest
from openai.types.responses import ResponseItem
from pydantic import TypeAdapter

from xinference.api.responses_store import (ResponseStore, ResponseTap, conversation,
                                            listed_items)
from xinference.errors import InvalidRequestError
from xinference.model.llm.serving import answer, stream

from responses_fakes import ReplayEngine, call, call_items, text_items


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _response(rid, text="hi"):
    return {"id": rid, "object": "response", "output": [
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


def test_put_get_delete():
    store = ResponseStore()
    store.put(_response("resp_a"), [{"role": "user", "content": "q"}], [])
    assert store.get("resp_a").response["id"] == "resp_a"
    assert store.history("resp_a") == [{"role": "user", "content": "q"}]
    assert store.delete("resp_a") and not store.delete("resp_a")
    assert store.get("resp_a") is None


def test_unknown_previous_response_is_a_400_naming_it():
    with pytest.raises(InvalidRequestError) as err:
        ResponseStore().history("resp_nope")
    assert err.value.status_code == 400 and err.value.param == "previous_response_id"
    assert err.value.code == "previous_response_not_found" and "resp_nope" in err.value.message


def test_least_recently_used_goes_first():
    store = ResponseStore(max_responses=2)
    store.put(_response("a"), [], [])
    store.put(_response("b"), [], [])
    store.get("a")
    store.put(_response("c"), [], [])
    assert store.get("b") is None and store.get("a") and store.get("c")
    assert len(store) == 2


def test_byte_budget():
    store = ResponseStore(max_bytes=100)
    store.put(_response("a"), [], [], size=60)
    store.put(_response("b"), [], [], size=60)
    assert store.get("a") is None and store.get("b") and store.bytes == 60
    store.put(_response("huge"), [], [], size=101)
    assert store.get("huge") is None and store.get("b")


def test_responses_expire_by_age():
    clock = Clock()
    store = ResponseStore(ttl=60, clock=clock)
    store.put(_response("a"), [], [])
    clock.now += 30
    store.put(_response("b"), [], [])
    clock.now += 31
    assert store.get("a") is None and store.get("b") is not None
    clock.now += 30
    assert len(store) == 0 and store.bytes == 0


def test_size_zero_stores_nothing():
    store = ResponseStore(max_responses=0)
    store.put(_response("a"), [], [])
    assert not store.enabled and store.get("a") is None


def test_conversation_chains_history_input_and_output():
    history = [{"role": "user", "content": "I am Ada"}, {"role": "assistant", "content": "Hi"}]
    body = {"input": "Who am I?", "instructions": "not kept"}
    messages = conversation(history, body, _response("r", "Ada"))
    assert messages == history + [{"role": "user", "content": "Who am I?"},
                                  {"role": "assistant", "content": "Ada"}]


def test_conversation_keeps_tool_calls_and_reasoning():
    response = {"output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "r"}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f",
         "arguments": "{}", "status": "completed"}]}
    messages = conversation([], {"input": "go"}, response)
    assert messages[1] == {"role": "assistant", "content": "", "reasoning_content": "r",
                           "tool_calls": [{"id": "call_1", "type": "function",
                                           "function": {"name": "f", "arguments": "{}"}}]}
    follow = conversation(messages, {"input": [{"type": "function_call_output",
                                                "call_id": "call_1", "output": "42"}]},
                          _response("r2", "It is 42."))
    assert follow[2] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


def test_listed_items_are_sdk_items():
    items = listed_items({"input": [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text",
                                                              "text": "yo"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "1"}]})
    adapter = TypeAdapter(ResponseItem)
    for item in items:
        adapter.validate_python(item)
    assert [i["id"][:3] for i in items] == ["msg", "msg", "fc_", "fco"]
    assert listed_items({"input": "hello"})[0]["content"] == [{"type": "input_text",
                                                               "text": "hello"}]


def _sse(events):
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode()
                    + b"\n\n" for e in events)


def _streamed(items, body):
    async def collect():
        return [e async for e in stream(ReplayEngine(items), call(body, stream=True))]
    return asyncio.run(collect())


@pytest.mark.parametrize("chunk", [7, 50, 100000])
def test_tap_catches_the_final_response_across_batches(chunk):
    events = _streamed(text_items("a", "b", reasoning="r"), {"input": "x"})
    data = _sse(events)
    caught = []
    tap = ResponseTap(True, lambda response, size: caught.append((response, size)))
    for i in range(0, len(data), chunk):
        tap.observe(data[i:i + chunk])
    assert len(caught) == 1 and caught[0][0] == events[-1]["response"]
    assert tap.seq == events[-1]["sequence_number"]


def test_tap_catches_incomplete_and_whole_answers():
    events = _streamed(call_items(), {"input": "x"})[:-1]
    cut = _streamed(text_items("a", finish="length"), {"input": "x"})
    caught = []
    tap = ResponseTap(True, lambda r, n: caught.append(r))
    tap.observe(_sse(events))
    assert caught == [] and tap.seq == events[-1]["sequence_number"]
    tap = ResponseTap(True, lambda r, n: caught.append(r))
    tap.observe(_sse(cut))
    assert caught[0]["status"] == "incomplete"
    whole = asyncio.run(answer(ReplayEngine(text_items("z")), call({"input": "x"})))
    tap = ResponseTap(False, lambda r, n: caught.append(r))
    tap.observe(json.dumps(whole).encode())
    tap.observe(json.dumps({"error": {"message": "x"}}).encode())
    assert caught[-1] == whole and len(caught) == 2


def test_tap_error_event_follows_the_last_sequence_number():
    from openai.types.responses import ResponseErrorEvent
    tap = ResponseTap(True)
    tap.observe(b'event: response.created\ndata: {"type": "response.created", '
                b'"sequence_number": 4}\n\n')
    frame = tap.error_event(500, {"error": {"message": "boom", "type": "server_error",
                                            "param": None, "code": None}})
    assert frame.startswith(b"event: error\ndata: ")
    event = ResponseErrorEvent.model_validate_json(frame[len(b"event: error\ndata: "):])
    assert event.sequence_number == 5 and event.message == "boom"
    assert event.code == "server_error"
