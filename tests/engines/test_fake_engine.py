"""The fake engine: OpenAI / Xinference shapes, determinism, early close, launch failures."""

import asyncio
import base64
import math
import struct
import subprocess
import sys
import time

import pytest

from xinference.errors import InvalidRequestError, ModelLaunchError, RequestAbortedError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.fake import FakeEngine
from xinference.model.engines.registry import find_engine, load_engine_class

CHAT = {"model": "fake-uid", "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
]}


def make(model_type="LLM", **options):
    engine = FakeEngine(EngineConfig(model_uid="fake-uid", model_type=model_type,
                                     model_name="fake-model", engine="fake", model_format="",
                                     model_path="", options=options))
    engine.load()
    return engine


def run(coro):
    return asyncio.run(coro)


async def drain(stream):
    return [chunk async for chunk in stream]


def test_registered_for_every_type_but_never_auto_selected():
    for model_type in ("LLM", "embedding", "rerank"):
        entry = find_engine(model_type, "fake")
        assert load_engine_class(entry) is FakeEngine
        assert entry.auto_select is False


def test_imports_only_the_standard_library():
    code = ("import sys, xinference.model.engines.fake\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = eval(out.stdout)
    foreign = [name for name in loaded if name != "xinference" and not name.startswith("_")]
    assert foreign == []


def test_chat_echoes_the_last_user_message_deterministically():
    engine = make()
    first, second = run(engine.chat(CHAT)), run(engine.chat(CHAT))
    assert first["object"] == "chat.completion" and first["model"] == "fake-uid"
    assert first["id"].startswith("chatcmpl-") and first["id"] != second["id"]
    choice = first["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: hello there world",
                                 "refusal": None}
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    assert first["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert second["choices"] == first["choices"] and second["usage"] == first["usage"]


def test_chat_stream_goes_word_by_word_in_chunk_shape():
    engine = make()
    chunks = run(drain(engine.chat_stream(dict(CHAT, stream=True,
                                               stream_options={"include_usage": True}))))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {"fake-uid"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert pieces == ["echo: ", "hello ", "there ", "world"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    plain = run(drain(engine.chat_stream(dict(CHAT, stream=True))))
    assert all("usage" not in c for c in plain) and plain[-1]["choices"][0]["finish_reason"]


def test_max_tokens_caps_words_with_finish_reason_length():
    engine = make()
    answer = run(engine.chat(dict(CHAT, max_tokens=2)))
    assert answer["choices"][0]["message"]["content"] == "echo: hello "
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 2
    chunks = run(drain(engine.chat_stream(dict(CHAT, max_completion_tokens=3, stream=True))))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == \
        "echo: hello there "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stop_strings_and_n_choices():
    engine = make()
    answer = run(engine.chat(dict(CHAT, stop=["there"], n=2)))
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    for choice in answer["choices"]:
        assert choice["message"]["content"] == "echo: hello "
        assert choice["finish_reason"] == "stop"


def test_completions_have_text_completion_shapes():
    engine = make()
    answer = run(engine.complete({"model": "fake-uid", "prompt": ["abc def", "xyz"]}))
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    assert [(c["index"], c["text"]) for c in answer["choices"]] == [(0, "echo: abc def"),
                                                                    (1, "echo: xyz")]
    chunks = run(drain(engine.complete_stream({"model": "fake-uid", "prompt": "abc def",
                                               "stream": True, "max_tokens": 2,
                                               "stream_options": {"include_usage": True}})))
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == "echo: abc "
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


def test_closing_a_stream_early_stops_it():
    engine = make(delay_per_token="0.05")
    words = " ".join(f"w{i}" for i in range(200))

    async def scenario():
        stream = engine.chat_stream({"model": "fake-uid", "stream": True,
                                     "messages": [{"role": "user", "content": words}]})
        got = [await stream.__anext__() for _ in range(3)]
        assert engine.active_streams == 1
        started = time.monotonic()
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        return got, time.monotonic() - started

    got, closing = run(scenario())
    assert len(got) == 3 and engine.active_streams == 0 and closing < 1.0


def test_abort_stops_a_running_stream():
    engine = make(delay_per_token=0.02)

    async def scenario():
        stream = engine.chat_stream(dict(CHAT, stream=True, request_id="req-1"))
        await stream.__anext__()
        assert await engine.abort("req-1") is True
        with pytest.raises(RequestAbortedError):
            await drain(stream)
        return await engine.abort("req-1"), await engine.abort("never-seen")

    assert run(scenario()) == (False, False)


def test_delay_per_token_slows_answers():
    engine = make(delay_per_token=0.05)
    started = time.monotonic()
    run(engine.chat(CHAT))
    assert time.monotonic() - started >= 0.2


def test_embeddings_are_deterministic_unit_vectors():
    engine = make("embedding")
    inputs = ["alpha beta", "gamma", "alpha beta"]
    answer = run(engine.embed({"model": "fake-uid", "input": inputs}))
    assert answer["object"] == "list" and answer["model"] == "fake-uid"
    assert answer["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    vectors = [item["embedding"] for item in answer["data"]]
    assert [item["index"] for item in answer["data"]] == [0, 1, 2]
    assert {item["object"] for item in answer["data"]} == {"embedding"}
    assert all(len(v) == 8 and math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    other = make("embedding", dimensions="4")
    single = run(other.embed({"model": "fake-uid", "input": "alpha beta"}))["data"][0]["embedding"]
    assert len(single) == 4 and single == run(other.embed({"input": ["alpha beta"]}))["data"][0][
        "embedding"]
    wide = run(engine.embed({"input": "gamma", "dimensions": 16}))["data"][0]["embedding"]
    assert len(wide) == 16
    packed = run(engine.embed({"input": "gamma", "encoding_format": "base64"}))["data"][0]
    floats = struct.unpack("<8f", base64.b64decode(packed["embedding"]))
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(floats, vectors[1]))


def test_rerank_sorts_by_word_overlap_in_xinference_shape():
    engine = make("rerank")
    docs = ["a dog in the park", "the big cat sleeps", "a cat", "big cat"]
    answer = run(engine.rerank({"model": "fake-uid", "query": "big cat", "documents": docs,
                                "top_n": 3, "return_documents": True, "return_len": True}))
    assert set(answer) == {"id", "results", "meta"}
    results = answer["results"]
    assert [r["index"] for r in results] == [3, 1, 2]  # Jaccard: 1, 2/4, 1/3
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    assert results[0]["document"] == {"text": "big cat"}
    assert answer["meta"]["tokens"]["input_tokens"] == 15
    bare = run(engine.rerank({"query": "big cat", "documents": docs}))
    assert len(bare["results"]) == 4 and all(r["document"] is None for r in bare["results"])
    assert bare["results"][-1]["relevance_score"] == 0.0


def test_fail_on_load_and_load_delay():
    engine = FakeEngine(EngineConfig(model_uid="u", model_type="LLM", model_name="m",
                                     engine="fake", model_format="", model_path="",
                                     options={"fail_on_load": "disk on fire", "load_delay": "0.1"}))
    started = time.monotonic()
    with pytest.raises(ModelLaunchError, match="disk on fire"):
        engine.load()
    assert time.monotonic() - started >= 0.1 and engine.loaded is False


def test_bad_options_and_requests_are_invalid_requests():
    with pytest.raises(InvalidRequestError) as info:
        make(delay_per_token="slow")
    assert info.value.param == "delay_per_token"
    llm, embedder, reranker = make(), make("embedding"), make("rerank")
    cases = [
        (llm.chat({"messages": []}), "messages"),
        (llm.complete({"model": "fake-uid"}), "prompt"),
        (embedder.embed({"input": []}), "input"),
        (reranker.rerank({"query": "q", "documents": []}), "documents"),
        (embedder.chat(CHAT), "model"),
        (llm.embed({"input": "x"}), "model"),
    ]
    for coro, param in cases:
        with pytest.raises(InvalidRequestError) as info:
            run(coro)
        assert info.value.param == param
    assert embedder.model_type == "embedding" and llm.describe()["engine"] == "fake"
