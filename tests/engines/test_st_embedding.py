"""SentenceTransformersEmbedding on the real all-MiniLM-L6-v2 (one engine per module)."""

import asyncio
import base64
import threading
import time

import numpy as np
import pytest

from xinference.errors import InvalidRequestError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.st_embedding import SentenceTransformersEmbedding

WORDS = "the quick brown fox jumps over the lazy dog near a quiet river bank".split()


def _config(path, **family):
    base = {"model_name": "all-MiniLM-L6-v2", "dimensions": 384, "max_tokens": 256}
    base.update(family)
    return EngineConfig(model_uid="minilm-uid", model_type="embedding",
                        model_name="all-MiniLM-L6-v2", engine="sentence_transformers",
                        model_format="pytorch", model_path=path, family=base,
                        options={"n_threads": 1})


@pytest.fixture(scope="module")
def engine(minilm_dir):
    eng = SentenceTransformersEmbedding(_config(minilm_dir))
    eng.load()
    yield eng
    eng.close()


def _direct(engine, texts):
    return engine._model.encode(texts, convert_to_numpy=True)


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _sentence(i):
    return " ".join(WORDS[j % len(WORDS)] for j in range(i, i + 1 + i % 9)) + f" number {i}"


def test_single_string_matches_direct_encode(engine):
    out = asyncio.run(engine.embed({"model": "minilm-uid", "input": "hello world"}))
    assert out["object"] == "list" and out["model"] == "minilm-uid"
    assert len(out["data"]) == 1
    item = out["data"][0]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 384
    assert _cos(item["embedding"], _direct(engine, ["hello world"])[0]) > 0.9999
    assert out["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_list_keeps_order_and_counts_real_tokens(engine):
    texts = ["a cat", "quantum chromodynamics is hard", "hello world!", "x " * 40]
    out = asyncio.run(engine.embed({"input": texts}))
    direct = _direct(engine, texts)
    assert [d["index"] for d in out["data"]] == [0, 1, 2, 3]
    for d, ref in zip(out["data"], direct):
        assert _cos(d["embedding"], ref) > 0.9999
    expected = sum(len(engine._model.tokenizer(t)["input_ids"]) for t in texts)
    assert out["usage"]["prompt_tokens"] == expected == out["usage"]["total_tokens"]
    assert _cos(out["data"][0]["embedding"], out["data"][1]["embedding"]) < 0.5


def test_concurrent_requests_are_batched_and_split_back(engine):
    requests = [[_sentence(i * 8 + k) for k in range(1 + i % 8)] for i in range(64)]
    flat = [t for r in requests for t in r]
    direct = dict(zip(flat, _direct(engine, flat)))
    before = engine._batcher.batches_run

    async def run():
        return await asyncio.gather(*[engine.embed({"input": r}) for r in requests])

    answers = asyncio.run(run())
    batches = engine._batcher.batches_run - before
    assert batches < len(requests) and batches >= len(flat) / engine._batcher.max_batch_size
    for req, ans in zip(requests, answers):
        assert len(ans["data"]) == len(req)
        for text, d in zip(req, ans["data"]):
            assert _cos(d["embedding"], direct[text]) > 0.9999


def test_token_id_inputs(engine):
    tok = engine._model.tokenizer
    texts = ["hello world", "rivers flow to the sea"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    single = asyncio.run(engine.embed({"input": ids[0]}))
    many = asyncio.run(engine.embed({"input": ids}))
    direct = _direct(engine, texts)
    assert len(single["data"]) == 1
    assert _cos(single["data"][0]["embedding"], direct[0]) > 0.9999
    assert [_cos(d["embedding"], r) > 0.9999 for d, r in zip(many["data"], direct)] == [True, True]
    with pytest.raises(InvalidRequestError) as err:
        asyncio.run(engine.embed({"input": [1, 2, 10**7]}))
    assert err.value.param == "input" and "vocabulary" in err.value.message


def test_bad_request_fails_alone_among_concurrent_good_ones(engine):
    good = [[_sentence(i), _sentence(i + 1)] for i in range(10)]
    bad = ["fine", ""]

    async def run():
        calls = [engine.embed({"input": g}) for g in good]
        calls.insert(5, engine.embed({"input": bad}))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[5], InvalidRequestError) and "input[1]" in results[5].message
    others = results[:5] + results[6:]
    assert all(isinstance(r, dict) and len(r["data"]) == 2 for r in others)


def test_base64_decodes_to_the_same_floats(engine):
    texts = ["hello world", "a second input"]
    floats = asyncio.run(engine.embed({"input": texts}))
    b64 = asyncio.run(engine.embed({"input": texts, "encoding_format": "base64"}))
    for f, b in zip(floats["data"], b64["data"]):
        assert isinstance(b["embedding"], str)
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.shape == (384,)
        np.testing.assert_allclose(decoded, np.asarray(f["embedding"], dtype=np.float32),
                                   rtol=0, atol=1e-7)


def test_input_errors_name_the_field_and_limit(engine):
    cases = [
        ({"input": ""}, "input", "empty"),
        ({"input": []}, "input", "empty"),
        ({"input": ["ok", 3]}, "input", "list of strings"),
        ({"input": ["x"] * 2049}, "input", "2048"),
        ({"input": "word " * 400}, "input", "256"),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format", "float"),
        ({"input": "hi", "dimensions": 128}, "dimensions", "384"),
        ({"input": "hi", "truncate": "yes"}, "truncate", "true or false"),
    ]
    for body, param, words in cases:
        with pytest.raises(InvalidRequestError) as err:
            asyncio.run(engine.embed(body))
        assert err.value.param == param, body
        assert words in err.value.message, (body, err.value.message)


def test_truncate_cuts_to_the_limit(engine):
    long_text = "word " * 400
    out = asyncio.run(engine.embed({"input": long_text, "truncate": True}))
    assert out["usage"]["prompt_tokens"] == 256
    assert _cos(out["data"][0]["embedding"], _direct(engine, [long_text])[0]) > 0.9999
    full = asyncio.run(engine.embed({"input": "hi", "dimensions": 384}))
    assert len(full["data"][0]["embedding"]) == 384


def test_event_loop_stays_free_during_encode(engine):
    texts = ["word " * 200] * 32
    ticks = []

    async def ticker(stop):
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    async def run():
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        start = time.perf_counter()
        await engine.embed({"input": texts})
        elapsed = time.perf_counter() - start
        stop.set()
        await task
        return elapsed

    elapsed = asyncio.run(run())
    assert threading.active_count() >= 2
    gaps = np.diff(ticks)
    assert elapsed > 0.05 and len(ticks) >= 3
    assert gaps.max() < elapsed * 0.8


def test_matryoshka_family_truncates_and_renormalises(minilm_dir, engine):
    eng = SentenceTransformersEmbedding(_config(minilm_dir, matryoshka=True))
    eng.load()
    try:
        out = asyncio.run(eng.embed({"input": ["hello world", "river"], "dimensions": 64}))
    finally:
        eng.close()
    direct = _direct(engine, ["hello world", "river"])
    for d, ref in zip(out["data"], direct):
        vec = np.asarray(d["embedding"])
        assert vec.shape == (64,)
        assert abs(np.linalg.norm(vec) - 1.0) < 1e-5
        assert _cos(vec, ref[:64]) > 0.9999
    with pytest.raises(InvalidRequestError):
        asyncio.run(engine.embed({"input": "hi", "dimensions": 0}))


def test_families_are_valid_and_minilm_matches_its_model(engine):
    from xinference.model.registry import ModelRegistry

    registry = ModelRegistry()
    embedding = {f.model_name: f for f in registry.list("embedding")}
    rerank = {f.model_name: f for f in registry.list("rerank")}
    assert {"all-MiniLM-L6-v2", "bge-small-en-v1.5", "bge-m3", "e5-large-v2",
            "jina-embeddings-v2-base-en", "multilingual-e5-large"} <= set(embedding)
    assert {"bge-reranker-base", "bge-reranker-large", "bge-reranker-v2-m3",
            "jina-reranker-v2"} <= set(rerank)
    for family in list(embedding.values()) + list(rerank.values()):
        assert family.max_tokens and family.model_specs[0].model_id, family.model_name
        if family.model_type == "embedding":
            assert family.dimensions in (384, 768, 1024), family.model_name
            assert isinstance(family.to_dict()["matryoshka"], bool), family.model_name
    offline = [f.model_name for f in list(embedding.values()) + list(rerank.values())
               if any(s.offline_package for s in f.model_specs)]
    assert offline == ["all-MiniLM-L6-v2"]
    minilm = embedding["all-MiniLM-L6-v2"]
    assert (minilm.dimensions, minilm.max_tokens) == (engine.dimensions, engine.max_tokens)
    assert engine.describe()["dimensions"] == 384
