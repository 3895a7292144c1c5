"""1. Overhead per request: chat with max_tokens=1, sequential, keep-alive client vs in-process.

Served and direct requests run in alternating blocks, so both see the same
background load on a shared machine. The served figure uses a lean keep-alive
HTTP client (``http.client``) so the client library's own cost does not count as
the platform's; the same requests through httpx are reported beside it. Also
measured, to tell where the time goes: the gateway's HTTP floor (an endpoint
that touches no actor), the replica called from this process over its data plane
(the gateway's path for unary calls) and over xoscar (no HTTP, no gateway), and
the engine in-process with a short rest before each call, as it gets between
served requests.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from typing import Any, Dict, List
from urllib.parse import urlsplit

import httpx

from xinference.model.operations import InferenceCall, Operation

from .common import Row, Target, summarize
from .context import Bench

SECTION = "1 overhead (llama.cpp, chat max_tokens=1, sequential)"
MESSAGES = [{"role": "user", "content": "Say hi."}]
BLOCK = 20
# The engine rests between served requests while the answer travels and the next one comes
# in; this much rest before each direct call shows what that alone costs the engine.
IDLE_SECONDS = 0.003


def request_body(uid: str) -> Dict[str, Any]:
    return {"model": uid, "messages": MESSAGES, "max_tokens": 1, "temperature": 0}


class LeanClient:
    """One keep-alive HTTP/1.1 connection through ``http.client``: little client-side CPU."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def post_json(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        self._conn.request("POST", path, json.dumps(body),
                           {"Content-Type": "application/json"})
        resp = self._conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"served chat failed ({resp.status}): {data[:500]!r}")
        return json.loads(data)

    def get(self, path: str) -> bytes:
        self._conn.request("GET", path)
        return self._conn.getresponse().read()

    def close(self) -> None:
        self._conn.close()


def _check_one_token(answer: Dict[str, Any], where: str) -> None:
    if answer["usage"]["completion_tokens"] != 1:
        raise RuntimeError(f"{where} answer has {answer['usage']['completion_tokens']} "
                           "tokens, not 1")


def _served_block(client: LeanClient, body: Dict[str, Any], count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.post_json("/v1/chat/completions", body)
        out.append((time.perf_counter() - started) * 1000)
    _check_one_token(answer, "served")
    return out


def _httpx_block(client: httpx.Client, body: Dict[str, Any], count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        resp = client.post("/v1/chat/completions", json=body)
        out.append((time.perf_counter() - started) * 1000)
        resp.raise_for_status()
    _check_one_token(resp.json(), "served (httpx)")
    return out


async def _rpc_block(ref: Any, body: Dict[str, Any], count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        answer = await ref.serve(InferenceCall(Operation.CHAT, dict(body)))
        out.append((time.perf_counter() - started) * 1000)
    _check_one_token(json.loads(answer), "RPC")
    return out


async def _data_plane_block(client: Any, body: Dict[str, Any], count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        answer = await client.call("serve", InferenceCall(Operation.CHAT, dict(body)))
        out.append((time.perf_counter() - started) * 1000)
    _check_one_token(json.loads(answer), "data plane")
    return out


async def _data_plane_client(ref: Any) -> Any:
    from xinference.core.data_plane import DataPlaneClient

    where = await ref.data_plane_address()
    return DataPlaneClient(ref.address.rsplit(":", 1)[0], where["port"], where["unix_path"])


async def _replica_ref(base_url: str, uid: str) -> Any:
    import xoscar as xo

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        replica = (await client.get(f"/v1/models/{uid}/replicas")).json()[0]
    return await xo.actor_ref(address=replica["address"], uid=replica["replica_uid"])


async def _direct_block(engine: Any, body: Dict[str, Any], count: int,
                        idle: float = 0.0) -> List[float]:
    """In-process engine calls; ``idle`` seconds of rest (not timed) before each one."""
    out = []
    for _ in range(count):
        if idle:
            await asyncio.sleep(idle)
        started = time.perf_counter()
        result = await engine.chat(dict(body))
        out.append((time.perf_counter() - started) * 1000)
    if result["usage"]["completion_tokens"] != 1:
        raise RuntimeError("direct answer has more than 1 token")
    return out


def _floor(client: LeanClient, count: int) -> List[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        client.get("/v1/cluster/auth")
        out.append((time.perf_counter() - started) * 1000)
    return out


def _add(total: Dict[str, float], delta: Dict[str, float]) -> None:
    for key, value in delta.items():
        total[key] = total.get(key, 0.0) + value


def _measure(bench: Bench, engine: Any, body: Dict[str, Any], total: int):
    """Blocks of each path in turn until ``total`` served requests: the samples (ms) by path,
    and the CPU time of the served and the direct blocks."""
    samples: Dict[str, List[float]] = {k: [] for k in ("served", "direct", "httpx", "rpc",
                                                       "rested", "plane")}
    cpu: Dict[str, Dict[str, float]] = {"served": {}, "direct": {}}
    lean = LeanClient(bench.base_url)
    ref = bench.loop.run(_replica_ref(bench.base_url, body["model"]))
    plane = bench.loop.run(_data_plane_client(ref))
    with httpx.Client(base_url=bench.base_url, timeout=60) as client:
        _served_block(lean, body, 10)
        bench.loop.run(_direct_block(engine, body, 10))
        samples["floor"] = _floor(lean, 50)
        while len(samples["served"]) < total:
            count = min(BLOCK, total - len(samples["served"]))
            block, used = bench.metered(lambda n=count: _served_block(lean, body, n))
            samples["served"] += block
            _add(cpu["served"], used)
            block, used = bench.metered(
                lambda n=count: bench.loop.run(_direct_block(engine, body, n)))
            samples["direct"] += block
            _add(cpu["direct"], used)
            samples["httpx"] += _httpx_block(client, body, count // 2)
            samples["rpc"] += bench.loop.run(_rpc_block(ref, body, count // 2))
            samples["plane"] += bench.loop.run(_data_plane_block(plane, body, count // 2))
            samples["rested"] += bench.loop.run(
                _direct_block(engine, body, count // 2, IDLE_SECONDS))
        samples["floor"] += _floor(lean, 50)
    lean.close()
    plane.close()
    return samples, cpu


def run(bench: Bench) -> None:
    bench.ensure_served("llama")
    engine = bench.ensure_direct("llama").engine
    body = request_body(bench.cases["llama"].uid)
    total = bench.plan.overhead_requests
    samples, cpu = _measure(bench, engine, body, total)
    s, d, f = (summarize(samples[k]) for k in ("served", "direct", "floor"))
    hx, rpc, rest, lane = (summarize(samples[k]) for k in ("httpx", "rpc", "rested", "plane"))
    per_s = {k: v * 1000 / len(samples["served"]) for k, v in cpu["served"].items()}
    per_d = {k: v * 1000 / len(samples["direct"]) for k, v in cpu["direct"].items()}
    bench.report.details["overhead"] = {"served_ms": s, "direct_ms": d, "http_floor_ms": f,
                                        "served_httpx_ms": hx, "rpc_ms": rpc,
                                        "direct_after_idle_ms": rest, "data_plane_ms": lane,
                                        "requests": total, "cpu_ms_per_request_served": per_s,
                                        "cpu_ms_per_request_direct": per_d}
    bench.report.add(
        Row(SECTION, "latency p50", "ms", s["p50"], d["p50"], Target("delta_max", 2.0),
            note=f"served-direct = {s['p50'] - d['p50']:.2f} ms"),
        Row(SECTION, "latency p95", "ms", s["p95"], d["p95"]),
        Row(SECTION, "latency p50, client httpx", "ms", hx["p50"], d["p50"],
            note=f"served-direct = {hx['p50'] - d['p50']:.2f} ms; httpx's own cost included"),
        Row(SECTION, "latency p50, replica's data plane (no HTTP)", "ms", lane["p50"], d["p50"],
            note=f"served-direct = {lane['p50'] - d['p50']:.2f} ms; the gateway's path"),
        Row(SECTION, "latency p50, model actor over xoscar (no HTTP)", "ms", rpc["p50"], d["p50"],
            note=f"served-direct = {rpc['p50'] - d['p50']:.2f} ms; streams' path"),
        Row(SECTION, f"latency p50 vs direct after {IDLE_SECONDS * 1000:.0f} ms idle", "ms",
            s["p50"], rest["p50"], note=f"served-direct = {s['p50'] - rest['p50']:.2f} ms; "
            "the engine's own cost of resting between requests taken out"),
        Row(SECTION, "CPU per request, all processes", "ms", per_s["total"], per_d["total"],
            note="gateway + model process + client vs this process"),
        Row(SECTION, "gateway CPU per request", "ms", per_s["gateway"]),
        Row(SECTION, "gateway HTTP floor p50 (GET /v1/cluster/auth)", "ms", f["p50"],
            note="no actor call, no engine"),
    )
