"""tool_choice "required" / a named function: the schema, the grammar and the chunk re-shaping."""

import json

import pytest
import tiny_models as tm

from xinference.errors import InvalidRequestError
from xinference.model.llm.assembler import ChatDeltaAssembler, parsed_delta
from xinference.model.llm.grammar import JsonGrammar
from xinference.model.llm.tool_calls import forced_call_schema

OTHER_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
NAMED = {"type": "function", "function": {"name": "get_time"}}


def test_only_required_or_named_choices_force_a_call():
    tools = [tm.WEATHER_TOOL, OTHER_TOOL]
    for choice in (None, "auto", "none"):
        assert forced_call_schema(tools, choice) is None
    assert forced_call_schema(None, "required") is None
    assert forced_call_schema(tools, {"type": "function", "function": {"name": "nope"}}) is None
    named = forced_call_schema(tools, NAMED)
    assert named["properties"]["name"] == {"const": "get_time"}
    assert named["properties"]["arguments"] == OTHER_TOOL["function"]["parameters"]
    required = forced_call_schema(tools, "required")
    assert required["type"] == "array" and required["minItems"] == 1
    names = [s["properties"]["name"]["const"] for s in required["items"]["anyOf"]]
    assert names == ["get_weather", "get_time"]
    bare = forced_call_schema([{"type": "function", "function": {"name": "ping"}}], "required")
    assert bare["items"]["properties"]["arguments"] == {"type": "object"}


@pytest.fixture(scope="module")
def tokenizer():
    return tm.build_tokenizer()


def _run(tok, g, compiled, text):
    matcher = g.matcher(compiled)
    for token in tok(text, add_special_tokens=False)["input_ids"]:
        if not matcher.consume_token(token) or matcher.is_error():
            return False
    return matcher.is_accepting()


def test_hermes_grammar_writes_the_models_own_tags(tokenizer):
    g = JsonGrammar(tokenizer, len(tokenizer), [tokenizer.eos_token_id])
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    required = g.compile_calls(forced_call_schema([tm.WEATHER_TOOL], "required"), "hermes")
    assert _run(tokenizer, g, required, call)
    assert _run(tokenizer, g, required, call + "\n" + call)
    assert not _run(tokenizer, g, required, "The capital of France is Paris.")
    assert not _run(tokenizer, g, required, '<tool_call>\n{"name": "get_time", "arguments": {}}')
    tag = tokenizer.convert_tokens_to_ids("<tool_call>")
    matcher = g.matcher(required)
    allowed = g.allowed(matcher)
    assert allowed[tag] and sum(1 for b in allowed if b) == 1, "the tag token, and only it, opens"
    named = g.compile_calls(forced_call_schema([tm.WEATHER_TOOL], {
        "type": "function", "function": {"name": "get_weather"}}), "hermes")
    assert _run(tokenizer, g, named, call) and not _run(tokenizer, g, named, call + "\n" + call)


def test_json_grammar_for_other_formats(tokenizer):
    g = JsonGrammar(tokenizer, len(tokenizer), [tokenizer.eos_token_id])
    compiled = g.compile_calls(forced_call_schema([tm.WEATHER_TOOL], "required"), "json")
    assert _run(tokenizer, g, compiled, '[{"name": "get_weather", "arguments": {"city": "Rome"}}]')
    assert not _run(tokenizer, g, compiled, '{"name": "get_weather", "arguments": {}}')
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "strnig"}}}
    with pytest.raises(InvalidRequestError) as info:
        g.compile_calls(forced_call_schema([bad], "required"), "json")
    assert info.value.param == "tools"


def test_forced_json_calls_in_content_become_typed_tool_calls():
    pieces = ['[{"name": "get_weather", ', '"arguments": {"city": ', '"Paris"}}]']
    asm = ChatDeltaAssembler(tool_format="json", tool_names={"get_weather"})
    deltas = [parsed_delta(asm, 0, p) for p in pieces[:-1]]
    deltas.append(parsed_delta(asm, 0, pieces[-1], "stop"))
    calls = [c for d in deltas for c in d.tool_calls]
    assert len(calls) == 1 and calls[0].id.startswith("call_") and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert not any(d.content for d in deltas) and deltas[-1].finish_reason == "tool_calls"
