"""response_format -> JSON schema -> llguidance matcher, on the tiny tokenizer."""

import json

import pytest
import tiny_models as tm

from xinference.errors import InvalidRequestError
from xinference.model.llm.grammar import JsonGrammar, response_format_schema


def test_response_format_shapes():
    assert response_format_schema(None) is None
    assert response_format_schema({"type": "text"}) is None
    assert response_format_schema({"type": "json_object"}) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert response_format_schema({"type": "json_schema",
                                   "json_schema": {"name": "x", "schema": schema}}) == schema
    for bad in ({"type": "yaml"}, {"type": "json_schema"},
                {"type": "json_schema", "json_schema": {}}, "json"):
        with pytest.raises(InvalidRequestError) as info:
            response_format_schema(bad)
        assert info.value.param == "response_format"


@pytest.fixture(scope="module")
def grammar():
    tok = tm.build_tokenizer()
    return tok, JsonGrammar(tok, len(tok), [tok.eos_token_id])


def test_bad_schema_is_a_400(grammar):
    _, g = grammar
    with pytest.raises(InvalidRequestError, match="strnig") as info:
        g.compile({"type": "object", "properties": {"a": {"type": "strnig"}}})
    assert info.value.param == "response_format"


def test_matcher_accepts_only_schema_text(grammar):
    tok, g = grammar
    compiled = g.compile({"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                          "required": ["city"], "additionalProperties": False})
    good = tok('{"city": "Rome"}', add_special_tokens=False)["input_ids"]
    matcher = g.matcher(compiled)
    assert all(matcher.consume_token(t) for t in good) and matcher.is_accepting()
    allowed = g.allowed(matcher)
    assert allowed[tok.eos_token_id] and sum(1 for b in allowed if b) == 1
    bad = g.matcher(compiled)
    oslo = tok('{"city": "Oslo"}', add_special_tokens=False)["input_ids"]
    assert not all(bad.consume_token(t) for t in oslo)
    first = [i for i, b in enumerate(g.allowed(g.matcher(compiled))) if b]
    texts = [tok.decode([i]) for i in first]
    assert texts and all('{"city": "Paris"}'.startswith(t) or '{"city": "Rome"}'.startswith(t)
                         for t in texts), texts
    assert json.loads(tok.decode(good)) == {"city": "Rome"}


def _accepts(tok, g, schema, text):
    matcher = g.matcher(g.compile(schema))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return all(matcher.consume_token(t) for t in ids) and matcher.is_accepting()


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": [1, 2]}',
    '{"a":1,"b":[1,2]}',
    '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}',
    '{\n    "a": {\n        "b": "c"\n    }\n}',
    '{\n\t"a": 1\n}',
])
def test_json_object_takes_the_layouts_models_write(grammar, text):
    tok, g = grammar
    assert _accepts(tok, g, {"type": "object"}, text)


@pytest.mark.parametrize("text", [
    '{  "a": 1}',
    '{\n\n\n"a": 1}',
    "{\n" + " " * 21 + '"a": 1}',
    ' {"a": 1}',
    '{"a": 1}\n',
])
def test_json_whitespace_is_bounded(grammar, text):
    tok, g = grammar
    assert not _accepts(tok, g, {"type": "object"}, text)


def test_a_line_break_may_follow_the_open_brace(grammar):
    tok, g = grammar
    matcher = g.matcher(g.compile({"type": "object"}))
    assert matcher.consume_token(tok.convert_tokens_to_ids("{"))
    allowed = [i for i, b in enumerate(g.allowed(matcher)) if b]
    texts = {tok.decode([i]) for i in allowed}
    assert "\n" in texts and '"' in texts and "}" in texts
    assert all(t.strip() in ("", '"', "}") or t.lstrip().startswith('"') for t in texts), texts


def test_forced_tool_calls_keep_the_one_line_layout(grammar):
    tok, g = grammar
    schema = {"type": "object", "properties": {"name": {"const": "f"}}, "required": ["name"]}
    calls = g.compile_calls(schema, "json")
    for text in ('{"name": "f"}', '{\n  "name": "f"\n}'):
        matcher = g.matcher(calls)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert (all(matcher.consume_token(t) for t in ids) and matcher.is_accepting()) == (
            "\n" not in text)
        assert _accepts(tok, g, schema, text)
