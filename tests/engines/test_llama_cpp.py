"""The llama.cpp engine on real xllamacpp with the real SmolLM2-135M GGUF.

Each engine is built once per module (small context, one thread); every test
asks for a few tokens only.
"""

import asyncio
import json
import re
import time
import urllib.error
import urllib.request

import pytest

from xinference.errors import InvalidRequestError, ModelUnavailableError, RequestAbortedError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.llama_cpp import LlamaCppEngine, build_params

UID = "smollm2-test"
WHALES = [{"role": "user", "content": "Write one sentence about whales."}]
ENGLISH = {"the", "a", "and", "of", "are", "is", "with", "to", "in", "whales"}

# A ChatML template that renders tools and tool calls the Hermes way, so that
# llama.cpp's template analysis finds the <tool_call> format (SmolLM2's own
# template has no tool support, and llama.cpp then ignores `tools`).
TOOL_TEMPLATE = """\
{%- if tools %}<|im_start|>system
You may call these functions:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}Call one as <tool_call>{"name": "NAME", "arguments": {...}}</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
"""
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def config(path, **options):
    return EngineConfig(model_uid=UID, model_type="LLM", model_name="smollm2",
                        engine="llama.cpp", model_format="ggufv2", model_path=path,
                        options=options)


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    eng = LlamaCppEngine(config(smollm2_gguf, n_ctx=2048, n_parallel=2, n_threads=1))
    eng.load()
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def tool_engine(smollm2_gguf):
    eng = LlamaCppEngine(config(smollm2_gguf, n_ctx=2048, n_parallel=1, n_threads=1,
                                chat_template=TOOL_TEMPLATE))
    eng.load()
    yield eng
    eng.close()


def run(coro):
    return asyncio.run(coro)


async def drain(stream):
    return [chunk async for chunk in stream]


def chat(engine, **extra):
    return run(engine.chat({"model": UID, "messages": WHALES, "temperature": 0, **extra}))


def metrics(engine):
    return {line.split()[0]: float(line.split()[1]) for line in engine.metrics().splitlines()
            if line and not line.startswith("#")}


def content_of(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# Phase 1 ------------------------------------------------------------------


def test_chat_answers_in_english(engine):
    answer = chat(engine, max_tokens=24)
    assert answer["object"] == "chat.completion" and answer["model"] == UID
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant"
    words = set(re.findall(r"[a-z]+", choice["message"]["content"].lower()))
    assert len(words & ENGLISH) >= 2, choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert engine.describe()["n_parallel"] == 2 and engine.describe()["threads"] == 1


def test_stream_arrives_in_chunks_with_role_first(engine):
    chunks = run(drain(engine.chat_stream({"model": UID, "messages": WHALES, "temperature": 0,
                                           "max_tokens": 12, "stream": True,
                                           "stream_options": {"include_usage": True}})))
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(pieces) > 1
    assert {c["model"] for c in chunks} == {UID} and len({c["id"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    assert content_of(chunks) == chat(engine, max_tokens=12)["choices"][0]["message"]["content"]


def test_closing_a_stream_early_frees_its_slot(engine):
    async def scenario():
        before = metrics(engine)["llamacpp:tokens_predicted_total"]
        stream = engine.complete_stream({"model": UID, "prompt": "Once upon a time",
                                         "max_tokens": 900, "ignore_eos": True, "stream": True})
        got = [await stream.__anext__() for _ in range(3)]
        await stream.aclose()
        deadline = time.monotonic() + 20
        while metrics(engine)["llamacpp:requests_processing"] > 0:
            assert time.monotonic() < deadline, "the closed stream kept its slot"
            await asyncio.sleep(0.05)
        spent = metrics(engine)["llamacpp:tokens_predicted_total"] - before
        after = await engine.complete({"model": UID, "prompt": "Hello", "max_tokens": 3})
        return got, spent, after

    got, spent, after = run(scenario())
    assert len(got) == 3 and spent < 50
    assert after["usage"]["completion_tokens"] <= 3


def test_llama_cpp_http_side_door_is_loopback_only_and_locked(engine):
    address = engine._server.listening_address
    assert address.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(address + "/v1/models", timeout=10)
    assert info.value.code == 401


def test_bad_requests_raise_invalid_request(engine):
    cases = [({"messages": WHALES, "temperature": "hot"}, "temperature"),
             ({"messages": "not a list"}, "messages"),
             ({"messages": WHALES, "n": 0}, "n")]
    for request, param in cases:
        with pytest.raises(InvalidRequestError) as info:
            run(engine.chat(dict(request, model=UID)))
        assert info.value.param == param
        with pytest.raises(InvalidRequestError):
            run(drain(engine.chat_stream(dict(request, model=UID, stream=True))))
    with pytest.raises(InvalidRequestError, match="prompt"):
        run(engine.complete({"model": UID, "max_tokens": 2}))


def test_unknown_or_managed_options_raise_invalid_request(smollm2_gguf):
    for options, param in [({"bogus_option": 1}, "bogus_option"),
                           ({"sampling.bogus": 1}, "sampling.bogus"),
                           ({"hostnames": "0.0.0.0"}, "hostnames"),
                           ({"n_ctx": "lots"}, "n_ctx"),
                           ({"n_parallel": 0}, "n_parallel"),
                           ({"sampling": 1}, "sampling"),
                           ({"cache_type_k": "q9_9"}, "cache_type_k")]:
        with pytest.raises(InvalidRequestError) as info:
            LlamaCppEngine(config(smollm2_gguf, **options)).load()
        assert info.value.param == param and param in info.value.message


def test_options_are_coerced_from_strings(smollm2_gguf):
    params = build_params(config(smollm2_gguf, n_ctx="3072", n_parallel="3", n_threads="1",
                                 **{"sampling.temp": "0.5", "cont_batching": "false",
                                    "cache_type_k": "q8_0", "n-gpu-layers": "0",
                                    "antiprompt": "User:,Bot:"}))
    assert (params.n_ctx, params.n_parallel, params.cpuparams.n_threads) == (3072, 3, 1)
    assert params.cpuparams_batch.n_threads == 1
    assert params.sampling.temp == pytest.approx(0.5) and params.cont_batching is False
    assert params.cache_type_k.name.endswith("Q8_0") and params.n_gpu_layers == 0
    assert params.antiprompt == ["User:", "Bot:"]
    assert params.hostnames == ["127.0.0.1"] and params.port == 0 and params.api_keys
    assert params.use_jinja is True and params.warmup is False
    thinking = config(smollm2_gguf)
    thinking.enable_thinking = False
    assert build_params(thinking).default_template_kwargs == {"enable_thinking": "false"}


def test_default_context_gives_each_slot_1024_tokens(smollm2_gguf):
    def n_ctx(context_length, **options):
        cfg = config(smollm2_gguf, **options)
        cfg.context_length = context_length
        return build_params(cfg).n_ctx

    assert n_ctx(None) == 4096
    assert n_ctx(32768, n_parallel=2) == 4096
    assert n_ctx(2048, n_parallel=1) == 2048
    assert n_ctx(2048, n_parallel=8) == 8192
    assert n_ctx(2048, n_parallel=8, n_ctx=1024) == 1024


# Phase 2: OpenAI fidelity ----------------------------------------------------


def test_n_choices_beyond_the_slot_count_are_merged(engine):
    answer = chat(engine, n=3, max_tokens=4, temperature=1.0, ignore_eos=True, seed=11)
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2]
    assert answer["usage"]["completion_tokens"] == 12
    single = chat(engine, max_tokens=4, temperature=1.0, ignore_eos=True, seed=11)
    assert answer["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]
    chunks = run(drain(engine.chat_stream({"model": UID, "messages": WHALES, "n": 2,
                                           "max_tokens": 3, "ignore_eos": True, "stream": True,
                                           "stream_options": {"include_usage": True}})))
    roles = [c["choices"][0]["index"] for c in chunks
             if c["choices"] and c["choices"][0]["delta"].get("role")]
    assert sorted(roles) == [0, 1]
    usages = [c for c in chunks if c.get("usage")]
    assert len(usages) == 1 and usages[0]["usage"]["completion_tokens"] == 6
    assert chunks[-1] is usages[0]


def test_seed_makes_sampling_reproducible(engine):
    def sample(seed):
        return chat(engine, max_tokens=10, temperature=1.0, seed=seed)["choices"][0]["message"][
            "content"]

    assert sample(1234) == sample(1234)
    assert len({sample(seed) for seed in (1, 2, 3, 4)}) > 1


def test_stop_strings_are_never_emitted(engine):
    free = chat(engine, max_tokens=24)["choices"][0]["message"]["content"]
    assert "whale" in free
    stopped = chat(engine, max_tokens=24, stop=["whale"])["choices"][0]
    assert "whale" not in stopped["message"]["content"] and stopped["finish_reason"] == "stop"
    assert free.startswith(stopped["message"]["content"])
    chunks = run(drain(engine.chat_stream({"model": UID, "messages": WHALES, "temperature": 0,
                                           "max_tokens": 24, "stop": "whale", "stream": True})))
    assert content_of(chunks) == stopped["message"]["content"]


def test_chat_logprobs_cover_every_token(engine):
    answer = chat(engine, max_tokens=5, ignore_eos=True, logprobs=True, top_logprobs=2)
    entries = answer["choices"][0]["logprobs"]["content"]
    assert len(entries) == answer["usage"]["completion_tokens"] == 5
    assert "".join(e["token"] for e in entries) == answer["choices"][0]["message"]["content"]
    for entry in entries:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][1]["logprob"]


def test_completion_logprobs_take_the_legacy_shape_and_echo_works(engine):
    prompt = "The sky is"
    answer = run(engine.complete({"model": UID, "prompt": prompt, "max_tokens": 4,
                                  "temperature": 0, "ignore_eos": True, "logprobs": 2,
                                  "echo": True}))
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    choice = answer["choices"][0]
    logprobs = choice["logprobs"]
    assert choice["text"] == prompt + "".join(logprobs["tokens"])
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == 4
    assert all(len(top) <= 2 and isinstance(top, dict) for top in logprobs["top_logprobs"])
    offsets = logprobs["text_offset"]
    assert offsets[0] == len(prompt) and offsets == sorted(offsets)
    chunks = run(drain(engine.complete_stream({"model": UID, "prompt": prompt, "max_tokens": 4,
                                               "temperature": 0, "ignore_eos": True,
                                               "logprobs": 2, "stream": True})))
    streamed = [t for c in chunks for t in (c["choices"][0]["logprobs"] or {}).get("tokens", [])]
    assert streamed == logprobs["tokens"]


def test_response_format_json_object_and_schema(engine):
    ask = [{"role": "user", "content": "Give me a JSON object with a name and an age."}]
    answer = run(engine.chat({"model": UID, "messages": ask, "temperature": 0, "max_tokens": 80,
                              "response_format": {"type": "json_object"}}))
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert isinstance(json.loads(answer["choices"][0]["message"]["content"]), dict)
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    answer = run(engine.chat({"model": UID, "messages": ask, "temperature": 0, "max_tokens": 80,
                              "response_format": {"type": "json_schema",
                                                  "json_schema": {"name": "person",
                                                                  "schema": schema}}}))
    person = json.loads(answer["choices"][0]["message"]["content"])
    assert set(person) == {"name", "age"}
    assert isinstance(person["name"], str) and type(person["age"]) is int


def _weather_history():
    messages = []
    for i, city in enumerate(["London", "Berlin", "Madrid"]):
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        messages += [{"role": "user", "content": f"What is the weather in {city}?"},
                     {"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": f"call_{i}", "content": "sunny"},
                     {"role": "assistant", "content": f"It is sunny in {city}."}]
    return messages + [{"role": "user", "content": "What is the weather in Paris?"}]


def test_tool_calls_are_parsed_and_streamed(tool_engine):
    request = {"model": UID, "messages": _weather_history(), "tools": [WEATHER_TOOL],
               "temperature": 0, "max_tokens": 60}
    answer = run(tool_engine.chat(dict(request, tool_choice="auto")))
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    chunks = run(drain(tool_engine.chat_stream(dict(request, stream=True))))
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []]
    assert len(deltas) > 1 and deltas[0]["function"]["name"] == "get_weather"
    arguments = "".join(d["function"].get("arguments") or "" for d in deltas)
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_finish_reasons_and_max_completion_tokens(engine):
    cut = chat(engine, max_completion_tokens=3, ignore_eos=True)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 3
    done = run(engine.chat({"model": UID, "temperature": 0, "max_tokens": 100,
                            "messages": [{"role": "user", "content": "Say hi."}]}))
    assert done["choices"][0]["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] < 100


def test_request_id_path_gives_the_same_answer(engine):
    native = chat(engine, max_tokens=10, logprobs=True)
    tracked = chat(engine, max_tokens=10, logprobs=True, request_id="same-1")
    assert tracked["choices"][0]["message"] == native["choices"][0]["message"]
    assert tracked["choices"][0]["finish_reason"] == native["choices"][0]["finish_reason"]
    assert [e["token"] for e in tracked["choices"][0]["logprobs"]["content"]] == \
        [e["token"] for e in native["choices"][0]["logprobs"]["content"]]
    assert tracked["usage"]["completion_tokens"] == native["usage"]["completion_tokens"]
    assert tracked["object"] == "chat.completion" and tracked["model"] == UID


def test_abort_stops_streams_and_whole_requests(engine):
    long = {"model": UID, "messages": WHALES, "max_tokens": 900, "ignore_eos": True}

    async def scenario():
        stream = engine.chat_stream(dict(long, stream=True, request_id="abort-1"))
        await stream.__anext__()
        assert await engine.abort("abort-1") is True
        with pytest.raises(RequestAbortedError):
            await drain(stream)
        task = asyncio.ensure_future(engine.chat(dict(long, request_id="abort-2")))
        while not await engine.abort("abort-2"):
            assert not task.done()
            await asyncio.sleep(0.01)
        with pytest.raises(RequestAbortedError):
            await task
        return await engine.abort("abort-1"), await engine.abort("never-seen")

    assert run(scenario()) == (False, False)


def test_close_ends_running_streams_and_is_idempotent(smollm2_gguf):
    eng = LlamaCppEngine(config(smollm2_gguf, n_ctx=1024, n_parallel=1, n_threads=1))
    eng.load()

    async def scenario():
        stream = eng.complete_stream({"model": UID, "prompt": "Once upon a time",
                                      "max_tokens": 900, "ignore_eos": True, "stream": True})
        await stream.__anext__()
        eng.close()
        with pytest.raises(ModelUnavailableError):
            await drain(stream)
        with pytest.raises(ModelUnavailableError):
            await eng.chat({"model": UID, "messages": WHALES})

    run(scenario())
    eng.close()
    assert eng.describe()["n_ctx"] == 1024
