"""Stop strings, reasoning and tool-call parsing, on strings (whole and streamed in pieces)."""

import json

import pytest

from xinference.model.llm.assembler import ChatDeltaAssembler, parsed_delta
from xinference.model.llm.reasoning import (ReasoningParser, prompt_opens_reasoning, reasoning_tags,
                                            split_reasoning)
from xinference.model.llm.stop import StopStringMatcher, truncate_at_stop
from xinference.model.llm.tool_calls import ToolCallParser, parse_tool_calls


def pieces(text, size):
    return [text[i:i + size] for i in range(0, len(text), size)]


def run_stop(stop, parts):
    matcher = StopStringMatcher(stop)
    out, stopped = "", False
    for part in parts:
        text, stopped = matcher.feed(part)
        out += text
        if stopped:
            break
    return (out if stopped else out + matcher.flush()), stopped


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_stop_string_split_across_pieces_is_never_emitted(size):
    text = "Hello wor" + "ld. STOP here and more"
    out, stopped = run_stop(["STOP"], pieces(text, size))
    assert stopped and out == "Hello world. "


def test_stop_earliest_of_several_and_partial_prefix_released():
    assert run_stop(["xyz", "lo w"], ["Hel", "lo", " world"]) == ("Hel", True)
    out, stopped = run_stop(["STOP"], ["abc ST", "ANDARD"])
    assert (out, stopped) == ("abc STANDARD", False)
    matcher = StopStringMatcher(["END"])
    assert matcher.feed("the E") == ("the ", False) and matcher.holding
    assert matcher.flush() == "E"


def test_truncate_at_stop_whole_text():
    assert truncate_at_stop("a\n\nQ: b", ["\n\nQ:"]) == ("a", True)
    assert truncate_at_stop("plain", ["zz"]) == ("plain", False)
    assert truncate_at_stop("plain", []) == ("plain", False)


THOUGHT = "<think>\nLet me think.\nStep two.\n</think>\n\nThe answer is 4."


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_reasoning_streamed_equals_whole(size):
    parser = ReasoningParser()
    reasoning, content = "", ""
    for part in pieces(THOUGHT, size):
        r, c = parser.feed(part)
        reasoning, content = reasoning + r, content + c
    r, c = parser.flush()
    assert (reasoning + r, content + c) == ("Let me think.\nStep two.", "The answer is 4.")
    assert "<" not in reasoning + content


def test_reasoning_variants():
    assert split_reasoning("No thinking here.") == (None, "No thinking here.")
    assert split_reasoning("Opened in prompt.</think>Answer", in_reasoning=True) == (
        "Opened in prompt.", "Answer")
    assert split_reasoning("<think>cut off by length") == ("cut off by length", "")
    assert split_reasoning("<th") == (None, "<th")
    assert split_reasoning("\n\n<think>a</think>b") == ("a", "b")
    parser = ReasoningParser()
    assert parser.feed("\n" * 40) == ("", "\n" * 40), "whitespace is not held forever"
    assert split_reasoning("[R]x[/R]y", "[R]", "[/R]") == ("x", "y")


def test_reasoning_tags_and_prompt_detection():
    family = {"reasoning_start_tag": "<r>", "reasoning_end_tag": "</r>"}
    assert reasoning_tags(family, None) == ("<r>", "</r>")
    assert reasoning_tags({}, "{{ '<think>' }}...</think>") == ("<think>", "</think>")
    assert reasoning_tags({}, "{{ messages }}") is None
    assert prompt_opens_reasoning("<|im_start|>assistant\n<think>\n", "<think>", "</think>")
    assert not prompt_opens_reasoning("assistant\n<think>\n\n</think>\n\n", "<think>", "</think>")
    assert not prompt_opens_reasoning("assistant\n", "<think>", "</think>")


CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def test_hermes_whole_text_with_two_calls_and_text():
    text = f"Let me check.\n<tool_call>\n{CALL}\n</tool_call>\n<tool_call>{CALL}</tool_call>\n"
    content, calls = parse_tool_calls(text, "hermes", {"get_weather"})
    assert content == "Let me check."
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].id.startswith("call_") and len(calls[0].id) == 29 and calls[0].id != calls[1].id


def test_bad_or_unknown_tool_calls_stay_content():
    bad = "<tool_call>{not json}</tool_call>"
    assert parse_tool_calls(bad, "hermes") == (bad, [])
    unknown = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    assert parse_tool_calls(unknown, "hermes", {"get_weather"}) == (unknown, [])
    content, calls = parse_tool_calls("<tool_call>" + CALL, "hermes")
    assert content is None and calls[0].name == "get_weather"


def test_plain_json_calls():
    content, calls = parse_tool_calls('  {"name": "f", "parameters": {"x": 1}}', "json", {"f"})
    assert content is None and calls[0].name == "f" and json.loads(calls[0].arguments) == {"x": 1}
    content, calls = parse_tool_calls('[{"name": "f", "arguments": {}}, '
                                      '{"name": "g", "arguments": "{}"}]', "auto")
    assert [c.name for c in calls] == ["f", "g"] and calls[1].arguments == "{}"
    assert parse_tool_calls('{"answer": 42}', "auto") == ('{"answer": 42}', [])
    assert parse_tool_calls("Just text.", "json") == ("Just text.", [])


@pytest.mark.parametrize("size", [1, 4, 9, 1000])
def test_hermes_streamed_events_match_whole(size):
    text = f"Sure. <tool_call>\n{CALL}\n</tool_call>"
    parser = ToolCallParser("auto", {"get_weather"})
    events = []
    for part in pieces(text, size):
        events += parser.feed(part)
    events += parser.flush()
    content = "".join(v for k, v in events if k == "content")
    calls = [v for k, v in events if k == "tool_call"]
    assert content == "Sure. " and len(calls) == 1 and calls[0].name == "get_weather"


def gathered(deltas):
    """Content, reasoning and calls (by index) of typed deltas."""
    content = "".join(d.content for d in deltas)
    reasoning = "".join(d.reasoning for d in deltas)
    calls = {c.index: c for d in deltas for c in d.tool_calls}
    return content, reasoning, calls


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_assembler_splits_reasoning_then_a_whole_tool_call(size):
    text = f"<think>\nNeed weather.\n</think>\n\n<tool_call>\n{CALL}\n</tool_call>"
    asm = ChatDeltaAssembler(("<think>", "</think>"), False, "hermes", {"get_weather"})
    deltas = [asm.feed(part) for part in pieces(text, size)] + [asm.finish()]
    content, reasoning, calls = gathered(deltas)
    assert reasoning == "Need weather." and content == ""
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].id.startswith("call_")
    assert asm.finish_reason("stop") == "tool_calls"


def test_assembler_plain_content_without_parsers():
    asm = ChatDeltaAssembler()
    deltas = [asm.feed("Hello"), asm.feed(" <think>x</think>"), asm.finish()]
    assert gathered(deltas) == ("Hello <think>x</think>", "", {})
    assert asm.finish_reason("length") == "length"


def test_parsed_delta_flushes_what_was_held_on_the_last_piece():
    asm = ChatDeltaAssembler(("<think>", "</think>"), False, "json", {"get_weather"})
    first = parsed_delta(asm, 2, "<think>a</think>" + CALL[:10])
    last = parsed_delta(asm, 2, CALL[10:], "stop")
    assert (first.index, first.reasoning, first.content, first.tool_calls) == (2, "a", "", [])
    assert last.finish_reason == "tool_calls" and last.tool_calls[0].name == "get_weather"
    plain = parsed_delta(None, 0, "text", "length")
    assert (plain.content, plain.finish_reason) == ("text", "length")
