"""XINFERENCE_MAX_TOKENS: the gateway caps every generation request, and so do the engines."""

import pytest

from xinference.api.gateway import Gateway
from xinference.model.llm.params import sampling_params_from_request
from xinference.settings import Settings


def gateway(env):
    return Gateway("127.0.0.1:1", Settings.from_env(env))


@pytest.mark.parametrize("request_, expected", [
    ({}, {"max_tokens": 64}),
    ({"max_tokens": 500}, {"max_tokens": 64}),
    ({"max_tokens": 10}, {"max_tokens": 10}),
    ({"max_completion_tokens": 900}, {"max_completion_tokens": 64}),
    ({"max_tokens": 900, "max_completion_tokens": 20},
     {"max_tokens": 64, "max_completion_tokens": 20}),
])
def test_gateway_caps_max_tokens(request_, expected):
    body = {"model": "m", "messages": [], **request_}
    capped = gateway({"XINFERENCE_MAX_TOKENS": "64"}).cap_max_tokens(dict(body))
    assert {k: v for k, v in capped.items() if "tokens" in k} == expected


def test_without_the_variable_requests_are_untouched():
    body = {"model": "m", "max_tokens": 100000}
    assert gateway({}).cap_max_tokens(dict(body)) == body
    assert "max_tokens" not in gateway({}).cap_max_tokens({"model": "m"})


def test_engines_apply_the_same_cap():
    for request in ({"max_tokens": 500}, {"max_completion_tokens": 500}, {}):
        params = sampling_params_from_request({"messages": [], **request}, "chat",
                                              max_tokens_cap=64)
        assert params.max_tokens == 64 and params.token_budget(10, 4096) == 64
    small = sampling_params_from_request({"messages": [], "max_tokens": 8}, "chat",
                                         max_tokens_cap=64)
    assert small.token_budget(10, 4096) == 8
