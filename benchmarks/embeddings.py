"""4. Embeddings: 256 concurrent requests of 1 to N sentences against all-MiniLM-L6-v2.

Served: all requests at once through REST (keep-alive pool). Direct: the same
sentences in one ``SentenceTransformer.encode`` call in this process, with the
same torch threads. Also: the engine class in this process (same 256 concurrent
calls, no HTTP, no RPC) to tell batching cost from transport cost. Served
vectors must match direct ones (cosine > 0.9999).
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from typing import Any, Dict, List

import httpx
import numpy as np

from . import direct as direct_mod
from .common import Row, Target
from .context import Bench

SECTION = "4 embeddings (all-MiniLM-L6-v2, 256 concurrent requests)"
WORDS = ("the model serves many requests while the engine encodes each batch of short and "
         "long sentences about rivers mountains cities data science music history cooking "
         "travel weather football gardens stars oceans machines languages").split()


def make_requests(count: int, max_sentences: int, seed: int = 7) -> List[List[str]]:
    """``count`` requests of 1..``max_sentences`` sentences of 4..40 words, reproducibly."""
    rng = random.Random(seed)
    out = []
    for r in range(count):
        size = rng.randint(1, max_sentences)
        out.append([f"{r}.{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40)))
                    for i in range(size)])
    return out


def decode(item: Dict[str, Any]) -> np.ndarray:
    value = item["embedding"]
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return np.asarray(value, dtype=np.float32)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine similarity between two equally shaped matrices."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


async def served_pass(base_url: str, uid: str, requests: List[List[str]],
                      fmt: str) -> Dict[str, Any]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
        async def one(texts: List[str]) -> np.ndarray:
            resp = await client.post("/v1/embeddings", json={"model": uid, "input": texts,
                                                             "encoding_format": fmt})
            if resp.status_code != 200:
                raise RuntimeError(f"served embeddings failed ({resp.status_code}): "
                                   f"{resp.text[:300]}")
            return np.stack([decode(d) for d in resp.json()["data"]])

        await one(["warm up"])
        started = time.perf_counter()
        vectors = await asyncio.gather(*(one(texts) for texts in requests))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "vectors": np.concatenate(vectors)}


async def engine_pass(engine: Any, requests: List[List[str]]) -> Dict[str, Any]:
    async def one(texts: List[str]) -> np.ndarray:
        result = await engine.embed({"input": texts, "encoding_format": "float"})
        return np.stack([decode(d) for d in result["data"]])

    await one(["warm up"])
    started = time.perf_counter()
    vectors = await asyncio.gather(*(one(texts) for texts in requests))
    return {"seconds": time.perf_counter() - started, "vectors": np.concatenate(vectors)}


def direct_pass(threads: int, sentences: List[str]) -> Dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(direct_mod.minilm_dir(), device="cpu")
    model.encode(["warm up"], show_progress_bar=False)
    started = time.perf_counter()
    vectors = model.encode(sentences, batch_size=32, convert_to_numpy=True,
                           show_progress_bar=False)
    return {"seconds": time.perf_counter() - started, "vectors": np.asarray(vectors)}


def run(bench: Bench) -> None:
    plan = bench.plan
    uid = bench.cases["minilm"].uid
    bench.ensure_served("minilm")
    requests = make_requests(plan.embed_requests, plan.embed_max_sentences)
    sentences = [s for texts in requests for s in texts]
    direct = direct_pass(plan.threads, sentences)
    formats = ("float",) if plan.quick else ("float", "base64")
    served = {fmt: bench.loop.run(served_pass(bench.base_url, uid, requests, fmt))
              for fmt in formats}
    engine = bench.loop.run(engine_pass(bench.ensure_direct("minilm").engine, requests))
    n = len(sentences)
    details: Dict[str, Any] = {"requests": len(requests), "sentences": n,
                               "direct_seconds": direct["seconds"],
                               "engine_seconds": engine["seconds"]}
    section = SECTION + f", 1-{plan.embed_max_sentences} sentences each"
    direct_rate = n / direct["seconds"]
    for fmt, result in served.items():
        cos = min_cosine(result["vectors"], direct["vectors"])
        details[f"served_{fmt}_seconds"], details[f"min_cosine_{fmt}"] = result["seconds"], cos
        bench.report.add(
            Row(section, f"served ({fmt}) vs SentenceTransformer.encode", "sent/s",
                n / result["seconds"], direct_rate, Target("ratio_min", 0.8)),
            Row(section, f"min cosine served ({fmt}) vs direct", "cos", cos,
                target=Target("served_min", 0.9999)))
    bench.report.add(
        Row(section, "served (float) vs engine class in-process", "sent/s",
            n / served["float"]["seconds"], n / engine["seconds"],
            note="same 256 concurrent calls, no HTTP/RPC"))
    bench.report.details["embeddings"] = details
