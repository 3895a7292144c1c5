"""1. Overhead per request: chat with max_tokens=1, sequential, keep-alive client vs in-process.

Served and direct requests run in alternating blocks, so both see the same
background load on a shared machine. Also measured: the HTTP floor of the
gateway (an endpoint that touches no actor), to tell HTTP cost from RPC cost.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

import httpx

from .common import Row, Target, summarize
from .context import Bench

SECTION = "1 overhead (llama.cpp, chat max_tokens=1, sequential)"
MESSAGES = [{"role": "user", "content": "Say hi."}]
BLOCK = 20


def request_body(uid: str) -> Dict[str, Any]:
    return {"model": uid, "messages": MESSAGES, "max_tokens": 1, "temperature": 0}


def _served_block(client: httpx.Client, body: Dict[str, Any], count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        resp = client.post("/v1/chat/completions", json=body)
        out.append((time.perf_counter() - started) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"served chat failed ({resp.status_code}): {resp.text[:500]}")
    usage = resp.json()["usage"]
    if usage["completion_tokens"] != 1:
        raise RuntimeError(f"served answer has {usage['completion_tokens']} tokens, not 1")
    return out


async def _direct_block(engine: Any, body: Dict[str, Any], count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        result = await engine.chat(dict(body))
        out.append((time.perf_counter() - started) * 1000)
    if result["usage"]["completion_tokens"] != 1:
        raise RuntimeError("direct answer has more than 1 token")
    return out


def _floor(client: httpx.Client, count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        client.get("/v1/cluster/auth")
        out.append((time.perf_counter() - started) * 1000)
    return out


def _add(total: Dict[str, float], delta: Dict[str, float]) -> None:
    for key, value in delta.items():
        total[key] = total.get(key, 0.0) + value


def run(bench: Bench) -> None:
    bench.ensure_served("llama")
    engine = bench.ensure_direct("llama").engine
    body = request_body(bench.cases["llama"].uid)
    total = bench.plan.overhead_requests
    served: List[float] = []
    direct: List[float] = []
    cpu_served: Dict[str, float] = {}
    cpu_direct: Dict[str, float] = {}
    with httpx.Client(base_url=bench.base_url, timeout=60) as client:
        _served_block(client, body, 10)
        bench.loop.run(_direct_block(engine, body, 10))
        floor = _floor(client, 50)
        while len(served) < total:
            count = min(BLOCK, total - len(served))
            block, cpu = bench.metered(lambda: _served_block(client, body, count))
            served += block
            _add(cpu_served, cpu)
            block, cpu = bench.metered(lambda: bench.loop.run(_direct_block(engine, body, count)))
            direct += block
            _add(cpu_direct, cpu)
        floor += _floor(client, 50)
    s, d, f = summarize(served), summarize(direct), summarize(floor)
    per_s = {k: v * 1000 / len(served) for k, v in cpu_served.items()}
    per_d = {k: v * 1000 / len(direct) for k, v in cpu_direct.items()}
    bench.report.details["overhead"] = {"served_ms": s, "direct_ms": d, "http_floor_ms": f,
                                        "requests": total, "cpu_ms_per_request_served": per_s,
                                        "cpu_ms_per_request_direct": per_d}
    bench.report.add(
        Row(SECTION, "latency p50", "ms", s["p50"], d["p50"], Target("delta_max", 2.0),
            note=f"served-direct = {s['p50'] - d['p50']:.2f} ms"),
        Row(SECTION, "latency p95", "ms", s["p95"], d["p95"]),
        Row(SECTION, "CPU per request, all processes", "ms", per_s["total"], per_d["total"],
            note="gateway + model process + client vs this process"),
        Row(SECTION, "gateway CPU per request", "ms", per_s["gateway"]),
        Row(SECTION, "gateway HTTP floor p50 (GET /v1/cluster/auth)", "ms", f["p50"],
            note="no actor call, no engine"),
    )
