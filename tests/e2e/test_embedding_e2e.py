"""Embeddings and rerank end to end: a real xinference-local, REST, the OpenAI SDK and our client.

Served vectors and scores are compared with sentence-transformers run directly in
this process on the same weights. One embedding model and one reranker are
launched for the whole module and terminated at its end.
"""

import base64
import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest

from xinference.client import Client, EmbeddingModelHandle, RerankModelHandle

EMB_UID = "e2e-minilm"
RERANK_UID = "e2e-tiny-reranker"
WORDS = ("whale ocean river mountain bread coffee train music garden winter quiet bright "
         "ancient market doctor letter window storm engine paper").split()
QUERY = "where do whales live"
DOCS = [
    "Whales live in all of the world's oceans.",
    "The stock market fell sharply on Tuesday.",
    "Blue whales migrate between feeding and breeding grounds every year.",
    "Bread needs flour, water, salt and yeast.",
    "Orcas are found in cold coastal waters.",
]


def _cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))


def _launch(api: httpx.Client, body: dict) -> str:
    resp = api.post("/v1/models", json=body, timeout=600)
    assert resp.status_code == 200, resp.text
    return resp.json()["model_uid"]


@pytest.fixture(scope="module")
def embedding_uid(api):
    uid = _launch(api, {"model_name": "all-MiniLM-L6-v2", "model_type": "embedding",
                        "model_uid": EMB_UID, "n_threads": 1})
    yield uid
    api.delete(f"/v1/models/{uid}")


@pytest.fixture(scope="module")
def direct_st(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_dir, device="cpu")


@pytest.fixture(scope="module")
def rerank_uid(api, tiny_reranker_dir):
    uid = _launch(api, {"model_name": "bge-reranker-base", "model_type": "rerank",
                        "model_uid": RERANK_UID, "model_path": tiny_reranker_dir,
                        "n_threads": 1})
    yield uid
    api.delete(f"/v1/models/{uid}")


def _embed(api, uid, payload):
    return api.post("/v1/embeddings", json={"model": uid, **payload})


def test_single_string_equals_direct_with_real_usage(api, embedding_uid, direct_st):
    text = "The quick brown fox jumps over the lazy dog."
    resp = _embed(api, embedding_uid, {"input": text})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and len(body["data"]) == 1
    vector = body["data"][0]["embedding"]
    assert len(vector) == 384
    assert _cos(vector, direct_st.encode(text)) > 0.9999
    assert body["usage"]["prompt_tokens"] == len(direct_st.tokenizer(text)["input_ids"])


def test_list_and_token_ids_equal_direct(api, embedding_uid, direct_st):
    texts = ["a cat sits on the mat", "stock prices fell", "whales sing in the ocean"]
    body = _embed(api, embedding_uid, {"input": texts}).json()
    direct = direct_st.encode(texts)
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for item, expected in zip(body["data"], direct):
        assert _cos(item["embedding"], expected) > 0.9999
    ids = [direct_st.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    one = _embed(api, embedding_uid, {"input": ids[0]}).json()
    assert _cos(one["data"][0]["embedding"], direct[0]) > 0.9999
    many = _embed(api, embedding_uid, {"input": ids}).json()
    for item, expected in zip(many["data"], direct):
        assert _cos(item["embedding"], expected) > 0.9999


def test_openai_sdk_float_and_base64(local_server, embedding_uid, direct_st):
    texts = ["hello world", "quantum chromodynamics"]
    direct = direct_st.encode(texts)
    with openai.OpenAI(base_url=f"{local_server.base_url}/v1", api_key="none") as oai:
        decoded_by_sdk = oai.embeddings.create(model=embedding_uid, input=texts)
        as_float = oai.embeddings.create(model=embedding_uid, input=texts, encoding_format="float")
        raw = oai.embeddings.create(model=embedding_uid, input=texts, encoding_format="base64")
    for answer in (decoded_by_sdk, as_float):
        assert [len(d.embedding) for d in answer.data] == [384, 384]
        for item, expected in zip(answer.data, direct):
            assert _cos(item.embedding, expected) > 0.9999
    assert decoded_by_sdk.usage.prompt_tokens == as_float.usage.prompt_tokens > 0
    for item, expected in zip(raw.data, direct):
        assert isinstance(item.embedding, str)
        vector = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
        assert vector.shape == (384,) and _cos(vector, expected) > 0.9999


def test_our_client_create_embedding(local_server, embedding_uid, direct_st):
    with Client(local_server.base_url) as client:
        handle = client.get_model(embedding_uid)
        assert isinstance(handle, EmbeddingModelHandle)
        answer = handle.create_embedding(["a kitten", "a truck"])
    direct = direct_st.encode(["a kitten", "a truck"])
    for item, expected in zip(answer["data"], direct):
        assert _cos(item["embedding"], expected) > 0.9999


def test_64_concurrent_requests_equal_direct_and_bad_ones_fail_alone(api, embedding_uid,
                                                                     direct_st):
    rng = random.Random(7)
    batches = [[_sentence(rng) for _ in range(rng.randint(1, 8))] for _ in range(64)]
    bad = {5: {"input": ["fine text", ""]},
           17: {"input": [[1, 2, 999999]]},
           40: {"input": "hello", "encoding_format": "hex"}}
    payloads = [bad.get(i, {"input": batch}) for i, batch in enumerate(batches)]
    with ThreadPoolExecutor(max_workers=64) as pool:
        responses = list(pool.map(lambda p: _embed(api, embedding_uid, p), payloads))
    unique = sorted({s for b in batches for s in b})
    direct = dict(zip(unique, direct_st.encode(unique)))
    for i, resp in enumerate(responses):
        if i in bad:
            assert resp.status_code == 400, resp.text
            error = resp.json()["error"]
            field = "encoding_format" if i == 40 else "input"
            assert error["param"] == field and field in error["message"]
            continue
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert len(data) == len(batches[i])
        for item, text in zip(data, batches[i]):
            assert _cos(item["embedding"], direct[text]) > 0.9999


def test_over_long_input_names_the_limit(api, embedding_uid):
    resp = _embed(api, embedding_uid, {"input": ["short", "word " * 400]})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "input"
    assert "input[1]" in error["message"] and "256" in error["message"]
    cut = _embed(api, embedding_uid, {"input": "word " * 400, "truncate": True})
    assert cut.status_code == 200 and cut.json()["usage"]["prompt_tokens"] == 256


def test_model_description_shows_the_dimensions(api, embedding_uid):
    answer = _embed(api, embedding_uid, {"input": "x"}).json()
    assert len(answer["data"][0]["embedding"]) == 384
    desc = api.get(f"/v1/models/{embedding_uid}").json()
    assert desc["model_type"] == "embedding" and desc["status"] == "READY"


def _direct_scores(folder, query, docs):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(folder, device="cpu").predict([(query, d) for d in docs])


def test_rerank_launched_from_model_path_equals_cross_encoder(api, rerank_uid,
                                                              tiny_reranker_dir):
    desc = api.get(f"/v1/models/{rerank_uid}").json()
    assert desc["status"] == "READY" and desc["model_type"] == "rerank"
    resp = api.post("/v1/rerank", json={"model": rerank_uid, "query": QUERY, "documents": DOCS})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    direct = _direct_scores(tiny_reranker_dir, QUERY, DOCS)
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert [r["index"] for r in results] == sorted(range(len(DOCS)), key=lambda i: -direct[i])
    for r in results:
        assert abs(r["relevance_score"] - float(direct[r["index"]])) < 1e-5
        assert r["document"] is None


def test_rerank_top_n_return_documents_and_len(local_server, rerank_uid, tiny_reranker_dir):
    direct = _direct_scores(tiny_reranker_dir, QUERY, DOCS)
    best = sorted(range(len(DOCS)), key=lambda i: -direct[i])[:2]
    with Client(local_server.base_url) as client:
        handle = client.get_model(rerank_uid)
        assert isinstance(handle, RerankModelHandle)
        answer = handle.rerank(DOCS, QUERY, top_n=2, return_documents=True, return_len=True)
    assert [r["index"] for r in answer["results"]] == best
    assert [r["document"]["text"] for r in answer["results"]] == [DOCS[i] for i in best]
    assert answer["meta"]["tokens"]["input_tokens"] > 0


def test_rerank_bad_request_fails_alone(api, rerank_uid):
    good = {"model": rerank_uid, "query": QUERY, "documents": DOCS, "top_n": 3}
    bad = {"model": rerank_uid, "query": QUERY, "documents": DOCS, "top_n": 0}
    payloads = [bad if i == 4 else good for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda p: api.post("/v1/rerank", json=p), payloads))
    for i, resp in enumerate(responses):
        if i == 4:
            assert resp.status_code == 400 and resp.json()["error"]["param"] == "top_n"
        else:
            assert resp.status_code == 200 and len(resp.json()["results"]) == 3


def test_terminated_models_are_gone(api, embedding_uid, rerank_uid):
    for uid in (embedding_uid, rerank_uid):
        assert api.delete(f"/v1/models/{uid}").status_code == 200
        assert api.get(f"/v1/models/{uid}").status_code == 404
    resp = _embed(api, embedding_uid, {"input": "x"})
    assert resp.status_code == 404 and resp.json()["error"]["param"] == "model"
