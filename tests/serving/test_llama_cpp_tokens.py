"""Chat prompt token counts on real llama.cpp (SmolLM2-135M GGUF): equal to a chat's usage."""

import time

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.llama_cpp_params import build_params
from xinference.model.engines.llama_cpp_tokens import count_chat_tokens

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
# Renders tools, so that a request's tools change the prompt (SmolLM2's own template has none).
TOOL_TEMPLATE = """\
{%- if tools %}<|im_start|>system
Tools:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|im_end|>
{% endif %}
{%- for message in messages %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
"""


@pytest.fixture(scope="module")
def server(smollm2_gguf):
    import xllamacpp

    config = EngineConfig(model_uid="count", model_type="LLM", model_name="smollm2",
                          engine="llama.cpp", model_format="ggufv2", model_path=smollm2_gguf,
                          options={"n_ctx": 1024, "n_parallel": 1, "n_threads": 1,
                                   "chat_template": TOOL_TEMPLATE})
    params = build_params(config)
    yield xllamacpp.Server(params), params.api_keys[0]


def prompt_tokens(server, request):
    answer = server.handle_chat_completions(dict(request, max_tokens=1, temperature=0))
    return answer["usage"]["prompt_tokens"]


@pytest.mark.parametrize("request_", [
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Tell me about whales."}]},
    {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [TOOL]},
])
def test_count_equals_the_prompt_tokens_of_a_chat(server, request_):
    srv, key = server
    started = time.perf_counter()
    counted = count_chat_tokens(srv, request_, key)
    spent = time.perf_counter() - started
    assert counted == prompt_tokens(srv, request_) and counted > 10
    assert spent < 2.0


def test_tools_count(server):
    srv, key = server
    plain = {"messages": [{"role": "user", "content": "Weather in Paris?"}]}
    assert count_chat_tokens(srv, dict(plain, tools=[TOOL]), key) > \
        count_chat_tokens(srv, plain, key) + 10


def test_bad_request_is_a_400(server):
    srv, key = server
    with pytest.raises(InvalidRequestError, match="llama.cpp"):
        count_chat_tokens(srv, {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, key)


def test_without_http_the_count_comes_from_a_one_token_chat(server):
    srv, key = server

    class NoHttp:
        listening_address = None
        handle_chat_completions = srv.handle_chat_completions

    request = {"messages": [{"role": "user", "content": "Hello there"}]}
    assert count_chat_tokens(NoHttp(), request, None) == count_chat_tokens(srv, request, key)
