"""Anthropic Messages bodies converted to the OpenAI chat requests engines take (pure)."""

import json

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.llm.serving.anthropic_request import (call_id, openai_chat_request,
                                                            tool_use_id)

WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def convert(**body):
    return openai_chat_request({"model": "m", "max_tokens": 16, **body})


def test_plain_text_with_system_and_sampling():
    out = convert(system="Be brief.", messages=[{"role": "user", "content": "Hi"}],
                  temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["END"],
                  request_id="abc", metadata={"user_id": "u1"}, service_tier="auto")
    assert out == {"messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}],
                   "max_tokens": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
                   "request_id": "abc", "stop": ["END"]}


def test_system_blocks_are_joined_and_cache_control_ignored():
    system = [{"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Two."}]
    out = convert(system=system, messages=[{"role": "user", "content": "Hi"}])
    assert out["messages"][0] == {"role": "system", "content": "One.\nTwo."}


def test_text_blocks_and_images_become_openai_parts():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "AAAA"}}
    out = convert(messages=[
        {"role": "user", "content": [{"type": "text", "text": "Only text"}]},
        {"role": "assistant", "content": "Ok"},
        {"role": "user", "content": [{"type": "text", "text": "Look:"}, image,
                                     {"type": "image", "source": {"type": "url",
                                                                  "url": "https://x/y.png"}}]}])
    assert out["messages"][0] == {"role": "user", "content": "Only text"}
    assert out["messages"][1] == {"role": "assistant", "content": "Ok"}
    assert out["messages"][2]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]


def test_tool_use_history_round_trips_ids():
    out = convert(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_abc123", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_abc123",
             "content": [{"type": "text", "text": "18C"}, {"type": "text", "text": "sunny"}]},
            {"type": "text", "text": "And tomorrow?"}]}])
    assistant, tool, user = out["messages"][1:]
    assert assistant == {"role": "assistant", "content": "Let me check.",
                         "reasoning_content": "Need the tool.",
                         "tool_calls": [{"id": "call_abc123", "type": "function",
                                         "function": {"name": "get_weather",
                                                      "arguments": '{"city": "Paris"}'}}]}
    assert tool == {"role": "tool", "tool_call_id": "call_abc123", "content": "18C\nsunny"}
    assert user == {"role": "user", "content": "And tomorrow?"}
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"],
        "description": "Weather of a city"}}]


def test_tool_only_turns_and_error_results():
    out = convert(messages=[
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "boom", "is_error": True}]}])
    assert out["messages"][1]["content"] is None
    assert json.loads(out["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {}
    assert out["messages"][2:] == [{"role": "tool", "tool_call_id": "call_1",
                                    "content": "Error: boom"}]


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"},
     {"type": "function", "function": {"name": "get_weather"}})])
def test_tool_choice(choice, expected):
    out = convert(tools=[WEATHER], tool_choice=choice, messages=[{"role": "user", "content": "x"}])
    assert out["tool_choice"] == expected and "parallel_tool_calls" not in out


def test_disable_parallel_tool_use():
    out = convert(tools=[WEATHER], messages=[{"role": "user", "content": "x"}],
                  tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert out["parallel_tool_calls"] is False


@pytest.mark.parametrize("thinking, expected", [
    ({"type": "enabled", "budget_tokens": 1024}, {"enable_thinking": True}),
    ({"type": "disabled"}, {"enable_thinking": False}), ({"type": "adaptive"}, None)])
def test_thinking_switch(thinking, expected):
    out = convert(thinking=thinking, messages=[{"role": "user", "content": "x"}])
    assert out.get("chat_template_kwargs") == expected


def test_output_format_becomes_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = convert(output_config={"format": {"type": "json_schema", "schema": schema}},
                  messages=[{"role": "user", "content": "x"}])
    assert out["response_format"] == {"type": "json_schema",
                                      "json_schema": {"name": "output", "schema": schema}}


@pytest.mark.parametrize("body, words", [
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     ["'document'", "messages[0].content[0]"]),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_result",
                                                      "tool_use_id": "t"}]}]},
     ["'tool_result'", "assistant"]),
    ({"messages": [{"role": "system", "content": "x"}]}, ["'system'", "top-level"]),
    ({"messages": []}, ["non-empty"]),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     ["base64"]),
    ({"messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     ["'web_search_20250305'"]),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool"}},
     ["tool_choice"]),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
      "tool_choice": {"type": "tool", "name": "nope"}}, ["'nope'", "not in tools"]),
    ({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "maybe"}},
     ["thinking.type"]),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {}}]}]}]}, ["'image'", "content[0].content[0]"]),
])
def test_bad_requests_name_the_problem(body, words):
    with pytest.raises(InvalidRequestError) as err:
        convert(**body)
    for word in words:
        assert word in err.value.message


def test_tool_ids_convert_both_ways():
    assert tool_use_id("call_XYZ") == "toolu_XYZ" and call_id("toolu_XYZ") == "call_XYZ"
    assert tool_use_id("toolu_Q") == "toolu_Q" and call_id("other") == "other"
    made = tool_use_id(None)
    assert made.startswith("toolu_") and len(made) == 30
    assert call_id(tool_use_id("call_abc")) == "call_abc"
