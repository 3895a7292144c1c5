"""What the fake engine generates, as clients see it: the XINFERENCE_MAX_TOKENS cap,
``reasoning_content`` and tool calls, whole and streamed through the ``openai`` SDK."""

import json

import pytest
from harness import Api

TOOLS = [{"type": "function", "function": {"name": name, "parameters": {
    "type": "object", "properties": {"input": {"type": "string"}}}}}
    for name in ("lookup", "translate")]


def user(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("asked, sent", [
    ({}, {"max_tokens": 2}),
    ({"max_tokens": 50}, {"max_tokens": 2}),
    ({"max_tokens": 1}, {"max_tokens": 1}),
    ({"max_completion_tokens": 9}, {"max_completion_tokens": 2}),
])
async def test_max_tokens_cap(cluster, asked, sent):
    async with Api.open(cluster, max_tokens=2) as api:
        out = await api.openai.chat.completions.create(model="chat", messages=user("a b c"),
                                                       **asked)
    body = cluster.models["chat"].replicas[0].calls[-1].body
    assert {k: v for k, v in body.items() if k.startswith("max_")} == sent
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == min([2, *asked.values()])


async def test_no_cap_without_the_setting(api):
    await api.openai.chat.completions.create(model="chat", messages=user("a"))
    assert "max_tokens" not in api.cluster.models["chat"].replicas[0].calls[-1].body


async def test_reasoning_content_whole_and_streamed(api):
    out = await api.openai.chat.completions.create(model="think", messages=user("why"))
    message = out.choices[0].message
    assert message.content == "echo: why"
    assert message.reasoning_content == "Thinking about the echo."
    stream = await api.openai.chat.completions.create(model="think", messages=user("why"),
                                                      stream=True)
    deltas = [c.choices[0].delta async for c in stream if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert reasoning == "Thinking about the echo."
    assert "".join(d.content or "" for d in deltas) == "echo: why"
    first_reasoning = next(i for i, d in enumerate(deltas) if getattr(d, "reasoning_content",
                                                                      None))
    assert all(not d.content for d in deltas[:first_reasoning + 1])


async def test_plain_model_has_no_reasoning(api):
    out = await api.openai.chat.completions.create(model="chat", messages=user("why"))
    assert getattr(out.choices[0].message, "reasoning_content", None) is None


@pytest.mark.parametrize("choice, name", [
    ("required", "lookup"),
    ({"type": "function", "function": {"name": "translate"}}, "translate"),
])
async def test_forced_tool_call_whole(api, choice, name):
    out = await api.openai.chat.completions.create(model="chat", messages=user("bonjour"),
                                                   tools=TOOLS, tool_choice=choice)
    (choice_out,) = out.choices
    assert choice_out.finish_reason == "tool_calls" and choice_out.message.content is None
    (call,) = choice_out.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == name
    assert json.loads(call.function.arguments) == {"input": "bonjour"}


async def test_forced_tool_call_streamed(api):
    stream = await api.openai.chat.completions.create(
        model="chat", messages=user("bonjour"), tools=TOOLS, tool_choice="required",
        stream=True)
    chunks = [c async for c in stream if c.choices]
    calls = [t for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "lookup" and calls[0].id
    arguments = "".join(t.function.arguments or "" for t in calls)
    assert json.loads(arguments) == {"input": "bonjour"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_auto_tool_choice_answers_in_text(api):
    out = await api.openai.chat.completions.create(model="chat", messages=user("hi"),
                                                   tools=TOOLS, tool_choice="auto")
    assert out.choices[0].message.content == "echo: hi"
    assert not out.choices[0].message.tool_calls


async def test_tool_result_round_trip(api):
    first = await api.openai.chat.completions.create(
        model="chat", messages=user("ping"), tools=TOOLS, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    messages = [*user("ping"), first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "pong"},
                *user("and then")]
    out = await api.openai.chat.completions.create(model="chat", messages=messages,
                                                   tools=TOOLS)
    assert out.choices[0].message.content == "echo: and then"
    sent = api.cluster.models["chat"].replicas[0].calls[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2]["tool_call_id"] == call.id


@pytest.mark.parametrize("dialect", ["anthropic", "responses"])
async def test_the_cap_holds_in_every_dialect(cluster, dialect):
    async with Api.open(cluster, max_tokens=2) as api:
        if dialect == "anthropic":
            out = await api.anthropic().messages.create(model="chat", max_tokens=50,
                                                        messages=user("a b c"))
            assert out.stop_reason == "max_tokens" and out.usage.output_tokens == 2
        else:
            out = await api.openai.responses.create(model="chat", input="a b c",
                                                    max_output_tokens=50)
            assert out.status == "incomplete" and out.usage.output_tokens == 2
    assert cluster.models["chat"].requests[-1]["max_tokens"] == 2
