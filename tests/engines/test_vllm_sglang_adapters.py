"""vLLM and SGLang adapters: matching, launch-argument mapping and output translation.

Neither engine can be installed or run here (CUDA only), so stand-ins for the
``vllm`` and ``sglang`` modules are injected through ``sys.modules``: they record
what the adapters pass and replay outputs shaped like the real engines'. The
tokenizer is a real one (the tiny ChatML tokenizer of tests/llm/tiny_models.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Union

import pytest
from helpers import collect, run

from xinference.errors import EngineUnavailableError, InvalidRequestError, RequestAbortedError
from xinference.model.engines import registry
from xinference.model.engines.base import EngineConfig

_spec = importlib.util.spec_from_file_location(
    "tiny_models", Path(__file__).parents[1] / "llm" / "tiny_models.py")
tm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tm)

FAMILY = {"context_length": 256, "stop": ["<|im_end|>", "###"]}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def tokenizer():
    return tm.build_tokenizer()


def config(engine: str, fmt: str = "pytorch", **extra) -> EngineConfig:
    values = dict(model_uid="m1", model_type="LLM", model_name="tiny", engine=engine,
                  model_format=fmt, model_path="/models/tiny", family=dict(FAMILY),
                  context_length=256)
    values.update(extra)
    return EngineConfig(**values)


# ----------------------------------------------------------------------------- the stand-ins
@dataclasses.dataclass
class FakeEngineArgs:  # a few of vllm.AsyncEngineArgs's fields, annotated as vLLM does
    model: str = ""
    tokenizer: Optional[str] = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: Optional[int] = None
    quantization: Optional[str] = None
    enforce_eager: bool = False
    trust_remote_code: bool = False
    served_model_name: Optional[Union[str, List[str]]] = None
    disable_log_stats: bool = False
    limit_mm_per_prompt: Dict[str, int] = dataclasses.field(default_factory=dict)


RequestOutputKind = enum.Enum("RequestOutputKind", "CUMULATIVE DELTA FINAL_ONLY")
StructuredOutputsParams = dataclasses.make_dataclass("StructuredOutputsParams",
                                                     [("json", Any, None)])
FakeSamplingParams = lambda **kwargs: SimpleNamespace(kwargs=kwargs)  # noqa: E731


def out(index, text, ids, finish=None, logprobs=None):
    """One vLLM ``CompletionOutput`` in DELTA mode."""
    return SimpleNamespace(index=index, text=text, token_ids=ids, finish_reason=finish,
                           logprobs=logprobs)


class FakeVLLMEngine:
    script: List[Any] = []

    def __init__(self, args, tokenizer):
        self.args, self.tokenizer = args, tokenizer
        self.model_config = SimpleNamespace(max_model_len=256)
        self.calls, self.aborted, self.closed = [], [], []

    async def generate(self, prompt, params, request_id):
        self.calls.append((prompt, params, request_id))
        try:
            for step in self.script:
                if isinstance(step, BaseException):
                    raise step
                if step == "forever":
                    while True:
                        await asyncio.sleep(0.01)
                        yield SimpleNamespace(outputs=[out(0, "x", [5])])
                yield SimpleNamespace(outputs=step)
        finally:
            self.closed.append(request_id)

    async def abort(self, request_id):
        self.aborted.append(request_id)


@pytest.fixture
def vllm(monkeypatch, tokenizer):
    module = types.ModuleType("vllm")
    sp_module = types.ModuleType("vllm.sampling_params")
    sp_module.RequestOutputKind = RequestOutputKind
    sp_module.StructuredOutputsParams = StructuredOutputsParams
    sp_module.SamplingParams = module.SamplingParams = FakeSamplingParams
    module.AsyncEngineArgs = FakeEngineArgs
    module.AsyncLLMEngine = SimpleNamespace(
        from_engine_args=lambda args: FakeVLLMEngine(args, tokenizer))
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp_module)
    monkeypatch.setattr(registry, "has_cuda_device", lambda: True)
    monkeypatch.setattr(FakeVLLMEngine, "script", [])
    return module


def make(name, **extra):
    """A loaded engine (over the stand-in modules) of class ``name``."""
    if name == "vLLM":
        from xinference.model.engines.vllm_engine import VLLMEngine as cls
    else:
        from xinference.model.engines.sglang_engine import SGLangEngine as cls
    engine = cls(config(name, **extra))
    engine.load()
    return engine


# ----------------------------------------------------------------------------- matching
def test_registry_refuses_vllm_and_sglang_here_with_the_reason(monkeypatch):
    vllm_entry = registry.find_engine("LLM", "vllm")
    sglang_entry = registry.find_engine("LLM", "SGLang")
    monkeypatch.setattr(registry, "has_cuda_device", lambda: False)
    for entry in (vllm_entry, sglang_entry):
        assert registry.check_engine(entry, "pytorch", None, "qwen2") == \
            "needs a CUDA GPU and none is visible on this machine"
    with pytest.raises(EngineUnavailableError, match="Engine vLLM cannot run this model: needs a"):
        registry.choose_engine("LLM", "pytorch", None, "llama", "vllm")
    monkeypatch.setattr(registry, "has_cuda_device", lambda: True)
    assert "allowed: Int4" in registry.check_engine(vllm_entry, "awq", "Int8", "llama")
    assert "allowed: Int3, Int4, Int8" in registry.check_engine(vllm_entry, "gptq", "Int2", "llama")
    assert "allowed: Int4, Int8" in registry.check_engine(sglang_entry, "gptq", "Int3", "llama")
    assert registry.check_engine(vllm_entry, "pytorch", "8-bit", "llama").startswith(
        "does not run pytorch with quantization '8-bit'")
    assert registry.check_engine(vllm_entry, "pytorch", None, "tiny-unknown") == \
        "does not support the 'tiny-unknown' model family"
    assert registry.check_engine(vllm_entry, "ggufv2", "Q4_0", "llama").startswith(
        "does not run the 'ggufv2' format")
    for family in ("llama", "Qwen2", "qwen2.5-instruct", "deepseek-r1-distill-qwen", "mistral"):
        reason = registry.check_engine(vllm_entry, "pytorch", "none", family)
        assert reason == ("the Python package for 'vllm' is not installed; "
                          "install it with: pip install 'xinference[vllm]'"), (family, reason)
    monkeypatch.setattr(registry.sys, "platform", "darwin")
    assert registry.check_engine(vllm_entry, "pytorch", None, "llama") == \
        "runs only on linux (this is darwin)"
    mlx = registry.find_engine("LLM", "MLX")
    monkeypatch.setattr(registry.sys, "platform", "win32")
    assert registry.check_engine(mlx, "mlx", "4bit", None) == \
        "runs only on darwin, linux (this is win32)"


# ----------------------------------------------------------------------------- vLLM
@pytest.mark.parametrize("name, module", [("vLLM", "vllm"), ("SGLang", "sglang")])
def test_load_says_what_is_missing(request, monkeypatch, name, module):
    request.getfixturevalue(module)
    monkeypatch.setattr(registry, "has_cuda_device", lambda: False)
    with pytest.raises(EngineUnavailableError, match=f"{name} needs a CUDA GPU and none is"):
        make(name)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(EngineUnavailableError, match=rf"{name} is not installed .*\[{module}\]'"):
        make(name)


def test_vllm_engine_args_from_defaults_and_cli_strings(vllm):
    engine = make("vLLM", fmt="awq", gpu_idx=[0, 1], options={
        "gpu_memory_utilization": "0.5", "max-model-len": "128", "enforce_eager": "true",
        "limit_mm_per_prompt": '{"image": 2}', "trust_remote_code": "0"})
    args = engine.engine.args
    assert args.model == "/models/tiny" and args.quantization == "awq"
    assert args.tensor_parallel_size == 2 and args.served_model_name == "m1"
    assert args.gpu_memory_utilization == 0.5 and args.max_model_len == 128
    assert args.enforce_eager is True and args.trust_remote_code is False
    assert args.limit_mm_per_prompt == {"image": 2}
    assert make("vLLM", options={"tensor_parallel_size": 4}).engine.args.tensor_parallel_size == 4


@pytest.mark.parametrize("options, message", [
    ({"n_ctx": "4096"}, "Unknown vLLM option 'n_ctx': it is not a field of vllm.AsyncEngineArgs"),
    ({"gpu_memory_utilization": "lots"}, "Bad value for vLLM option 'gpu_memory_utilization'"),
    ({"enforce_eager": "maybe"}, "Bad value for vLLM option 'enforce_eager'"),
    ({"model": "/elsewhere"}, "vLLM option 'model' is set by xinference"),
])
def test_vllm_bad_options_name_the_option(vllm, options, message):
    with pytest.raises(InvalidRequestError, match=message) as info:
        make("vLLM", options=options)
    assert info.value.param == next(iter(options))


def test_vllm_request_maps_to_sampling_params(vllm, tokenizer):
    FakeVLLMEngine.script = [[out(0, "{\"a\": 1}", [7, 8, 9], "stop")]]
    engine = make("vLLM")
    run(engine.chat({"messages": HI, "temperature": 0.3, "top_p": 0.9, "seed": 7,
                     "stop": "END", "max_completion_tokens": 20, "presence_penalty": 0.5,
                     "frequency_penalty": -0.5, "logit_bias": {"12": 3}, "top_k": 4,
                     "response_format": {"type": "json_schema",
                                         "json_schema": {"name": "x", "schema": SCHEMA}}}))
    prompt, params, request_id = engine.engine.calls[0]
    rendered = tokenizer.apply_chat_template(HI, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert prompt == {"prompt_token_ids": ids}
    kw = params.kwargs
    assert kw["output_kind"] is RequestOutputKind.DELTA
    assert kw["structured_outputs"] == StructuredOutputsParams(json=SCHEMA)
    assert (kw["temperature"], kw["top_p"], kw["top_k"], kw["seed"], kw["n"]) == (0.3, 0.9, 4, 7, 1)
    assert (kw["presence_penalty"], kw["frequency_penalty"]) == (0.5, -0.5)
    assert kw["max_tokens"] == 20 and kw["logit_bias"] == {12: 3.0}
    assert kw["stop"] == ["END", "###"]
    assert kw["stop_token_ids"] == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert "logprobs" not in kw and request_id
    run(engine.chat({"messages": HI, "max_tokens": 5, "logprobs": True, "top_logprobs": 2}))
    kw = engine.engine.calls[1][1].kwargs
    assert kw["logprobs"] == 2 and kw["max_tokens"] == 5 and kw["top_k"] == -1
    assert "structured_outputs" not in kw
    run(engine.chat({"messages": HI}))
    assert engine.engine.calls[2][1].kwargs["max_tokens"] == 256 - len(prompt["prompt_token_ids"])
    with pytest.raises(InvalidRequestError) as info:  # refused before anything reaches vLLM
        engine.chat_stream({"messages": HI, "temperature": 5})
    assert info.value.param == "temperature" and len(engine.engine.calls) == 3
    with pytest.raises(InvalidRequestError, match="response_format"):
        engine.chat_stream({"messages": HI, "response_format": {"type": "xml"}})


def lp(logprob, text, rank=1):
    return SimpleNamespace(logprob=logprob, rank=rank, decoded_token=text)


def test_vllm_outputs_become_openai_choices_usage_and_logprobs(vllm):
    FakeVLLMEngine.script = [
        [out(0, "Hel", [11], None, [{11: lp(-0.1, "Hel"), 12: lp(-2.5, "Ha", 2)}])],
        [out(1, "Hi", [21], None, [{21: lp(-0.3, "Hi")}])],
        [out(0, "lo", [13], "stop", [{13: lp(-0.2, "lo"), 14: lp(-1.0, "la", 2)}])],
        [out(1, " there", [22, 23], "length", [{22: lp(-0.4, " th")}, {23: lp(-0.5, "ere")}])],
    ]
    engine = make("vLLM")
    req = {"messages": HI, "n": 2, "logprobs": True,
           "top_logprobs": 1}
    resp = run(engine.chat(req))
    first, second = resp["choices"]
    assert first["message"]["content"] == "Hello" and first["finish_reason"] == "stop"
    assert second["message"]["content"] == "Hi there" and second["finish_reason"] == "length"
    tokens = first["logprobs"]["content"]
    assert [(t["token"], t["logprob"]) for t in tokens] == [("Hel", -0.1), ("lo", -0.2)]
    assert tokens[0]["top_logprobs"] == [{"token": "Hel", "logprob": -0.1, "bytes": list(b"Hel")}]
    prompt_len = len(engine.engine.calls[0][0]["prompt_token_ids"])
    assert resp["usage"] == {"prompt_tokens": prompt_len, "completion_tokens": 5,
                             "total_tokens": prompt_len + 5}
    chunks = run(collect(engine.chat_stream(dict(req, stream_options={"include_usage": True}))))
    role = {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [role, role]
    text = {0: "", 1: ""}
    finishes = {}
    for c in chunks[2:-1]:
        choice = c["choices"][0]
        text[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert text == {0: "Hello", 1: "Hi there"} and finishes == {0: "stop", 1: "length"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


def test_vllm_text_is_parsed_for_reasoning_and_tool_calls(vllm):
    pieces = ["<think>\nI should", " call it.\n</think>\n\n<tool_call>\n{\"name\": \"get_",
              "weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"]
    FakeVLLMEngine.script = [[out(0, p, [1], "stop" if i == 2 else None)]
                             for i, p in enumerate(pieces)]
    engine = make("vLLM")
    resp = run(engine.chat({"messages": tm.WEATHER, "tools": [tm.WEATHER_TOOL]}))
    choice = resp["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["reasoning_content"] == "I should call it."
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}
    assert choice["message"]["content"] is None


def test_vllm_completions_run_each_prompt_and_echo(vllm):
    FakeVLLMEngine.script = [[out(0, " world", [3, 4], "length")]]
    engine = make("vLLM")
    resp = run(engine.complete({"prompt": ["Hello", "Bye"], "max_tokens": 2, "echo": True}))
    assert [c["text"] for c in resp["choices"]] == ["Hello world", "Bye world"]
    assert [c["finish_reason"] for c in resp["choices"]] == ["length", "length"]
    ids = [call[2] for call in engine.engine.calls]
    assert len(set(ids)) == 2 and resp["usage"]["completion_tokens"] == 4


def test_vllm_closing_the_stream_aborts_the_request(vllm):
    FakeVLLMEngine.script = ["forever"]
    engine = make("vLLM")

    async def scenario():
        stream = engine.chat_stream({"messages": HI})
        got = [await stream.__anext__() for _ in range(3)]
        await stream.aclose()
        return got

    chunks = run(scenario())
    assert chunks[2]["choices"][0]["delta"] == {"content": "x"}
    request_id = engine.engine.calls[0][2]
    assert engine.engine.closed == [request_id] and engine.engine.aborted == [request_id]
    assert engine.describe()["running_requests"] == 0


def test_vllm_abort_by_request_id(vllm):
    FakeVLLMEngine.script = ["forever"]
    engine = make("vLLM")

    async def scenario():
        task = asyncio.ensure_future(engine.chat({"messages": HI, "request_id": "r-1"}))
        await asyncio.sleep(0.05)
        assert await engine.abort("r-1") is True
        assert await engine.abort("r-unknown") is False
        with pytest.raises(RequestAbortedError, match="r-1"):
            await task

    run(scenario())
    assert engine.engine.aborted and engine.engine.aborted[0].startswith("r-1-")


def test_vllm_errors_and_aborts_from_the_engine(vllm):
    engine = make("vLLM")
    FakeVLLMEngine.script = [ValueError("prompt too long")]
    with pytest.raises(InvalidRequestError, match="vLLM refused the request: prompt too long"):
        run(engine.chat({"messages": HI}))
    FakeVLLMEngine.script = [[out(0, "a", [1], "abort")]]
    with pytest.raises(RequestAbortedError):
        run(engine.chat({"messages": HI}))


# ----------------------------------------------------------------------------- SGLang
@dataclasses.dataclass
class FakeServerArgs:
    model_path: str = ""
    tokenizer_path: Optional[str] = None
    tp_size: int = 1
    mem_fraction_static: Optional[float] = None
    context_length: Optional[int] = None
    quantization: Optional[str] = None
    served_model_name: Optional[str] = None
    log_level: str = "info"
    trust_remote_code: bool = False
    incremental_streaming_output: bool = False


class FakeSGLangEngine:
    script: List[Dict[str, Any]] = []

    def __init__(self, tokenizer, **kwargs):
        self.kwargs = kwargs
        self.server_args = FakeServerArgs(**kwargs)
        self.calls, self.aborted = [], []
        self.tokenizer_manager = SimpleNamespace(tokenizer=tokenizer, context_len=256,
                                                 abort_request=self.aborted.append)

    async def async_generate(self, **kwargs):
        self.calls.append(kwargs)

        async def chunks():
            for chunk in self.script:
                if chunk == "forever":
                    while True:
                        await asyncio.sleep(0.01)
                        yield {"text": "", "meta_info": {"finish_reason": None}}
                yield chunk
        return chunks()

    def shutdown(self):
        self.calls = None


@pytest.fixture
def sglang(monkeypatch, tokenizer):
    module = types.ModuleType("sglang")
    module.Engine = lambda **kwargs: FakeSGLangEngine(tokenizer, **kwargs)
    srt = types.ModuleType("sglang.srt")
    server_args = types.ModuleType("sglang.srt.server_args")
    server_args.ServerArgs = FakeServerArgs
    for mod in (module, srt, server_args):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(registry, "has_cuda_device", lambda: True)
    monkeypatch.setattr(FakeSGLangEngine, "script", [])
    return module


def chunk(text, finish=None, tokens=0, index=0, lps=None, tops=None):
    meta = {"finish_reason": finish, "completion_tokens": tokens}
    if lps is not None:
        meta.update(output_token_logprobs=lps, output_top_logprobs=tops or [])
    return {"text": text, "meta_info": meta, "index": index}


def test_sglang_server_args_and_bad_options(sglang):
    engine = make("SGLang", fmt="gptq", n_gpu=2, options={"mem-fraction-static": "0.7",
                                                         "context_length": "128"})
    kw = engine.engine.kwargs
    assert kw == {"model_path": "/models/tiny", "tp_size": 2, "served_model_name": "m1",
                  "log_level": "error", "context_length": 128, "quantization": "gptq",
                  "mem_fraction_static": 0.7}
    with pytest.raises(InvalidRequestError, match="Unknown SGLang option 'gpu_memory_utilization'"):
        make("SGLang", options={"gpu_memory_utilization": "0.5"})
    with pytest.raises(InvalidRequestError, match="Bad value for SGLang option 'tp_size'"):
        make("SGLang", options={"tp_size": "two"})


def test_sglang_request_maps_to_sampling_dict(sglang, tokenizer):
    FakeSGLangEngine.script = [chunk("{\"a\": 2}", {"type": "stop"}, 4)]
    engine = make("SGLang")
    run(engine.chat({"messages": HI, "temperature": 0, "seed": 3,
                     "stop": ["END"], "max_tokens": 9, "logit_bias": {"5": -100},
                     "logprobs": True, "top_logprobs": 3,
                     "response_format": {"type": "json_schema",
                                         "json_schema": {"name": "x", "schema": SCHEMA}}}))
    call = engine.engine.calls[0]
    sp = call["sampling_params"]
    assert (sp["max_new_tokens"], sp["temperature"], sp["top_k"], sp["n"]) == (9, 0.0, -1, 1)
    assert sp["stop"] == ["END", "###"] and sp["sampling_seed"] == 3
    assert sp["stop_token_ids"] == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert sp["logit_bias"] == {"5": -100.0} and json.loads(sp["json_schema"]) == SCHEMA
    assert call["stream"] is True and call["return_logprob"] is True
    assert call["top_logprobs_num"] == 3 and call["rid"]
    assert isinstance(call["input_ids"], list) and call["input_ids"]


def test_sglang_cumulative_stream_becomes_deltas_and_logprobs(sglang):
    FakeSGLangEngine.script = [
        chunk("Hel", None, 1, 0, [(-0.1, 11, "Hel")], [[(-0.1, 11, "Hel"), (-2.0, 12, "Ha")]]),
        chunk("Hi", None, 1, 1, [(-0.3, 21, None)], [[(-0.3, 21, None)]]),
        chunk("Hello", {"type": "stop", "matched": 2}, 2, 0,
              [(-0.1, 11, "Hel"), (-0.2, 13, "lo")],
              [[(-0.1, 11, "Hel")], [(-0.2, 13, "lo"), (-1.0, 14, "la")]]),
        chunk("Hi you", {"type": "length"}, 3, 1, [(-0.3, 21, None), (-0.4, 22, None)],
              [[(-0.3, 21, None)], [(-0.4, 22, None)]]),
    ]
    engine = make("SGLang")
    resp = run(engine.chat({"messages": HI, "n": 2,
                            "logprobs": True, "top_logprobs": 2}))
    first, second = resp["choices"]
    assert (first["message"]["content"], first["finish_reason"]) == ("Hello", "stop")
    assert (second["message"]["content"], second["finish_reason"]) == ("Hi you", "length")
    assert [t["token"] for t in first["logprobs"]["content"]] == ["Hel", "lo"]
    assert [a["token"] for a in first["logprobs"]["content"][1]["top_logprobs"]] == ["lo", "la"]
    assert resp["usage"]["completion_tokens"] == 5
    assert "rid" not in engine.engine.calls[0]
    chunks = run(collect(engine.complete_stream({"prompt": "x", "n": 2})))
    texts = [c["choices"][0]["text"] for c in chunks]
    assert texts == ["Hel", "Hi", "lo", " you"]


def test_sglang_incremental_stream_and_engine_refusals(sglang):
    engine = make("SGLang", options={"incremental_streaming_output": "true"})
    FakeSGLangEngine.script = [chunk("Hel"), chunk("lo", {"type": "stop"}, 2)]
    assert run(engine.complete({"prompt": "x"}))["choices"][0]["text"] == "Hello"
    FakeSGLangEngine.script = [chunk("", {"type": "abort", "message": "too long",
                                          "status_code": 400})]
    with pytest.raises(InvalidRequestError, match="SGLang refused the request: too long"):
        run(engine.complete({"prompt": "x"}))
    FakeSGLangEngine.script = [chunk("", {"type": "abort", "message": "shutting down"})]
    with pytest.raises(RequestAbortedError, match="shutting down"):
        run(engine.complete({"prompt": "x"}))


def test_sglang_closing_the_stream_aborts_the_request(sglang):
    FakeSGLangEngine.script = [chunk("Hi"), "forever"]
    engine = make("SGLang")

    async def scenario():
        stream = engine.chat_stream({"messages": HI})
        got = [await stream.__anext__() for _ in range(2)]
        await stream.aclose()
        return got

    chunks = run(scenario())
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hi"}
    rid = engine.engine.calls[0]["rid"]
    assert engine.engine.aborted == [rid]
    engine.close()
    assert engine.engine is None
