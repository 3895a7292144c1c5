"""Chat template rendering: tools, chat_template_kwargs, OpenAI message shapes, errors."""

import pytest
import tiny_models as tm

from xinference.errors import InvalidRequestError, XinferenceError
from xinference.model.llm.chat_template import (choose_chat_template, normalize_messages,
                                                render_chat_template)

SPECIALS = {"bos_token": "", "eos_token": "<|im_end|>"}


@pytest.fixture(scope="module")
def hf_tokenizer():
    return tm.build_tokenizer()


@pytest.mark.parametrize("lesson", range(len(tm.LESSONS)))
def test_render_matches_transformers_apply_chat_template(hf_tokenizer, lesson):
    messages, tools, kwargs, _ = tm.LESSONS[lesson]
    ours = render_chat_template(tm.CHATML_TOOLS_TEMPLATE, messages, tools, True, SPECIALS, kwargs)
    theirs = hf_tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                              tokenize=False, **kwargs)
    assert ours == theirs


def test_tools_and_enable_thinking_reach_the_template():
    with_tools = render_chat_template(tm.CHATML_TOOLS_TEMPLATE, tm.WEATHER, [tm.WEATHER_TOOL])
    assert '"name": "get_weather"' in with_tools and "<tools>" in with_tools
    assert "<tools>" not in render_chat_template(tm.CHATML_TOOLS_TEMPLATE, tm.WEATHER)
    off = render_chat_template(tm.CHATML_TOOLS_TEMPLATE, tm.FRANCE,
                               template_kwargs={"enable_thinking": False})
    on = render_chat_template(tm.CHATML_TOOLS_TEMPLATE, tm.FRANCE,
                              template_kwargs={"enable_thinking": True})
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
    no_prompt = render_chat_template(tm.CHATML_TOOLS_TEMPLATE, tm.FRANCE,
                                     add_generation_prompt=False)
    assert no_prompt.endswith("<|im_end|>\n")


def test_tojson_keeps_order_and_unicode():
    template = "{{ messages[0].content | tojson }}|{{ {'b': 1, 'a': 'é'} | tojson }}"
    out = render_chat_template(template, [{"role": "user", "content": "café"}])
    assert out == '"café"|{"b": 1, "a": "é"}'


def test_normalize_openai_message_shapes():
    out = normalize_messages([
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ])
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool"]
    assert out[1]["content"] == "a\nb" and out[2]["content"] == ""
    assert out[2]["tool_calls"][0]["function"]["arguments"] == {"x": 1}
    assert out[3]["tool_call_id"] == "c1"


@pytest.mark.parametrize("messages", [
    [], "hi", [{"role": "robot", "content": "x"}], [{"content": "x"}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    [{"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}],
])
def test_bad_messages_are_400_naming_messages(messages):
    with pytest.raises(InvalidRequestError) as info:
        render_chat_template(tm.CHATML_TOOLS_TEMPLATE, messages)
    assert info.value.param == "messages"


def test_template_errors():
    strict = ("{% if messages[0].role != 'user' %}"
              "{{ raise_exception('first must be user') }}{% endif %}ok")
    with pytest.raises(InvalidRequestError, match="first must be user"):
        render_chat_template(strict, [{"role": "assistant", "content": "x"}])
    assert render_chat_template(strict, tm.FRANCE) == "ok"
    with pytest.raises(XinferenceError, match="broken"):
        render_chat_template("{% if %}", tm.FRANCE)
    with pytest.raises(InvalidRequestError) as info:
        render_chat_template(strict, tm.FRANCE, template_kwargs={"messages": []})
    assert info.value.param == "chat_template_kwargs"


def test_choose_chat_template():
    assert choose_chat_template({"chat_template": "F"}, "T") == "F"
    assert choose_chat_template({"chat_template": None}, "T") == "T"
    assert choose_chat_template({}, None) is None
