"""Sampling-params translation, OpenAI builders and incremental detokenization."""

import pytest
import tiny_models as tm

from xinference.errors import InvalidRequestError
from xinference.model.llm import protocol as P
from xinference.model.llm.detokenize import IncrementalDetokenizer
from xinference.model.llm.params import sampling_params_from_request


def test_openai_fields_translate():
    p = sampling_params_from_request({
        "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0, "top_p": 0.5, "seed": 3,
        "presence_penalty": 0.5, "frequency_penalty": -1, "stop": "END", "n": 2,
        "logprobs": True, "top_logprobs": 3, "logit_bias": {"5": -100}})
    assert (p.max_tokens, p.temperature, p.top_p, p.seed, p.n) == (7, 0.0, 0.5, 3, 2)
    assert (p.presence_penalty, p.frequency_penalty, p.stop) == (0.5, -1.0, ["END"])
    assert (p.logprobs, p.top_logprobs, p.logit_bias) == (True, 3, {5: -100.0})
    assert p.greedy and p.needs_penalties
    assert p.for_choice(0).seed == 3 and p.for_choice(1).seed == 4


def test_defaults_cap_and_completion_logprobs():
    p = sampling_params_from_request({}, defaults={"temperature": 0.6, "top_p": 0.9})
    assert (p.temperature, p.top_p, p.max_tokens, p.n, p.stop) == (0.6, 0.9, None, 1, [])
    explicit = sampling_params_from_request({"temperature": 1.0}, defaults={"temperature": 0.6})
    assert explicit.temperature == 1.0
    assert sampling_params_from_request({"max_tokens": 500}, max_tokens_cap=64).max_tokens == 64
    assert sampling_params_from_request({}, max_tokens_cap=64).max_tokens == 64
    c = sampling_params_from_request({"logprobs": 2}, kind="completion")
    assert (c.logprobs, c.top_logprobs) == (True, 2)


@pytest.mark.parametrize("field,value", [
    ("temperature", 3), ("temperature", "hot"), ("top_p", 1.5), ("n", 0), ("max_tokens", 0),
    ("max_tokens", 2.5), ("presence_penalty", 9), ("stop", 5), ("stop", ["a", 1]),
    ("logprobs", 3), ("logit_bias", {"a": 1}), ("logit_bias", {"1": 500}), ("seed", "x"),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(InvalidRequestError) as info:
        sampling_params_from_request({field: value})
    assert info.value.param == field


def test_top_logprobs_needs_logprobs_and_budget():
    with pytest.raises(InvalidRequestError) as info:
        sampling_params_from_request({"top_logprobs": 2})
    assert info.value.param == "top_logprobs"
    p = sampling_params_from_request({"max_tokens": 100})
    assert p.token_budget(10, 50) == 40 and p.token_budget(10, 1000) == 100
    assert p.token_budget(10, None, cap=20) == 20
    with pytest.raises(InvalidRequestError, match="context"):
        p.token_budget(50, 50)


def test_builders_shapes():
    entries = [P.TokenLogprob("Hi", -0.5, [("Hi", -0.5), ("Yo", -1.0)]), P.TokenLogprob("!", -0.1)]
    chat = P.chat_logprobs(entries)
    assert chat["content"][0] == {
        "token": "Hi", "logprob": -0.5, "bytes": [72, 105],
        "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                         {"token": "Yo", "logprob": -1.0, "bytes": [89, 111]}]}
    comp = P.completion_logprobs(entries, text_offset=3)
    assert comp == {"tokens": ["Hi", "!"], "token_logprobs": [-0.5, -0.1],
                    "top_logprobs": [{"Hi": -0.5, "Yo": -1.0}, {}], "text_offset": [3, 5]}
    chunk = P.chat_chunk("id", "m", 1, 0, {"content": "x"}, with_usage_field=True)
    assert chunk["object"] == "chat.completion.chunk" and chunk["usage"] is None
    assert chunk["choices"] == [{"index": 0, "delta": {"content": "x"}, "logprobs": None,
                                 "finish_reason": None}]
    usage = P.chat_usage_chunk("id", "m", 1, P.usage(3, 4))
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 7
    whole = P.chat_completion("id", "m", [P.chat_choice(0, P.chat_message("a"), "stop")],
                              P.usage(1, 1))
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"]["role"] == "assistant"
    assert "reasoning_content" in P.chat_message("a", "r", with_reasoning=True)
    assert P.completion("id", "m", [], None)["object"] == "text_completion"


def test_incremental_detokenizer_matches_whole_decode():
    tok = tm.build_tokenizer()
    text = "Café au lait — 北京 is 24 C. <think>ok</think> ☃☃"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decode = lambda xs: tok.decode(xs, skip_special_tokens=True)  # noqa: E731
    detok = IncrementalDetokenizer(decode)
    parts = [detok.add(i) for i in ids] + [detok.flush()]
    assert "".join(parts) == decode(ids) == text
    assert not any("\ufffd" in p for p in parts)
    assert sum(1 for p in parts if p) > 10
