"""3. Concurrency: N clients streaming for a fixed time; requests/s and tokens/s.

Each client sends streamed chats of 16 tokens (ignore_eos) back to back. After a
warm-up (clients already running, nothing counted), tokens are counted as they
arrive inside the window and requests when they finish inside it; at the end
every stream still open is closed (which stops its generation on both sides) and
the next window starts after a short pause.
Cases: llama.cpp (its slots batch), transformers with continuous batching, and
transformers with XINFERENCE_BATCH_SIZE=1 (one sequence at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict

import httpx

from .common import Row, cpu_delta
from .context import Bench
from .streaming import has_content

SECTION = "3 concurrency ({label}, streamed chats of {tokens} tokens)"
CASES = (("llama", "llama.cpp"), ("tf-batch", "transformers, batching"),
         ("tf-single", "transformers, batch size 1"))
PAUSE_SECONDS = 0.5


@dataclass
class Tally:
    """Tokens and finished requests seen between ``start`` and ``end`` (perf_counter)."""

    start: float
    end: float
    tokens: int = 0
    requests: int = 0
    all_tokens: int = 0

    def counting(self) -> bool:
        return self.start <= time.perf_counter() < self.end


def chat_body(uid: str, tokens: int, client_id: int) -> Dict[str, Any]:
    prompt = f"Client {client_id}: write a short story about a lighthouse."
    return {"model": uid, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": tokens, "ignore_eos": True, "temperature": 0, "stream": True}


async def _served_request(client: httpx.AsyncClient, body: Dict[str, Any],
                          tally: Tally) -> None:
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"served stream failed ({resp.status_code})")
        async for line in resp.aiter_lines():
            if line.startswith("data: {") and has_content(json.loads(line[6:])):
                tally.tokens += tally.counting()
                tally.all_tokens += 1
    tally.requests += tally.counting()


async def _direct_request(engine: Any, body: Dict[str, Any], tally: Tally) -> None:
    async with contextlib.aclosing(engine.chat_stream(dict(body))) as chunks:
        async for chunk in chunks:
            if has_content(chunk):
                tally.tokens += tally.counting()
                tally.all_tokens += 1
    tally.requests += tally.counting()


Sender = Callable[[Dict[str, Any], Tally], Awaitable[None]]


async def window(send: Sender, uid: str, clients: int, warmup: float, seconds: float,
                 tokens: int) -> Dict[str, float]:
    """Run ``clients`` looping senders for ``warmup + seconds``; rates over the last part."""
    started = time.perf_counter()
    tally = Tally(started + warmup, started + warmup + seconds)

    async def client_loop(client_id: int) -> None:
        body = chat_body(uid, tokens, client_id)
        while time.perf_counter() < tally.end:
            await send(body, tally)

    tasks = [asyncio.ensure_future(client_loop(i)) for i in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=warmup + seconds)
    for task in pending:
        task.cancel()
    await asyncio.wait(tasks, timeout=10)
    failures = [t.exception() for t in done if not t.cancelled() and t.exception()]
    if failures:
        raise RuntimeError(f"{len(failures)} clients failed: {failures[0]!r}")
    return {"clients": clients, "seconds": seconds, "requests": tally.requests,
            "tokens": tally.tokens, "rps": tally.requests / seconds,
            "tps": tally.tokens / seconds, "all_tokens": tally.all_tokens}


async def _measure_case(bench: Bench, key: str) -> Dict[str, Any]:
    plan, uid = bench.plan, bench.cases[key].uid
    engine = bench.ensure_direct(key).engine
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    results: Dict[str, Any] = {"served": [], "direct": []}
    async with httpx.AsyncClient(base_url=bench.base_url, timeout=120, limits=limits) as client:
        async def served(body, tally):
            await _served_request(client, body, tally)

        async def direct(body, tally):
            await _direct_request(engine, body, tally)

        for i, clients in enumerate(plan.concurrency_levels):
            order = (("served", served), ("direct", direct))
            for side, send in (order if i % 2 == 0 else order[::-1]):
                before = bench.cpu()
                out = await window(send, uid, clients, plan.concurrency_warmup,
                                   plan.concurrency_seconds, plan.concurrency_tokens)
                await asyncio.sleep(PAUSE_SECONDS)
                cpu = cpu_delta(before, bench.cpu(), per=max(out["all_tokens"], 1))
                settled = await asyncio.to_thread(bench.settle)
                results[side].append(dict(out, cpu_ms_per_token=cpu, settle_seconds=settled))
    return results


def _rows(bench: Bench, key: str, label: str, results: Dict[str, Any]) -> None:
    section = SECTION.format(label=label, tokens=bench.plan.concurrency_tokens)
    for served, direct in zip(results["served"], results["direct"]):
        c = served["clients"]
        bench.report.add(
            Row(section, f"{c:>2} clients: requests/s", "req/s", served["rps"], direct["rps"]),
            Row(section, f"{c:>2} clients: tokens/s", "tok/s", served["tps"], direct["tps"]),
            Row(section, f"{c:>2} clients: CPU per token, all processes", "ms",
                served["cpu_ms_per_token"]["total"], direct["cpu_ms_per_token"]["total"]))


def run(bench: Bench) -> None:
    bench.report.details["concurrency"] = {}
    for key, label in CASES:
        section = SECTION.format(label=label, tokens=bench.plan.concurrency_tokens)
        if key != "llama" and bench.plan.quick:
            bench.report.skip(section, "not in --quick: each transformers load from the GGUF "
                                       "takes 20-60 s here; run without --quick")
            continue
        try:
            bench.ensure_served(key)
            bench.ensure_direct(key)
        except Exception as exc:  # noqa: BLE001 - e.g. an engine that is not ready yet
            bench.report.skip(section, f"{type(exc).__name__}: {str(exc)[:300]}")
            bench.release(key)
            continue
        try:
            results = bench.loop.run(_measure_case(bench, key))
            bench.report.details["concurrency"][key] = results
            _rows(bench, key, label, results)
        finally:
            if key != "llama":
                bench.release(key)
