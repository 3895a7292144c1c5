"""The OpenAI dialect over synthetic generations: chunk order, tool calls, logprobs, usage."""

import asyncio

from xinference.model.llm.deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from xinference.model.llm.protocol import TokenLogprob
from xinference.model.llm.serving import openai


def _gen(items, n_choices=1, **kw):
    async def deltas():
        for item in items:
            yield item
    return Generation("rid", 1700000000, n_choices, deltas(), **kw)


def _chunks(gen, include_usage=False):
    async def collect():
        return [c async for c in openai.chat_chunks(gen, "m", include_usage)]
    return asyncio.run(collect())


def test_each_choice_opens_with_the_assistant_role_even_when_its_first_piece_is_an_emoji():
    gen = _gen([ChoiceDelta(1, "\U0001F31F"), ChoiceDelta(0, "Hi"),
                ChoiceDelta(0, finish_reason="stop"), ChoiceDelta(1, finish_reason="length"),
                Usage(3, 2)], n_choices=2)
    chunks = _chunks(gen)
    opening = [c["choices"][0] for c in chunks[:2]]
    assert [(c["index"], c["delta"]) for c in opening] == [
        (0, {"role": "assistant", "content": ""}), (1, {"role": "assistant", "content": ""})]
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[2:])
    finishes = {c["choices"][0]["index"]: c["choices"][0]["finish_reason"] for c in chunks
                if c["choices"][0]["finish_reason"]}
    assert finishes == {0: "stop", 1: "length"}


def test_tool_call_streams_as_head_then_arguments_and_gathers_whole():
    call = ToolCallDelta(0, "call_1", "get_weather", '{"city": "Paris"}')
    items = [ChoiceDelta(0, reasoning="hmm"), ChoiceDelta(0, tool_calls=[call]),
             ChoiceDelta(0, finish_reason="tool_calls"), Usage(5, 7, cached_tokens=2)]
    chunks = _chunks(_gen(items, reasoning=True), include_usage=True)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1] == {"reasoning_content": "hmm"}
    assert deltas[2]["tool_calls"][0] == {"index": 0, "id": "call_1", "type": "function",
                                          "function": {"name": "get_weather", "arguments": ""}}
    assert deltas[3]["tool_calls"][0] == {"index": 0,
                                          "function": {"arguments": '{"city": "Paris"}'}}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2}}
    whole = asyncio.run(openai.chat_completion(_gen(items, reasoning=True), "m"))
    message = whole["choices"][0]["message"]
    assert message["content"] is None and message["reasoning_content"] == "hmm"
    assert message["tool_calls"][0]["function"] == {"name": "get_weather",
                                                    "arguments": '{"city": "Paris"}'}
    assert whole["choices"][0]["finish_reason"] == "tool_calls"


def test_completion_echo_and_legacy_logprobs_offsets():
    lp = [TokenLogprob(" a", -0.5, [(" a", -0.5)]), TokenLogprob("b", -1.0, [])]
    items = [ChoiceDelta(0, " a", logprobs=lp[:1]), ChoiceDelta(0, "b", logprobs=lp[1:]),
             ChoiceDelta(0, finish_reason="stop"), Usage(2, 2)]
    whole = asyncio.run(openai.completion(_gen(items, prompts=["Say"], logprobs=True), "m",
                                          echo=True))
    choice = whole["choices"][0]
    assert choice["text"] == "Say ab"
    assert choice["logprobs"]["text_offset"] == [3, 5]
    assert choice["logprobs"]["tokens"] == [" a", "b"]
    assert whole["usage"]["total_tokens"] == 4
