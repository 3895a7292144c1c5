"""Chat prompt token counts for text engines, checked against transformers' own rendering."""

import sys
from pathlib import Path

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.llm.chat_template import special_tokens
from xinference.model.llm.token_count import count_chat_tokens

sys.path.insert(0, str(Path(__file__).parents[1] / "llm"))
from tiny_models import (CHATML_TOOLS_TEMPLATE, FRANCE, WEATHER, WEATHER_FOLLOWUP,  # noqa: E402
                         WEATHER_TOOL, build_tokenizer)

OTHER_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {}}}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def hf_count(tokenizer, messages, tools=None, **kwargs):
    ids = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                        tokenize=True, **kwargs)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


def ours(tokenizer, request, enable_thinking=None):
    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return count_chat_tokens(CHATML_TOOLS_TEMPLATE, encode, request, enable_thinking,
                             special_tokens(tokenizer))


def test_plain_chat_matches_transformers(tokenizer):
    assert ours(tokenizer, {"messages": FRANCE}) == hf_count(tokenizer, FRANCE)


def test_tools_and_history_match_transformers(tokenizer):
    request = {"messages": WEATHER_FOLLOWUP, "tools": [WEATHER_TOOL]}
    assert ours(tokenizer, request) == hf_count(tokenizer, WEATHER_FOLLOWUP, [WEATHER_TOOL])


def test_thinking_switch_from_launch_and_request(tokenizer):
    off = hf_count(tokenizer, FRANCE, enable_thinking=False)
    assert off > hf_count(tokenizer, FRANCE)
    assert ours(tokenizer, {"messages": FRANCE}, enable_thinking=False) == off
    request = {"messages": FRANCE, "chat_template_kwargs": {"enable_thinking": True}}
    assert ours(tokenizer, request, enable_thinking=False) == hf_count(tokenizer, FRANCE)


def test_tool_choice_decides_which_tools_are_rendered(tokenizer):
    both = [WEATHER_TOOL, OTHER_TOOL]
    assert ours(tokenizer, {"messages": WEATHER, "tools": both, "tool_choice": "none"}) \
        == hf_count(tokenizer, WEATHER)
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert ours(tokenizer, {"messages": WEATHER, "tools": both, "tool_choice": named}) \
        == hf_count(tokenizer, WEATHER, [WEATHER_TOOL])


def test_no_template_or_bad_messages(tokenizer):
    with pytest.raises(InvalidRequestError, match="no chat template"):
        count_chat_tokens(None, len, {"messages": FRANCE}, None)
    with pytest.raises(InvalidRequestError):
        ours(tokenizer, {"messages": [{"role": "robot", "content": "x"}]})
