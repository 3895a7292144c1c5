"""SentenceTransformersRerank on a tiny random BERT cross-encoder built in a temp folder."""

import asyncio
import uuid

import numpy as np
import pytest

from xinference.errors import InvalidRequestError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.st_rerank import SentenceTransformersRerank

QUERY = "where do whales live"
DOCS = [
    "Whales live in all of the world's oceans.",
    "The stock market fell sharply on Tuesday.",
    "Blue whales migrate between feeding and breeding grounds every year across the sea.",
    "Bread needs flour, water, salt and yeast.",
    "Orcas are found in cold coastal waters.",
    "x",
]


@pytest.fixture(scope="module")
def engine(tiny_reranker_dir):
    config = EngineConfig(model_uid="rr-uid", model_type="rerank", model_name="tiny-reranker",
                          engine="sentence_transformers", model_format="pytorch",
                          model_path=tiny_reranker_dir, family={"max_tokens": 64},
                          options={"n_threads": 1, "batch_size": 8})
    eng = SentenceTransformersRerank(config)
    eng.load()
    yield eng
    eng.close()


def _direct(engine, query, docs):
    return engine._model.predict([(query, d) for d in docs], convert_to_numpy=True)


def _check_against_direct(answer, direct, count):
    scores = [r["relevance_score"] for r in answer["results"]]
    assert len(scores) == count
    assert scores == sorted(scores, reverse=True)
    for r in answer["results"]:
        assert abs(r["relevance_score"] - float(direct[r["index"]])) < 1e-5
    expected = sorted(range(len(direct)), key=lambda i: -float(direct[i]))[:count]
    assert sorted(direct[[r["index"] for r in answer["results"]]], reverse=True) == \
        sorted(direct[expected], reverse=True)


def test_scores_match_predict_sorted_with_shape(engine):
    out = asyncio.run(engine.rerank({"model": "rr-uid", "query": QUERY, "documents": DOCS}))
    uuid.UUID(out["id"])
    assert set(out) == {"id", "results", "meta"}
    assert out["meta"]["tokens"] is None and "api_version" in out["meta"]
    assert sorted(r["index"] for r in out["results"]) == list(range(len(DOCS)))
    assert all(r["document"] is None for r in out["results"])
    direct = _direct(engine, QUERY, DOCS)
    assert np.ptp(direct) > 1e-4
    _check_against_direct(out, direct, len(DOCS))


def test_top_n_return_documents_and_return_len(engine):
    out = asyncio.run(engine.rerank({"query": QUERY, "documents": DOCS, "top_n": 3,
                                     "return_documents": True, "return_len": True}))
    _check_against_direct(out, _direct(engine, QUERY, DOCS), 3)
    for r in out["results"]:
        assert r["document"] == {"text": DOCS[r["index"]]}
    tok = engine._model.tokenizer
    expected = sum(len(tok(QUERY, d)["input_ids"]) for d in DOCS)
    assert out["meta"]["tokens"] == {"input_tokens": expected, "output_tokens": 0}
    many = asyncio.run(engine.rerank({"query": QUERY, "documents": DOCS, "top_n": 50}))
    assert len(many["results"]) == len(DOCS)


def test_concurrent_requests_are_batched(engine):
    queries = [f"question number {i} about whales" for i in range(12)]
    before = engine._batcher.batches_run

    async def run():
        return await asyncio.gather(*[engine.rerank({"query": q, "documents": DOCS[: 1 + i % 6]})
                                      for i, q in enumerate(queries)])

    answers = asyncio.run(run())
    n_pairs = sum(1 + i % 6 for i in range(12))
    assert engine._batcher.batches_run - before < len(queries)
    assert engine._batcher.batches_run - before >= n_pairs / 8
    for i, (q, ans) in enumerate(zip(queries, answers)):
        docs = DOCS[: 1 + i % 6]
        _check_against_direct(ans, _direct(engine, q, docs), len(docs))


def test_long_documents_truncate_or_chunk(engine):
    long_doc = "filler words about nothing at all " * 40 + "whales live in the deep ocean"
    docs = [long_doc, "short"]
    plain = asyncio.run(engine.rerank({"query": QUERY, "documents": docs, "return_len": True}))
    assert plain["meta"]["tokens"]["input_tokens"] <= 2 * engine.max_tokens
    _check_against_direct(plain, _direct(engine, QUERY, docs), 2)
    chunked = asyncio.run(engine.rerank({"query": QUERY, "documents": docs, "max_chunks_per_doc": 4,
                                         "return_len": True}))
    pieces = engine._chunks(QUERY, long_doc, 4)
    assert len(pieces) == 4 and all(p in long_doc for p in pieces)
    best = max(_direct(engine, QUERY, pieces))
    score = next(r["relevance_score"] for r in chunked["results"] if r["index"] == 0)
    assert abs(score - float(best)) < 1e-5
    assert chunked["meta"]["tokens"]["input_tokens"] > plain["meta"]["tokens"]["input_tokens"]


def test_bad_requests_fail_alone(engine):
    cases = [
        ({"documents": DOCS}, "query"),
        ({"query": QUERY, "documents": []}, "documents"),
        ({"query": QUERY, "documents": ["ok", 5]}, "documents"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
        ({"query": QUERY, "documents": DOCS, "return_documents": "yes"}, "return_documents"),
        ({"query": QUERY, "documents": ["d"] * 2049}, "documents"),
        ({"query": "word " * 80, "documents": ["d"], "max_chunks_per_doc": 2}, "query"),
    ]

    async def run():
        calls = [engine.rerank(body) for body, _ in cases]
        calls.append(engine.rerank({"query": QUERY,
                                    "documents": [{"text": "Whales swim."}, "Cats"]}))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(run())
    for (body, param), res in zip(cases, results):
        assert isinstance(res, InvalidRequestError), body
        assert res.param == param, (body, res.message)
    assert len(results[-1]["results"]) == 2
