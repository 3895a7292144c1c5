"""2. Streaming: time to first token and tokens/s of a 128-token answer (ignore_eos).

Served is SSE read line by line from a keep-alive client; direct is the
engine's own chunk iterator. A token is a chunk with non-empty content, counted
the same way on both sides. ``decode tok/s`` is (tokens - 1) / (last - first
token); ``end-to-end tok/s`` is tokens / (last token - request sent).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from typing import Any, Dict, List

import httpx

from .common import Row, Target
from .context import Bench

SECTION = "2 streaming (llama.cpp, 128 tokens, ignore_eos)"
MESSAGES = [{"role": "user", "content": "Write a long story about whales."}]


def stream_body(uid: str, tokens: int) -> Dict[str, Any]:
    return {"model": uid, "messages": MESSAGES, "max_tokens": tokens, "ignore_eos": True,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}


def has_content(chunk: Dict[str, Any]) -> bool:
    """A chunk that carries generated text (role-only and usage chunks do not)."""
    return any((c.get("delta") or {}).get("content") or c.get("text")
               for c in chunk.get("choices") or [])


def timing(started: float, stamps: List[float]) -> Dict[str, float]:
    """TTFT, decode and end-to-end rates from the arrival times of the tokens."""
    if not stamps:
        return {"tokens": 0}
    n, first, last = len(stamps), stamps[0], stamps[-1]
    decode = (n - 1) / (last - first) if n > 1 and last > first else None
    return {"tokens": n, "ttft_ms": (first - started) * 1000, "decode_tps": decode,
            "e2e_tps": n / (last - started)}


def served_once(client: httpx.Client, body: Dict[str, Any]) -> Dict[str, float]:
    stamps: List[float] = []
    usage = None
    started = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"served stream failed ({resp.status_code}): {resp.read()[:500]}")
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"served stream error: {chunk['error']}")
            if has_content(chunk):
                stamps.append(time.perf_counter())
            usage = chunk.get("usage") or usage
    out = timing(started, stamps)
    out["usage_tokens"] = (usage or {}).get("completion_tokens")
    return out


async def direct_once(engine: Any, body: Dict[str, Any]) -> Dict[str, float]:
    stamps: List[float] = []
    usage = None
    started = time.perf_counter()
    async with contextlib.aclosing(engine.chat_stream(dict(body))) as chunks:
        async for chunk in chunks:
            if has_content(chunk):
                stamps.append(time.perf_counter())
            usage = chunk.get("usage") or usage
    out = timing(started, stamps)
    out["usage_tokens"] = (usage or {}).get("completion_tokens")
    return out


def _median(runs: List[Dict[str, float]], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _cpu_per_token(runs: List[Dict[str, float]], key: str):
    tokens = sum(r["tokens"] for r in runs)
    return sum(r["cpu"][key] for r in runs) * 1000 / tokens if tokens else None


def run(bench: Bench) -> None:
    bench.ensure_served("llama")
    engine = bench.ensure_direct("llama").engine
    body = stream_body(bench.cases["llama"].uid, bench.plan.stream_tokens)
    served: List[Dict[str, Any]] = []
    direct: List[Dict[str, Any]] = []
    with httpx.Client(base_url=bench.base_url, timeout=120) as client:
        def served_run():
            out, cpu = bench.metered(lambda: served_once(client, body))
            served.append(dict(out, cpu=cpu))

        def direct_run():
            out, cpu = bench.metered(
                lambda: bench.loop.run(direct_once(engine, body), timeout=300))
            direct.append(dict(out, cpu=cpu))

        for i in range(bench.plan.stream_runs):
            for step in ((direct_run, served_run) if i % 2 else (served_run, direct_run)):
                step()
    bench.report.details["streaming"] = {"served": served, "direct": direct}
    bench.report.add(
        Row(SECTION, "time to first token (median)", "ms", _median(served, "ttft_ms"),
            _median(direct, "ttft_ms")),
        Row(SECTION, "decode tokens/s (median)", "tok/s", _median(served, "decode_tps"),
            _median(direct, "decode_tps"), Target("ratio_min", 0.95)),
        Row(SECTION, "end-to-end tokens/s (median)", "tok/s", _median(served, "e2e_tps"),
            _median(direct, "e2e_tps")),
        Row(SECTION, "tokens per answer (median)", "tokens", _median(served, "tokens"),
            _median(direct, "tokens")),
        Row(SECTION, "CPU per token, all processes", "ms", _cpu_per_token(served, "total"),
            _cpu_per_token(direct, "total")),
        Row(SECTION, "gateway CPU per token", "ms", _cpu_per_token(served, "gateway")),
    )
