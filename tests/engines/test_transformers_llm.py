"""The transformers engine on real models: tiny Qwen2s built here, and SmolLM2 from its GGUF."""

import asyncio
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

from xinference.errors import InvalidRequestError, RequestAbortedError, XinferenceError
from xinference.model.engines.base import EngineConfig
from xinference.settings import get_settings

_spec = importlib.util.spec_from_file_location(
    "tiny_models", Path(__file__).parents[1] / "llm" / "tiny_models.py")
tm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tm)



def run(coro):
    return asyncio.run(coro)


def make_engine(path, fmt="pytorch", family=None, **config):
    from xinference.model.engines.transformers_llm import TransformersEngine

    cfg = EngineConfig(model_uid="m1", model_type="LLM", model_name="tiny", engine="transformers",
                       model_format=fmt, model_path=str(path), family=family or {}, **config)
    engine = TransformersEngine(cfg)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-trained")
    facts = tm.build_tiny_qwen2(str(path), train=True)
    assert facts["loss"] < 0.01, facts
    engine = make_engine(path, family={"context_length": 512})
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-random")
    tm.build_tiny_qwen2(str(path), train=False, hidden=64, layers=2)
    return path


@pytest.fixture(scope="module")
def rand(random_dir):
    engine = make_engine(random_dir)
    yield engine
    engine.close()


def no_eos(engine):
    return {str(i): -100 for i in engine._stop_ids}


async def collect(stream):
    return [chunk async for chunk in stream]


def accumulate(chunks):
    content, reasoning, calls, finish = "", "", {}, None
    for chunk in chunks:
        for choice in chunk["choices"]:
            d = choice["delta"]
            content += d.get("content") or ""
            reasoning += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] += tc.get("function", {}).get("name") or ""
                slot["arguments"] += tc.get("function", {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    return content, reasoning, calls, finish


def test_chat_reasoning_goes_to_reasoning_content(trained):
    out = run(trained.chat({"model": "m1", "messages": tm.FRANCE, "temperature": 0}))
    choice = out["choices"][0]
    assert out["object"] == "chat.completion" and out["model"] == "m1"
    assert out["id"].startswith("chatcmpl-")
    assert choice["message"]["reasoning_content"] == tm.THOUGHT_FRANCE
    assert choice["message"]["content"] == tm.ANSWER_FRANCE
    assert choice["finish_reason"] == "stop"
    target = f"<think>\n{tm.THOUGHT_FRANCE}\n</think>\n\n{tm.ANSWER_FRANCE}<|im_end|>"
    prompt = trained.tokenizer.apply_chat_template(tm.FRANCE, add_generation_prompt=True,
                                                   tokenize=False)
    usage = out["usage"]
    assert usage == {"prompt_tokens": len(trained._encode(prompt, False)),
                     "completion_tokens": len(trained._encode(target, False)),
                     "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def test_enable_thinking_per_request_and_at_launch(trained, tmp_path):
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    out = run(trained.chat({"messages": tm.FRANCE, "temperature": 0, **off}))
    assert out["choices"][0]["message"]["content"] == tm.ANSWER_FRANCE
    assert out["choices"][0]["message"]["reasoning_content"] is None
    launched_off = make_engine(trained.config.model_path, enable_thinking=False)
    try:
        out = run(launched_off.chat({"messages": tm.FRANCE, "temperature": 0}))
        message = out["choices"][0]["message"]
        assert message == {"role": "assistant", "content": tm.ANSWER_FRANCE, "refusal": None,
                           "reasoning_content": None}
        on = {"chat_template_kwargs": {"enable_thinking": True}}
        out = run(launched_off.chat({"messages": tm.FRANCE, "temperature": 0, **on}))
        message = out["choices"][0]["message"]
        assert message["reasoning_content"] == tm.THOUGHT_FRANCE
    finally:
        launched_off.close()


def test_tool_call_whole_response(trained):
    out = run(trained.chat({"messages": tm.WEATHER, "tools": [tm.WEATHER_TOOL], "temperature": 0}))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["reasoning_content"] == tm.THOUGHT_WEATHER
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_tool_call_streamed_as_openai_deltas(trained):
    request = {"messages": tm.WEATHER, "tools": [tm.WEATHER_TOOL], "temperature": 0, "stream": True,
               "stream_options": {"include_usage": True}}
    chunks = run(collect(trained.chat_stream(request)))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])
    content, reasoning, calls, finish = accumulate(chunks)
    assert (content, reasoning, finish) == ("", tm.THOUGHT_WEATHER, "tool_calls")
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    tool_deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[:-1]
                   if "tool_calls" in c["choices"][0]["delta"]]
    assert tool_deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert tool_deltas[0]["id"] == calls[0]["id"] and tool_deltas[0]["type"] == "function"
    assert all("id" not in d and "name" not in d["function"] for d in tool_deltas[1:])
    assert len(tool_deltas) >= 2
    whole = run(trained.chat({**request, "stream": False}))
    assert whole["usage"] == chunks[-1]["usage"]


def test_tool_result_turn_with_openai_message_shapes(trained):
    out = run(trained.chat({"messages": tm.WEATHER_FOLLOWUP, "tools": [tm.WEATHER_TOOL],
                            "temperature": 0, "chat_template_kwargs": {"enable_thinking": False}}))
    assert out["choices"][0]["message"]["content"] == tm.ANSWER_WEATHER
    assert out["choices"][0]["finish_reason"] == "stop"


def test_stop_string_never_emitted_even_streamed(trained):
    base = {"messages": tm.FRANCE, "temperature": 0,
            "chat_template_kwargs": {"enable_thinking": False}}
    out = run(trained.chat({**base, "stop": ["France is"]}))
    assert out["choices"][0]["message"]["content"] == "The capital of "
    assert out["choices"][0]["finish_reason"] == "stop"
    full = run(trained.chat(base))["usage"]["completion_tokens"]
    assert out["usage"]["completion_tokens"] < full
    chunks = run(collect(trained.chat_stream({**base, "stop": ["is Par", "zzz"]})))
    content, _, _, finish = accumulate(chunks)
    assert content == "The capital of France " and finish == "stop"


def test_max_tokens_gives_length(trained):
    out = run(trained.chat({"messages": tm.FRANCE, "temperature": 0, "max_tokens": 3}))
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 3
    out = run(trained.chat({"messages": tm.FRANCE, "temperature": 0, "max_completion_tokens": 2}))
    assert out["usage"]["completion_tokens"] == 2


def test_logprobs_align_with_content(trained):
    request = {"messages": tm.FRANCE, "temperature": 0, "logprobs": True, "top_logprobs": 2,
               "chat_template_kwargs": {"enable_thinking": False}}
    choice = run(trained.chat(request))["choices"][0]
    entries = choice["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == tm.ANSWER_FRANCE
    for e in entries:
        assert len(e["top_logprobs"]) == 2 and e["logprob"] <= 0
        assert e["top_logprobs"][0]["logprob"] == pytest.approx(e["logprob"])
    chunks = run(collect(trained.chat_stream(request)))
    streamed = [e for c in chunks
                for e in ((c["choices"][0]["logprobs"] or {}).get("content") or [])]
    assert [e["token"] for e in streamed] == [e["token"] for e in entries]


def test_same_seed_same_output_even_inside_a_batch(rand):
    def ask(seed):
        return {"messages": [{"role": "user", "content": "hello"}], "temperature": 1.0,
                "seed": seed, "max_tokens": 24, "logit_bias": no_eos(rand)}

    first = run(rand.chat(ask(7)))["choices"][0]["message"]["content"]
    again = run(rand.chat(ask(7)))["choices"][0]["message"]["content"]
    other = run(rand.chat(ask(8)))["choices"][0]["message"]["content"]
    assert first == again and first != other

    async def crowded():
        return await asyncio.gather(*[rand.chat(ask(s)) for s in (1, 7, 2, 3)])

    results = run(crowded())
    assert results[1]["choices"][0]["message"]["content"] == first
    n2 = run(rand.chat({**ask(7), "n": 2}))
    assert [c["index"] for c in n2["choices"]] == [0, 1]
    assert n2["choices"][0]["message"]["content"] == first
    assert n2["choices"][1]["message"]["content"] != first
    assert n2["usage"]["completion_tokens"] == 48


def test_completions_whole_streamed_and_echo(rand):
    request = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0,
               "logit_bias": no_eos(rand), "logprobs": 1}
    whole = run(rand.complete(request))
    choice = whole["choices"][0]
    assert whole["object"] == "text_completion" and choice["finish_reason"] == "length"
    assert whole["usage"]["completion_tokens"] == 8
    assert "".join(choice["logprobs"]["tokens"]) == choice["text"]
    with_usage = {**request, "stream_options": {"include_usage": True}}
    chunks = run(collect(rand.complete_stream(with_usage)))
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == choice["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == whole["usage"]
    echoed = run(rand.complete({**request, "echo": True}))["choices"][0]["text"]
    assert echoed == "Once upon a time" + choice["text"]


def test_bad_requests_raise_before_streaming(trained):
    with pytest.raises(InvalidRequestError) as info:
        trained.chat_stream({"messages": [{"role": "robot", "content": "x"}]})
    assert info.value.param == "messages"
    with pytest.raises(InvalidRequestError) as info:
        trained.chat_stream({"messages": tm.FRANCE, "response_format": {"type": "xml"}})
    assert info.value.param == "response_format"
    with pytest.raises(InvalidRequestError) as info:
        trained.complete_stream({"prompt": "word " * 600})
    assert "context" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        trained.chat_stream({"messages": tm.FRANCE, "tools": [tm.WEATHER_TOOL],
                             "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert info.value.param == "tool_choice"
    with pytest.raises(InvalidRequestError) as info:
        trained.chat_stream({"messages": tm.FRANCE, "tools": [{"type": "function"}]})
    assert info.value.param == "tools"
    with pytest.raises(InvalidRequestError) as info:
        trained.chat_stream({"messages": tm.FRANCE, "chat_template_kwargs": ["x"]})
    assert info.value.param == "chat_template_kwargs"


def test_stopped_engine_fails_streams_with_a_domain_error(random_dir):
    from xinference.errors import ModelUnavailableError

    engine = make_engine(random_dir)

    async def scenario():
        stream = engine.chat_stream({"messages": [{"role": "user", "content": "go"}],
                                     "max_tokens": 400, "temperature": 1.0, "seed": 3,
                                     "logit_bias": no_eos(engine)})
        await stream.__anext__()
        await stream.__anext__()
        await asyncio.to_thread(engine.close)
        with pytest.raises(ModelUnavailableError):
            async for _ in stream:
                pass

    run(scenario())
    with pytest.raises(ModelUnavailableError):
        engine.chat_stream({"messages": tm.FRANCE})


WEATHER_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "sunny"],
                  "properties": {"city": {"enum": ["Paris", "Rome"]}, "sunny": {"type": "boolean"}}}


def test_json_schema_output_parses_and_validates(rand):
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA}}
    for seed in range(3):
        request = {"messages": [{"role": "user", "content": "weather?"}], "temperature": 1.0,
                   "seed": seed, "max_tokens": 60, "response_format": fmt}
        out = run(rand.chat(request))
        data = json.loads(out["choices"][0]["message"]["content"])
        assert data["city"] in ("Paris", "Rome") and isinstance(data["sunny"], bool)
        assert set(data) == {"city", "sunny"} and out["choices"][0]["finish_reason"] == "stop"
        streamed, _, _, _ = accumulate(run(collect(rand.chat_stream(request))))
        assert streamed == out["choices"][0]["message"]["content"]
    with pytest.raises(InvalidRequestError) as info:
        rand.chat_stream({"messages": tm.FRANCE, "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strnig"}}}})
    assert info.value.param == "response_format"


@pytest.fixture
def single_slot(random_dir, monkeypatch):
    monkeypatch.setenv("XINFERENCE_BATCH_SIZE", "1")
    get_settings(refresh=True)
    engine = make_engine(random_dir)
    yield engine
    engine.close()
    monkeypatch.undo()
    get_settings(refresh=True)


def test_early_close_stops_generation_and_frees_the_slot(single_slot):
    engine = single_slot
    assert engine.describe()["max_batch_size"] == 1
    long = {"messages": [{"role": "user", "content": "go"}], "max_tokens": 400,
            "temperature": 1.0, "seed": 5, "logit_bias": no_eos(engine)}

    async def scenario():
        stream = engine.chat_stream(long)
        got = [await stream.__anext__() for _ in range(4)]
        await stream.aclose()
        deadline = time.monotonic() + 2
        while engine.describe()["active"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # a decoding step already running when the client left may still finish; none after it
        steps = engine.describe()["steps"]
        await asyncio.sleep(0.1)
        assert engine.describe()["steps"] <= steps + 1, "generation went on after the client left"
        steps = engine.describe()["steps"]
        await asyncio.sleep(0.2)
        assert engine.describe()["steps"] == steps, "generation went on after the client left"
        started = time.monotonic()
        second = await engine.chat({**long, "max_tokens": 5})
        return got, second, time.monotonic() - started

    got, second, waited = run(scenario())
    assert len(got) == 4 and engine.describe()["active"] == 0
    assert second["usage"]["completion_tokens"] == 5 and waited < 5


def test_abort_by_request_id(rand):
    async def scenario():
        stream = rand.chat_stream({"messages": [{"role": "user", "content": "go"}],
                                   "max_tokens": 400, "temperature": 1.0, "seed": 5,
                                   "logit_bias": no_eos(rand),
                                   "request_id": "r-1"})
        await stream.__anext__()
        await stream.__anext__()
        assert await rand.abort("r-1") is True
        with pytest.raises(RequestAbortedError):
            async for _ in stream:
                pass
        return await rand.abort("r-1"), await rand.abort("unknown")

    assert run(scenario()) == (False, False)


def test_concurrent_streams_beat_one_at_a_time(rand):
    prompts = [[{"role": "user", "content": f"story {i}"}] for i in range(16)]

    async def stream_one(messages):
        request = {"messages": messages, "max_tokens": 32, "temperature": 0.7, "seed": 1,
                   "logit_bias": no_eos(rand), "stream": True,
                   "stream_options": {"include_usage": True}}
        chunks = [c async for c in rand.chat_stream(request)]
        return chunks[-1]["usage"]["completion_tokens"]

    async def sequential():
        return [await stream_one(m) for m in prompts]

    async def concurrent():
        return await asyncio.gather(*[stream_one(m) for m in prompts])

    run(stream_one(prompts[0]))
    started = time.perf_counter()
    one_by_one = sum(run(sequential()))
    seq_rate = one_by_one / (time.perf_counter() - started)
    started = time.perf_counter()
    together = sum(run(concurrent()))
    conc_rate = together / (time.perf_counter() - started)
    print(f"\n16 streams x 32 tokens: one at a time {seq_rate:.0f} tok/s, "
          f"concurrent {conc_rate:.0f} tok/s")
    assert one_by_one == together == 16 * 32
    assert conc_rate > 1.5 * seq_rate


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    from xinference.model.registry import ModelRegistry

    family = ModelRegistry().get("LLM", "smollm2-135m-instruct").to_dict()
    engine = make_engine(smollm2_gguf, fmt="ggufv2", family=family)
    yield engine
    engine.close()


def test_smollm2_gguf_answers_paris(smollm2):
    import torch

    assert torch.get_num_threads() == 1 and smollm2.describe()["n_threads"] == 1
    assert smollm2.context_length == 8192 and os.path.isfile(smollm2.config.model_path)
    request = {"messages": [{"role": "user", "content": "What is the capital of France?"}],
               "temperature": 0, "max_tokens": 24}
    out = run(smollm2.chat(request))
    content = out["choices"][0]["message"]["content"]
    assert "Paris" in content and "<|im_end|>" not in content
    assert "reasoning_content" not in out["choices"][0]["message"]
    streamed, _, _, finish = accumulate(run(collect(smollm2.chat_stream(request))))
    assert streamed == content and finish == out["choices"][0]["finish_reason"]


def test_smollm2_template_rendering_matches_transformers(smollm2):
    from xinference.model.llm.chat_template import render_chat_template

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Name a colour."}]
    ours = render_chat_template(smollm2.chat_template, messages, None, True,
                                {"bos_token": smollm2.tokenizer.bos_token,
                                 "eos_token": smollm2.tokenizer.eos_token})
    theirs = smollm2.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                   tokenize=False)
    assert ours == theirs and ours.endswith("<|im_start|>assistant\n")


def test_stop_token_ids_end_generation(trained):
    base = {"messages": tm.FRANCE, "temperature": 0,
            "chat_template_kwargs": {"enable_thinking": False}}
    paris = trained.tokenizer.convert_tokens_to_ids(trained.tokenizer.tokenize(" Paris"))[0]
    out = run(trained.chat({**base, "stop_token_ids": [paris]}))
    assert out["choices"][0]["message"]["content"] == "The capital of France is"
    assert out["choices"][0]["finish_reason"] == "stop"


def test_smollm2_json_schema(smollm2):
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    request = {"messages": [{"role": "user",
                             "content": "Give me a person as JSON with name and age."}],
               "temperature": 0, "max_tokens": 40,
               "response_format": {"type": "json_schema",
                                   "json_schema": {"name": "p", "schema": schema}}}
    out = run(smollm2.chat(request))
    data = json.loads(out["choices"][0]["message"]["content"])
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    assert out["choices"][0]["finish_reason"] == "stop"


def test_a_failing_first_token_fails_its_request_instead_of_hanging(rand, monkeypatch):
    def broken(ids):
        raise RuntimeError("detokenizer broke")

    monkeypatch.setattr(rand, "_decode", broken)
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with pytest.raises(XinferenceError, match="detokenizer broke"):
        run(asyncio.wait_for(rand.chat(request), 60))
    monkeypatch.undo()
    assert run(rand.chat(request))["choices"][0]["finish_reason"] in ("stop", "length")
