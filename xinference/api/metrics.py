"""Prometheus metrics of the gateway: ``GET /metrics``.

A thin ASGI wrapper counts requests by endpoint and status and times them
(streams until their last byte); the model and replica gauges are refreshed
from the supervisor when ``/metrics`` is scraped. ``XINFERENCE_DISABLE_METRICS=1``
leaves both out.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter()


class GatewayMetrics:
    """The gateway's metric families, in a registry of their own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("xinference_requests", "HTTP requests served",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("xinference_request_duration_seconds",
                                 "Time from request to last byte", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.replicas = Gauge("xinference_model_replicas", "Replicas by model and status",
                              ["model_uid", "model_type", "status"], registry=self.registry)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def set_models(self, models: list) -> None:
        self.replicas.clear()
        for model in models:
            counts: dict = {}
            for replica in model.get("replicas", []):
                counts[replica["status"]] = counts.get(replica["status"], 0) + 1
            for status, count in counts.items():
                self.replicas.labels(model["model_uid"], model["model_type"], status).set(count)


class MetricsMiddleware:
    """Pure ASGI middleware: one counter increment and one histogram sample per request."""

    def __init__(self, app: Any, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = scope.get("endpoint")
            name = getattr(endpoint, "__name__", "unmatched")
            self.metrics.observe(name, status, time.perf_counter() - started)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    state: GatewayMetrics = request.app.state.metrics
    supervisor = await request.app.state.gateway.supervisor()
    models = await supervisor.list_models()
    described = [await supervisor.describe_model(m["id"]) for m in models]
    state.set_models(described)
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)
