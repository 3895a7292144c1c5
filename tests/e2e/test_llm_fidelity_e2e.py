"""Issue 3 end to end: the OpenAI API's fields through a real server, on both LLM engines.

One real ``xinference-local`` (the session's), the official ``openai`` SDK and the official
``xinference_client`` package, as a newcomer would use them. Models of this module:

- ``smollm2-135m-instruct``: SmolLM2 on llama.cpp (the server's default model, 4 slots);
- ``smollm2-tf``: the same GGUF on the Transformers engine (continuous batching);
- ``smollm2-1slot``: SmolLM2 on llama.cpp with one slot and a Hermes tool template;
- ``tiny-qwen`` / ``tiny-nothink``: a tiny Qwen2 trained here to think in ``<think>`` and call
  tools in ``<tool_call>``, launched from its folder as the ``qwen3`` family (thinking on) and
  as ``qwen2.5-instruct`` with ``enable_thinking=False`` at launch.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from helpers import wait_until

from .conftest import DEFAULT_MODEL, model_ready
from .llm_helpers import (CITY_TOOL, NAMED, SEA_TOOL, TIME_TOOL, TOOL_TEMPLATE,
                          check_schema, cpu_seconds, gather, tm, weather_history)

LLAMA, TF, ONE_SLOT, TINY, TINY_OFF = (DEFAULT_MODEL, "smollm2-tf", "smollm2-1slot",
                                       "tiny-qwen", "tiny-nothink")
ENGINES = pytest.mark.parametrize("uid", [LLAMA, TF], ids=["llama.cpp", "transformers"])
WHALES = [{"role": "user", "content": "Write one sentence about whales."}]
STORY = [{"role": "user", "content": "Tell me a very long story about the sea."}]
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}


# --------------------------------------------------------------------------- fixtures
def _launch(api, body):
    resp = api.post("/v1/models", params={"wait_ready": "false"}, json=body)
    assert resp.status_code == 200, resp.text
    return body["model_uid"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tiny-qwen-trained"))


@pytest.fixture(scope="module")
def models(api, local_server, tiny_dir):
    """Launch every model of the module at once (the tiny one trains meanwhile); stop them at
    the end."""
    uids = [_launch(api, {"model_name": DEFAULT_MODEL, "model_engine": "Transformers",
                          "model_uid": TF}),
            _launch(api, {"model_name": DEFAULT_MODEL, "model_engine": "llama.cpp",
                          "model_uid": ONE_SLOT, "n_parallel": 1, "n_threads": 1, "n_ctx": 2048,
                          "chat_template": TOOL_TEMPLATE})]
    try:
        facts = tm.build_tiny_qwen2(tiny_dir, train=True)
        assert facts["loss"] < 0.01, facts
        common = {"model_engine": "Transformers", "model_format": "pytorch", "model_path": tiny_dir}
        uids.append(_launch(api, {"model_name": "qwen3", "model_uid": TINY, **common}))
        uids.append(_launch(api, {"model_name": "qwen2.5-instruct", "model_uid": TINY_OFF,
                                  "enable_thinking": False, **common}))
        for uid in uids:
            wait_until(lambda uid=uid: model_ready(local_server.base_url, uid), 240, uid,
                       local_server)
        yield uids
    finally:
        for uid in uids:
            api.delete(f"/v1/models/{uid}")


@pytest.fixture(scope="module")
def oai(local_server, models):
    client = openai.OpenAI(base_url=f"{local_server.base_url}/v1", api_key="none",
                           max_retries=0, timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def greedy(oai):
    """The greedy 16-token answer to WHALES of each engine (reference for several tests)."""
    cache = {}

    def get(uid):
        if uid not in cache:
            cache[uid] = oai.chat.completions.create(model=uid, messages=WHALES, temperature=0,
                                                     max_tokens=16)
        return cache[uid]
    return get


def chat(oai, uid, messages=WHALES, **kwargs):
    return oai.chat.completions.create(model=uid, messages=messages, **kwargs)


def text(oai, uid, **kwargs):
    return chat(oai, uid, **kwargs).choices[0].message.content


# --------------------------------------------------------------------------- streaming
@ENGINES
def test_stream_done_include_usage_and_same_text_as_whole(api, oai, greedy, uid):
    with api.stream("POST", "/v1/chat/completions", json={
            "model": uid, "messages": WHALES, "max_tokens": 6, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and all(json.loads(e)["object"] == "chat.completion.chunk"
                                          for e in events[:-1])
    whole = greedy(uid)
    chunks = list(chat(oai, uid, temperature=0, max_tokens=16, stream=True,
                       stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    got, usage = gather(chunks)[0][0], chunks[-1].usage
    assert got["content"] == whole.choices[0].message.content
    assert got["finish"] == whole.choices[0].finish_reason
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_both_engines_count_the_same_prompt_tokens(greedy):
    assert greedy(LLAMA).usage.prompt_tokens == greedy(TF).usage.prompt_tokens > 10


# --------------------------------------------------------------------------- sampling fields
@ENGINES
def test_max_tokens_and_max_completion_tokens_give_length(oai, uid):
    for kwargs, count in (({"max_tokens": 3}, 3), ({"max_completion_tokens": 2}, 2),
                          ({"max_tokens": 9, "max_completion_tokens": 4}, 4)):
        answer = chat(oai, uid, temperature=0, **kwargs)
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == count, kwargs


@ENGINES
def test_temperature_zero_and_tiny_top_p_are_greedy(oai, greedy, uid):
    reference = greedy(uid).choices[0].message.content
    assert text(oai, uid, temperature=0, max_tokens=16) == reference
    for seed in (1, 2):
        assert text(oai, uid, temperature=1.0, top_p=0.001, seed=seed, max_tokens=16) == reference


@ENGINES
def test_same_seed_same_output(oai, uid):
    def sample(seed):
        return text(oai, uid, temperature=1.0, seed=seed, max_tokens=12)

    first = sample(7)
    assert sample(7) == first
    assert any(sample(seed) != first for seed in (8, 9))


@ENGINES
def test_stop_string_and_list_end_the_answer_and_are_never_emitted(oai, greedy, uid):
    full = greedy(uid).choices[0].message.content
    words = full.split()
    word, other = words[3], words[5]
    cut = chat(oai, uid, temperature=0, max_tokens=16, stop=word).choices[0]
    assert (cut.message.content, cut.finish_reason) == (full[:full.index(word)], "stop")
    first = min(full.index(word), full.index(other))
    stream = chat(oai, uid, temperature=0, max_tokens=16, stream=True,
                  stop=["no such words", other, word])
    (got,) = gather(stream)[0].values()
    assert (got["content"], got["finish"]) == (full[:first], "stop")


@ENGINES
def test_n_choices_with_seed(oai, uid):
    single = text(oai, uid, temperature=1.0, seed=11, max_tokens=8)
    both = chat(oai, uid, temperature=1.0, seed=11, max_tokens=8, n=2)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[0].message.content == single
    assert both.usage.completion_tokens == 16
    streamed, _ = gather(chat(oai, uid, temperature=1.0, seed=11, max_tokens=8, n=2, stream=True))
    assert sorted(streamed) == [0, 1] and streamed[0]["content"] == single
    assert all(c["finish"] == "length" for c in streamed.values())


@ENGINES
def test_logprobs_and_top_logprobs(oai, uid):
    choice = chat(oai, uid, temperature=0, max_tokens=6, logprobs=True, top_logprobs=2).choices[0]
    entries = choice.logprobs.content
    assert len(entries) == 6 and "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)
    assert chat(oai, uid, temperature=0, max_tokens=2).choices[0].logprobs is None


@ENGINES
def test_presence_and_frequency_penalties_change_a_repetitive_answer(oai, greedy, uid):
    plain = greedy(uid).choices[0].message.content
    for kwargs in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0}):
        penalized = text(oai, uid, temperature=0, max_tokens=16, **kwargs)
        assert penalized and penalized != plain


# --------------------------------------------------------------------------- structured output
@ENGINES
def test_response_format_json_object_and_json_schema_validate(oai, uid):
    ask = [{"role": "user", "content": "Reply with a JSON object whose key answer holds "
                                       "the capital of France."}]
    answer = chat(oai, uid, ask, temperature=0, max_tokens=60,
                  response_format={"type": "json_object"}).choices[0]
    assert answer.finish_reason == "stop" and isinstance(json.loads(answer.message.content), dict)
    person = [{"role": "user", "content": "Give me a person as JSON with name and age."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    answer = chat(oai, uid, person, temperature=0, max_tokens=40, response_format=fmt).choices[0]
    check_schema(json.loads(answer.message.content), PERSON)
    assert answer.finish_reason == "stop"
    (got,) = gather(chat(oai, uid, person, temperature=1.0, seed=3, max_tokens=40, stream=True,
                         response_format=fmt))[0].values()
    check_schema(json.loads(got["content"]), PERSON)


# --------------------------------------------------------------------------- tools
def test_tool_calls_whole_and_streamed_on_transformers(oai):
    answer = chat(oai, TINY, tm.WEATHER, tools=[tm.WEATHER_TOOL], temperature=0).choices[0]
    assert answer.finish_reason == "tool_calls" and answer.message.content is None
    (call,) = answer.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    got, usage = gather(chat(oai, TINY, tm.WEATHER, tools=[tm.WEATHER_TOOL], temperature=0,
                             stream=True, stream_options={"include_usage": True}))
    got = got[0]
    assert got["finish"] == "tool_calls" and got["content"] == ""
    first, *rest = got["tool_deltas"]
    assert first.id and first.type == "function" and first.function.name == "get_weather"
    assert rest and all(d.id is None and d.function.name is None for d in rest)
    assert json.loads(got["calls"][0]["arguments"]) == {"city": "Paris"}
    assert usage.completion_tokens > 0


def test_tool_result_turn_and_tool_choice_on_transformers(oai):
    follow = chat(oai, TINY, tm.WEATHER_FOLLOWUP, tools=[tm.WEATHER_TOOL], temperature=0,
                  extra_body={"chat_template_kwargs": {"enable_thinking": False}}).choices[0]
    assert (follow.message.content, follow.finish_reason) == (tm.ANSWER_WEATHER, "stop")
    hidden = chat(oai, TINY, tm.WEATHER, tools=[tm.WEATHER_TOOL], tool_choice="none",
                  temperature=0, max_tokens=12).choices[0]
    assert not hidden.message.tool_calls and hidden.finish_reason != "tool_calls"
    with pytest.raises(openai.BadRequestError) as bad:
        chat(oai, TINY, tm.WEATHER, tools=[tm.WEATHER_TOOL],
             tool_choice={"type": "function", "function": {"name": "nope"}})
    assert bad.value.body["param"] == "tool_choice"


def test_required_tool_choice_forces_a_call_on_transformers(oai):
    """After the tool's result the tiny model answers in words; "required" still makes it call."""
    request = {"messages": tm.WEATHER_FOLLOWUP, "tools": [CITY_TOOL], "temperature": 0,
               "max_tokens": 60, "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}
    assert not chat(oai, TINY, **request).choices[0].message.tool_calls
    answer = chat(oai, TINY, tool_choice="required", **request).choices[0]
    assert answer.finish_reason == "tool_calls" and answer.message.content is None
    (call,) = answer.message.tool_calls
    assert call.function.name == "get_weather"
    check_schema(json.loads(call.function.arguments), CITY_TOOL["function"]["parameters"])
    got = gather(chat(oai, TINY, tool_choice="required", stream=True, **request))[0][0]
    assert got["finish"] == "tool_calls" and got["calls"][0]["name"] == "get_weather"
    assert got["calls"][0]["arguments"] == call.function.arguments


def test_named_tool_choice_calls_that_tool_on_transformers(oai):
    """The tiny model never learnt get_time; naming it in tool_choice makes it call it."""
    tools = [tm.WEATHER_TOOL, TIME_TOOL]
    auto = chat(oai, TINY, tm.WEATHER, tools=tools, temperature=0).choices[0].message
    assert "get_time" not in [c.function.name for c in auto.tool_calls or []]
    named = {"type": "function", "function": {"name": "get_time"}}
    answer = chat(oai, TINY, tm.WEATHER, tools=tools, tool_choice=named, temperature=0,
                  max_tokens=60).choices[0]
    assert answer.finish_reason == "tool_calls"
    (call,) = answer.message.tool_calls
    assert call.function.name == "get_time"
    check_schema(json.loads(call.function.arguments), TIME_TOOL["function"]["parameters"])


def test_tool_calls_whole_and_streamed_on_llama_cpp(oai):
    request = {"messages": weather_history(), "tools": [SEA_TOOL], "temperature": 0,
               "max_tokens": 40}
    answer = chat(oai, ONE_SLOT, **request).choices[0]
    assert answer.finish_reason == "tool_calls" and not answer.message.content
    (call,) = answer.message.tool_calls
    assert call.id and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    got = gather(chat(oai, ONE_SLOT, stream=True, **request))[0][0]
    first, *rest = got["tool_deltas"]
    assert first.id and first.function.name == "get_weather" and rest
    assert all(d.id is None and not (d.function and d.function.name) for d in rest)
    assert json.loads(got["calls"][0]["arguments"]) == {"city": "Paris"}
    assert got["finish"] == "tool_calls"


@pytest.mark.parametrize("uid", [ONE_SLOT, LLAMA], ids=["tool-template", "no-tool-template"])
def test_required_and_named_tool_choice_force_a_call_on_llama_cpp(oai, uid):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    for choice in ("required", NAMED):
        answer = chat(oai, uid, ask, tools=[SEA_TOOL], tool_choice=choice, temperature=0,
                      max_tokens=40).choices[0]
        assert answer.finish_reason == "tool_calls", answer
        (call,) = answer.message.tool_calls
        assert call.function.name == "get_weather"
        check_schema(json.loads(call.function.arguments), SEA_TOOL["function"]["parameters"])
    got = gather(chat(oai, uid, ask, tools=[SEA_TOOL], tool_choice="required", temperature=0,
                      max_tokens=40, stream=True))[0][0]
    assert got["finish"] == "tool_calls" and got["content"] == ""
    assert got["tool_deltas"][0].function.name == "get_weather"


# --------------------------------------------------------------------------- thinking
def test_reasoning_content_is_separate_from_content(oai):
    message = chat(oai, TINY, tm.FRANCE, temperature=0).choices[0].message
    assert message.reasoning_content == tm.THOUGHT_FRANCE
    assert message.content == tm.ANSWER_FRANCE
    got = gather(chat(oai, TINY, tm.FRANCE, temperature=0, stream=True))[0][0]
    assert (got["reasoning"], got["content"]) == (tm.THOUGHT_FRANCE, tm.ANSWER_FRANCE)
    order = got["order"]
    assert order.index("content") > max(i for i, k in enumerate(order) if k == "reasoning")


def test_enable_thinking_at_launch_and_per_request(oai, local_server):
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    on = {"chat_template_kwargs": {"enable_thinking": True}}
    per_request = chat(oai, TINY, tm.FRANCE, temperature=0, extra_body=off).choices[0].message
    assert (per_request.content, per_request.reasoning_content) == (tm.ANSWER_FRANCE, None)
    launched_off = chat(oai, TINY_OFF, tm.FRANCE, temperature=0).choices[0].message
    assert (launched_off.content, launched_off.reasoning_content) == (tm.ANSWER_FRANCE, None)
    back_on = chat(oai, TINY_OFF, tm.FRANCE, temperature=0, extra_body=on).choices[0].message
    assert back_on.reasoning_content == tm.THOUGHT_FRANCE
    assert back_on.content == tm.ANSWER_FRANCE
    from xinference_client import RESTfulClient

    handle = RESTfulClient(local_server.base_url).get_model(TINY)
    answer = handle.chat(messages=tm.FRANCE, enable_thinking=False,
                         generate_config={"temperature": 0})
    assert answer["choices"][0]["message"]["content"] == tm.ANSWER_FRANCE


def test_usage_counts_real_tokens(oai, tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    prompt = tok.apply_chat_template(tm.FRANCE, add_generation_prompt=True, tokenize=False)
    target = f"<think>\n{tm.THOUGHT_FRANCE}\n</think>\n\n{tm.ANSWER_FRANCE}<|im_end|>"
    usage = chat(oai, TINY, tm.FRANCE, temperature=0).usage
    assert usage.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert usage.completion_tokens == len(tok(target, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------- completions
@ENGINES
def test_completions_whole_and_streamed(oai, uid):
    whole = oai.completions.create(model=uid, prompt="Once upon a time", max_tokens=6,
                                   temperature=0, logprobs=1)
    choice = whole.choices[0]
    assert whole.object == "text_completion" and choice.finish_reason == "length"
    assert "".join(choice.logprobs.tokens) == choice.text and whole.usage.completion_tokens == 6
    chunks = list(oai.completions.create(model=uid, prompt="Once upon a time", max_tokens=6,
                                         temperature=0, stream=True,
                                         stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert chunks[-1].usage.completion_tokens == 6


# --------------------------------------------------------------------------- cancellation
def _assert_generation_stopped(api, oai, uid, request_id):
    """The gone client's request no longer runs: no CPU burnt, not abortable, slot free."""
    time.sleep(0.5)
    (pid,) = [r["pid"] for r in api.get(f"/v1/models/{uid}/replicas").json()]
    idle = cpu_seconds(pid)
    assert idle < 0.3, f"the model process still burns {idle:.2f} s of CPU per second"
    probe = api.post(f"/v1/models/{uid}/requests/{request_id}/abort").json()
    assert probe["aborted"] is False, "the engine still ran the request of a gone client"
    started = time.monotonic()
    after = chat(oai, uid, WHALES, max_tokens=4, temperature=0)
    assert after.usage.completion_tokens == 4 and time.monotonic() - started < 15


SLOTS = pytest.mark.parametrize("uid", [ONE_SLOT, TF], ids=["llama.cpp-1-slot", "transformers"])


@SLOTS
def test_client_disconnect_mid_stream_stops_generation_and_frees_the_slot(api, oai, uid):
    request_id = f"gone-{uid}"
    stream = chat(oai, uid, STORY, max_tokens=1500, temperature=1.0, stream=True,
                  extra_body={"ignore_eos": True, "request_id": request_id})
    chunks = iter(stream)
    assert len([next(chunks) for _ in range(4)]) == 4
    stream.close()
    _assert_generation_stopped(api, oai, uid, request_id)


@SLOTS
def test_client_giving_up_on_a_whole_answer_stops_its_generation(api, oai, local_server, uid):
    request_id = f"timeout-{uid}"
    body = {"model": uid, "messages": STORY, "max_tokens": 1500, "temperature": 1.0,
            "ignore_eos": True, "request_id": request_id}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{local_server.base_url}/v1/chat/completions", json=body, timeout=2)
    _assert_generation_stopped(api, oai, uid, request_id)


@ENGINES
def test_abort_by_request_id_stops_a_running_stream(api, oai, uid):
    request_id = f"abort-{uid}"
    stream = chat(oai, uid, STORY, max_tokens=1500, temperature=1.0, stream=True,
                  extra_body={"ignore_eos": True, "request_id": request_id})
    chunks = iter(stream)
    received = [next(chunks), next(chunks)]
    resp = api.post(f"/v1/models/{uid}/requests/{request_id}/abort")
    assert resp.json() == {"msg": "aborted", "aborted": True}
    with pytest.raises(openai.APIError, match="aborted"):
        received.extend(chunks)
    assert len(received) < 100
    again = api.post(f"/v1/models/{uid}/requests/{request_id}/abort").json()
    assert again["aborted"] is False


# --------------------------------------------------------------------------- xinference_client
@ENGINES
def test_official_xinference_client_chat_stream_and_generate(local_server, uid):
    from xinference_client import RESTfulClient

    handle = RESTfulClient(local_server.base_url).get_model(uid)
    chunks = list(handle.chat(messages=WHALES, generate_config={"stream": True, "max_tokens": 8,
                                                                "temperature": 0}))
    assert len(chunks) > 2 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"])
    whole = handle.chat(messages=WHALES, generate_config={"max_tokens": 8, "temperature": 0})
    assert streamed == whole["choices"][0]["message"]["content"] and streamed.strip()
    done = handle.generate("Once upon a time", generate_config={"max_tokens": 6})
    assert done["object"] == "text_completion" and done["usage"]["completion_tokens"] == 6
    assert done["choices"][0]["text"].strip()


# --------------------------------------------------------------------------- batching
def test_16_concurrent_streams_beat_one_at_a_time_on_transformers(oai):
    def stream_one(i):
        chunks = chat(oai, TF, [{"role": "user", "content": f"Tell story number {i}."}],
                      max_tokens=8, temperature=0.8, seed=i, stream=True,
                      stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        return [c for c in chunks][-1].usage.completion_tokens

    stream_one(99)
    started = time.perf_counter()
    one_by_one = sum(stream_one(i) for i in range(16))
    sequential = one_by_one / (time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        together = sum(pool.map(stream_one, range(16)))
    concurrent = together / (time.perf_counter() - started)
    print(f"\n16 streams x 8 tokens on Transformers: one at a time {sequential:.1f} tok/s, "
          f"16 at once {concurrent:.1f} tok/s")
    assert one_by_one == together == 16 * 8
    assert concurrent > sequential
