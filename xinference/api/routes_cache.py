"""The model cache: ``GET /v1/cache/models``, ``GET .../files``, ``DELETE /v1/cache/models``.

These serve the cache of the host the gateway runs on (``<XINFERENCE_HOME>/cache``),
which is the worker's cache in ``xinference-local``, where supervisor, worker and
gateway share one process and one home. In a cluster each worker downloads into its
own cache and these routes still show only the supervisor host's: asking every worker
is not done yet. ``worker_ip`` is accepted for compatibility with Xinference's clients
and ignored; every listed item says in ``worker_ip`` which host it is on.

The answers have the shapes Xinference's clients read: ``{"list": [...]}`` for the
listing, ``{"paths": [...]}`` for the files of a version and ``{"result": true}``
for a removal. The file work runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Request

from ..model import cache

router = APIRouter()


def _cache_root(request: Request) -> Path:
    return request.app.state.gateway.settings.cache_dir


def _host(request: Request) -> str:
    address = request.app.state.gateway.supervisor_address or ""
    return address.rsplit(":", 1)[0] if ":" in address else address


@router.get("/v1/cache/models")
async def list_cached_models(request: Request, model_name: Optional[str] = None,
                             worker_ip: Optional[str] = None):
    """Every download in this host's cache (``model_name`` filters, any case)."""
    items = await asyncio.to_thread(cache.list_cached_models, _cache_root(request), model_name)
    host = _host(request)
    for item in items:
        item["worker_ip"] = host
    return {"list": items}


@router.get("/v1/cache/models/files")
async def list_cached_model_files(request: Request, model_version: str,
                                  worker_ip: Optional[str] = None):
    """The folders that removing ``model_version`` would delete (404 if it is not cached)."""
    paths = await asyncio.to_thread(cache.cached_version_paths, _cache_root(request),
                                    model_version)
    return {"model_version": model_version, "worker_ip": _host(request), "paths": paths}


@router.delete("/v1/cache/models")
async def remove_cached_model(request: Request, model_version: str,
                              worker_ip: Optional[str] = None):
    """Delete the files of ``model_version`` (400 while it is being downloaded)."""
    removed = await asyncio.to_thread(cache.remove_cached_version, _cache_root(request),
                                      model_version)
    return {"result": True, "model_version": model_version, "paths": removed}
