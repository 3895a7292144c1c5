"""The FastAPI application: routes, error mapping and the gateway on ``app.state``."""

from __future__ import annotations

from typing import List, Optional

from fastapi import APIRouter, FastAPI

from .. import __version__
from ..model_types import MODEL_TYPES, load_target
from ..settings import Settings
from .errors import install_error_handlers
from .gateway import Gateway
from .metrics import GatewayMetrics, MetricsMiddleware
from .metrics import router as metrics_router
from .routes_admin import router as admin_router
from .routes_anthropic import router as anthropic_router
from .routes_cache import router as cache_router
from .routes_registrations import router as registrations_router
from .routes_responses import router as responses_router


def type_routers() -> List[APIRouter]:
    """Each model type's router (``routes`` in :mod:`xinference.model_types`), once each."""
    targets = list(dict.fromkeys(t.routes for t in MODEL_TYPES))
    return [load_target(target) for target in targets]


def create_app(supervisor_address: str, settings: Settings,
               gateway: Optional[Gateway] = None) -> FastAPI:
    """Build the REST gateway for the supervisor at ``supervisor_address`` (or over
    ``gateway``, e.g. one on an in-process cluster)."""
    app = FastAPI(title="Xinference", version=__version__,
                  description="OpenAI-compatible API for open models, and their management.")
    app.state.gateway = gateway or Gateway(supervisor_address, settings)
    install_error_handlers(app)
    for router in type_routers():
        app.include_router(router)
    app.include_router(registrations_router)
    app.include_router(cache_router)
    app.include_router(admin_router)
    app.include_router(responses_router)
    app.include_router(anthropic_router)
    if not settings.disable_metrics:
        app.state.metrics = GatewayMetrics()
        app.include_router(metrics_router)
        app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
