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
import statistics
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


class DirectEncoder:
    """``SentenceTransformer.encode`` in this process, with the served engine's threads."""

    def __init__(self, threads: int):
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.model = SentenceTransformer(direct_mod.minilm_dir(), device="cpu")
        self.model.encode(["warm up"], show_progress_bar=False)

    def run(self, sentences: List[str]) -> Dict[str, Any]:
        started = time.perf_counter()
        vectors = self.model.encode(sentences, batch_size=32, convert_to_numpy=True,
                                    show_progress_bar=False)
        return {"seconds": time.perf_counter() - started, "vectors": np.asarray(vectors)}


def _passes(bench: Bench, requests: List[List[str]], sentences: List[str]) -> Dict[str, list]:
    """Each round runs every side once, in a rotated order (the box's load drifts)."""
    uid = bench.cases["minilm"].uid
    encoder = DirectEncoder(bench.plan.threads)
    engine = bench.ensure_direct("minilm").engine
    sides = {"direct": lambda: encoder.run(sentences),
             "served_float": lambda: bench.loop.run(
                 served_pass(bench.base_url, uid, requests, "float")),
             "engine": lambda: bench.loop.run(engine_pass(engine, requests))}
    if not bench.plan.quick:
        sides["served_base64"] = lambda: bench.loop.run(
            served_pass(bench.base_url, uid, requests, "base64"))
    names = list(sides)
    results: Dict[str, list] = {name: [] for name in names}
    for round_ in range(bench.plan.embed_rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            out, cpu = bench.metered(sides[name])
            results[name].append(dict(out, cpu=cpu))
    return results


def run(bench: Bench) -> None:
    plan = bench.plan
    bench.ensure_served("minilm")
    requests = make_requests(plan.embed_requests, plan.embed_max_sentences)
    sentences = [s for texts in requests for s in texts]
    n = len(sentences)
    results = _passes(bench, requests, sentences)
    rate = {name: statistics.median(n / r["seconds"] for r in runs)
            for name, runs in results.items()}
    cpu = {name: {k: statistics.median(r["cpu"][k] for r in runs) * 1000 / n
                  for k in runs[0]["cpu"]} for name, runs in results.items()}
    reference = results["direct"][0]["vectors"]
    section = SECTION + f", 1-{plan.embed_max_sentences} sentences each"
    details: Dict[str, Any] = {"requests": len(requests), "sentences": n,
                               "seconds": {k: [r["seconds"] for r in v]
                                           for k, v in results.items()},
                               "cpu_ms_per_sentence": cpu}
    for fmt in ("float", "base64"):
        runs = results.get(f"served_{fmt}")
        if not runs:
            continue
        cos = min(min_cosine(r["vectors"], reference) for r in runs)
        details[f"min_cosine_{fmt}"] = cos
        bench.report.add(
            Row(section, f"served ({fmt}) vs SentenceTransformer.encode", "sent/s",
                rate[f"served_{fmt}"], rate["direct"], Target("ratio_min", 0.8)),
            Row(section, f"min cosine served ({fmt}) vs direct", "cos", cos,
                target=Target("served_min", 0.9999)),
            Row(section, f"CPU per sentence ({fmt}), all processes", "ms",
                cpu[f"served_{fmt}"]["total"], cpu["direct"]["total"]),
            Row(section, f"gateway CPU per sentence ({fmt})", "ms",
                cpu[f"served_{fmt}"]["gateway"]))
    bench.report.add(
        Row(section, "engine class in-process vs SentenceTransformer.encode", "sent/s",
            rate["engine"], rate["direct"], note="same 256 concurrent calls, no HTTP/RPC"))
    bench.report.details["embeddings"] = details
