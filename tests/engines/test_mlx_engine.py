"""The MLX engine for real (mlx[cpu] on Linux): tiny Qwen2 folders built here, loaded by mlx_lm."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path

import pytest
from helpers import collect, run

pytest.importorskip("mlx_lm", reason="mlx-lm is an optional extra: "
                    "pip install 'xinference[mlx]' (mlx-lm[cpu] on Linux)")

from xinference.errors import InvalidRequestError, RequestAbortedError  # noqa: E402
from xinference.model.engines import registry  # noqa: E402
from xinference.model.engines.base import EngineConfig  # noqa: E402
from xinference.model.engines.mlx_engine import MLXEngine, config_fixes  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "tiny_models", Path(__file__).parents[1] / "llm" / "tiny_models.py")
tm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tm)

NO_THINKING = {"enable_thinking": False}
WEATHER_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "sunny"],
                  "properties": {"city": {"enum": ["Paris", "Rome"]}, "sunny": {"type": "boolean"}}}


def make_engine(path, **config) -> MLXEngine:
    cfg = EngineConfig(model_uid="m1", model_type="LLM", model_name="tiny", engine="MLX",
                       model_format="mlx", model_path=str(path), **config)
    engine = MLXEngine(cfg)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlx-trained")
    facts = tm.build_tiny_qwen2(str(path), train=True)
    assert facts["loss"] < 0.01, facts
    engine = make_engine(path)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlx-random")
    tm.build_tiny_qwen2(str(path), train=False)
    return path


@pytest.fixture(scope="module")
def rand(random_dir):
    engine = make_engine(random_dir)
    yield engine
    engine.close()


def no_eos(engine):
    return {str(i): -100 for i in engine.stop_ids}


def content_of(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_registry_matches_mlx_here_and_the_model_loads_with_its_rope(random_dir):
    assert registry.check_engine(registry.find_engine("LLM", "MLX"), "mlx", "4bit", None) is None
    assert config_fixes(str(random_dir)) == {"rope_theta": 10000.0}


def test_chat_answers_with_reasoning_and_without(trained):
    out = run(trained.chat({"messages": tm.FRANCE, "temperature": 0}))
    message = out["choices"][0]["message"]
    assert message["content"] == tm.ANSWER_FRANCE and out["choices"][0]["finish_reason"] == "stop"
    assert message["reasoning_content"] == tm.THOUGHT_FRANCE
    out = run(trained.chat({"messages": tm.FRANCE, "temperature": 0,
                            "chat_template_kwargs": NO_THINKING}))
    assert out["choices"][0]["message"]["content"] == tm.ANSWER_FRANCE
    assert out["choices"][0]["message"]["reasoning_content"] is None


def test_tool_calls_through_mlx(trained):
    out = run(trained.chat({"messages": tm.WEATHER, "tools": [tm.WEATHER_TOOL], "temperature": 0}))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["reasoning_content"] == tm.THOUGHT_WEATHER
    call = choice["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}


def test_streaming_comes_token_by_token_with_usage(trained):
    request = {"messages": tm.FRANCE, "temperature": 0, "chat_template_kwargs": NO_THINKING,
               "stream_options": {"include_usage": True}}
    chunks = run(collect(trained.chat_stream(request)))
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:]
              if c["choices"] and c["choices"][0]["delta"].get("content")]
    answer_tokens = trained.tokenizer.encode(tm.ANSWER_FRANCE, add_special_tokens=False)
    assert "".join(pieces) == tm.ANSWER_FRANCE and len(pieces) == len(answer_tokens)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == len(answer_tokens) + 1  # the answer, then <|im_end|>
    assert usage["prompt_tokens"] == len(trained._chat_job(request).prompts[0])


def test_stop_strings_and_max_tokens(trained):
    base = {"messages": tm.FRANCE, "temperature": 0, "chat_template_kwargs": NO_THINKING}
    out = run(trained.chat({**base, "stop": ["France is"]}))
    assert out["choices"][0]["message"]["content"] == "The capital of "
    assert out["choices"][0]["finish_reason"] == "stop"
    streamed = content_of(run(collect(trained.chat_stream({**base, "stop": ["is Par"]}))))
    assert streamed == "The capital of France "
    out = run(trained.chat({**base, "max_tokens": 3}))
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 3
    ids = trained.tokenizer.encode(tm.ANSWER_FRANCE, add_special_tokens=False)
    assert out["choices"][0]["message"]["content"] == trained.tokenizer.decode(ids[:3])


def test_logprobs_align_with_content(trained):
    request = {"messages": tm.FRANCE, "temperature": 0, "logprobs": True, "top_logprobs": 2,
               "chat_template_kwargs": NO_THINKING}
    entries = run(trained.chat(request))["choices"][0]["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == tm.ANSWER_FRANCE
    for e in entries:
        assert len(e["top_logprobs"]) == 2 and e["logprob"] <= 0
        assert e["top_logprobs"][0]["logprob"] == pytest.approx(e["logprob"])
        assert e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][1]["logprob"]


def test_same_seed_same_output(rand):
    def ask(seed, **extra):
        return {"messages": [{"role": "user", "content": "hello"}], "temperature": 1.0,
                "seed": seed, "max_tokens": 16, "logit_bias": no_eos(rand), **extra}

    first = run(rand.chat(ask(7)))["choices"][0]["message"]["content"]
    assert run(rand.chat(ask(7)))["choices"][0]["message"]["content"] == first
    assert run(rand.chat(ask(8)))["choices"][0]["message"]["content"] != first
    n2 = run(rand.chat(ask(7, n=2)))
    assert [c["message"]["content"] == first for c in n2["choices"]] == [True, False]
    assert n2["usage"]["completion_tokens"] == 32


def test_completions_whole_streamed_and_echo(rand):
    request = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0,
               "logit_bias": no_eos(rand), "logprobs": 1}
    whole = run(rand.complete(request))
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "length" and whole["usage"]["completion_tokens"] == 8
    assert "".join(choice["logprobs"]["tokens"]) == choice["text"]
    chunks = run(collect(rand.complete_stream(request)))
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    echoed = run(rand.complete({**request, "echo": True}))["choices"][0]["text"]
    assert echoed == "Once upon a time" + choice["text"]


def test_early_close_stops_generation(rand):
    async def scenario():
        stream = rand.chat_stream({"messages": [{"role": "user", "content": "go"}],
                                   "max_tokens": 3000, "temperature": 1.0, "seed": 1,
                                   "logit_bias": no_eos(rand)})
        for _ in range(4):
            await stream.__anext__()
        await stream.aclose()

    before = rand.tokens_generated
    run(scenario())
    deadline = time.monotonic() + 5
    while rand.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rand.active == 0
    spent = rand.tokens_generated - before
    time.sleep(0.3)
    assert rand.tokens_generated - before == spent < 50
    out = run(rand.chat({"messages": tm.FRANCE, "max_tokens": 2, "logit_bias": no_eos(rand)}))
    assert out["usage"]["completion_tokens"] == 2


def test_abort_by_request_id(rand):
    async def scenario():
        stream = rand.chat_stream({"messages": [{"role": "user", "content": "go"}],
                                   "max_tokens": 3000, "logit_bias": no_eos(rand),
                                   "request_id": "mlx-1"})
        for _ in range(3):
            await stream.__anext__()
        assert await rand.abort("mlx-1") is True
        assert await rand.abort("mlx-unknown") is False
        with pytest.raises(RequestAbortedError, match="mlx-1"):
            async for _ in stream:
                pass

    before = rand.tokens_generated
    run(scenario())
    deadline = time.monotonic() + 5
    while rand.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rand.active == 0 and rand.tokens_generated - before < 50


def test_json_schema_output_parses_and_validates(rand):
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA}}
    for seed in range(2):
        out = run(rand.chat({"messages": [{"role": "user", "content": "weather?"}],
                             "temperature": 1.0, "seed": seed, "max_tokens": 60,
                             "response_format": fmt}))
        data = json.loads(out["choices"][0]["message"]["content"])
        assert data["city"] in ("Paris", "Rome") and isinstance(data["sunny"], bool)
        assert set(data) == {"city", "sunny"} and out["choices"][0]["finish_reason"] == "stop"


def test_launch_options_are_typed_and_unknown_ones_refused(random_dir):
    engine = make_engine(random_dir, options={"max_kv_size": "64", "prefill-step-size": "8"})
    try:
        assert engine._step_options == {"max_kv_size": 64, "prefill_step_size": 8}
        out = run(engine.complete({"prompt": "Once upon a time", "max_tokens": 4,
                                   "logit_bias": no_eos(engine)}))
        assert out["usage"]["completion_tokens"] == 4
    finally:
        engine.close()
    with pytest.raises(InvalidRequestError, match="Unknown MLX option 'n_ctx'") as info:
        make_engine(random_dir, options={"n_ctx": "4096"})
    assert info.value.param == "n_ctx"


def test_stopping_the_engine_fails_running_streams_with_a_domain_error(random_dir):
    from xinference.errors import ModelUnavailableError

    engine = make_engine(random_dir)

    async def scenario():
        stream = engine.chat_stream({"messages": [{"role": "user", "content": "go"}],
                                     "max_tokens": 3000, "logit_bias": no_eos(engine)})
        for _ in range(3):
            await stream.__anext__()
        await asyncio.to_thread(engine.close)
        with pytest.raises(ModelUnavailableError, match="stopped while generating"):
            async for _ in stream:
                pass

    run(scenario())
    assert engine.active == 0
    with pytest.raises(ModelUnavailableError):
        engine.chat_stream({"messages": tm.FRANCE})
