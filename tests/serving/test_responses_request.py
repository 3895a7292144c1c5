"""Responses requests -> OpenAI chat requests (pure units)."""

from __future__ import annotations

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.llm.serving.responses_request import (chat_request, input_messages,
                                                            items_to_messages)

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def test_string_input_and_instructions():
    req = chat_request({"model": "m", "input": "Hi", "instructions": "Be terse.",
                        "max_output_tokens": 32, "temperature": 0.2, "top_p": 0.9,
                        "request_id": "abc", "store": False, "metadata": {"k": "v"},
                        "user": "u1", "parallel_tool_calls": False})
    assert req["messages"] == [{"role": "system", "content": "Be terse."},
                               {"role": "user", "content": "Hi"}]
    assert req["max_tokens"] == 32 and req["temperature"] == 0.2 and req["top_p"] == 0.9
    assert req["request_id"] == "abc" and req["parallel_tool_calls"] is False
    assert "store" not in req and "metadata" not in req and "input" not in req


def test_history_goes_between_instructions_and_input():
    history = [{"role": "user", "content": "My name is Ada."},
               {"role": "assistant", "content": "Hello Ada."}]
    req = chat_request({"input": "What is my name?", "instructions": "sys"}, history)
    assert [m["role"] for m in req["messages"]] == ["system", "user", "assistant", "user"]
    assert req["messages"][1:3] == history


def test_message_items_with_parts_and_images():
    msgs = input_messages({"input": [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is "}, {"type": "input_text", "text": "this?"}]},
        {"role": "user", "content": [
            {"type": "input_text", "text": "Look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "low"}]},
        {"type": "message", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": "A cat.", "annotations": []}]},
    ]})
    assert msgs[0] == {"role": "developer", "content": "Rules."}
    assert msgs[1] == {"role": "user", "content": "What is this?"}
    assert msgs[2]["content"] == [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"}}]
    assert msgs[3] == {"role": "assistant", "content": "A cat."}


def test_function_call_round_trip_and_reasoning():
    msgs = items_to_messages([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text",
                                                          "text": "Need two calls."}]},
        {"type": "function_call", "call_id": "c1", "name": "weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "weather",
         "arguments": {"city": "Rome"}},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "21C"}]},
    ])
    assistant = msgs[1]
    assert assistant["role"] == "assistant" and assistant["reasoning_content"] == "Need two calls."
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][1]["function"] == {"name": "weather",
                                                      "arguments": '{"city": "Rome"}'}
    assert msgs[2:] == [{"role": "tool", "tool_call_id": "c1", "content": "18C"},
                        {"role": "tool", "tool_call_id": "c2", "content": "21C"}]


def test_assistant_text_then_calls_make_one_message():
    msgs = items_to_messages([
        {"role": "user", "content": "q"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text",
                                                              "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}])
    assert len(msgs) == 2 and msgs[1]["content"] == "Checking."
    assert msgs[1]["tool_calls"][0]["id"] == "c1"


def test_reasoning_without_assistant_after_is_dropped():
    msgs = items_to_messages([{"type": "reasoning", "id": "rs", "summary": []},
                              {"role": "user", "content": "x"}])
    assert msgs == [{"role": "user", "content": "x"}]


def test_tools_tool_choice_and_text_format():
    req = chat_request({
        "input": "x",
        "tools": [{"type": "function", "name": "f", "description": "does f",
                   "parameters": {"type": "object", "properties": {}}, "strict": True}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "out", "strict": True,
                            "schema": SCHEMA}},
    })
    assert req["tools"] == [{"type": "function", "function": {
        "name": "f", "description": "does f", "strict": True,
        "parameters": {"type": "object", "properties": {}}}}]
    assert req["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert req["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "strict": True, "schema": SCHEMA}}
    assert chat_request({"input": "x", "text": {"format": {"type": "json_object"}}})[
        "response_format"] == {"type": "json_object"}
    assert "response_format" not in chat_request({"input": "x",
                                                  "text": {"format": {"type": "text"}}})


def test_allowed_tools_narrows_the_list():
    tools = [{"type": "function", "name": n} for n in ("a", "b")]
    req = chat_request({"input": "x", "tools": tools, "tool_choice": {
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "b"}]}})
    assert [t["function"]["name"] for t in req["tools"]] == ["b"]
    assert req["tool_choice"] == "required"


def test_reasoning_effort_sets_thinking():
    assert chat_request({"input": "x", "reasoning": {"effort": "none"}})[
        "chat_template_kwargs"] == {"enable_thinking": False}
    assert chat_request({"input": "x", "reasoning": {"effort": "high"}})[
        "chat_template_kwargs"] == {"enable_thinking": True, "reasoning_effort": "high"}
    assert "chat_template_kwargs" not in chat_request({"input": "x"})
    own = chat_request({"input": "x", "reasoning": {"effort": "low"},
                        "chat_template_kwargs": {"enable_thinking": False}})
    assert own["chat_template_kwargs"]["enable_thinking"] is False


def test_gateway_cap_lowers_max_output_tokens():
    assert chat_request({"input": "x", "max_output_tokens": 100, "max_tokens": 10})[
        "max_tokens"] == 10


@pytest.mark.parametrize("body, words", [
    ({"input": "x", "tools": [{"type": "web_search"}]}, "'web_search' are not supported"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "'item_reference' are not supported"),
    ({"input": [{"type": "computer_call_output"}]}, "'computer_call_output'"),
    ({"input": [{"role": "tool", "content": "x"}]}, "role must be one of"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "needs call_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input_file"),
    ({"input": "x", "background": True}, "background mode"),
    ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
    ({"input": []}, "input is empty"),
    ({"input": 3}, "input must be"),
])
def test_bad_requests_name_the_problem(body, words):
    with pytest.raises(InvalidRequestError) as err:
        chat_request(body)
    assert words in err.value.message
