"""Xinference's management endpoints: models, registrations, engines, cluster."""

from __future__ import annotations

from typing import Any, Dict, Optional

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..core import replica_names
from ..errors import ModelNotFoundError
from .gateway import Gateway
from .schemas import LaunchModelRequest

router = APIRouter()


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def _supervisor(request: Request):
    return await _gateway(request).supervisor()


@router.get("/status")
async def status(request: Request):
    workers = await (await _supervisor(request)).list_workers()
    return {"status": "ok", "version": __version__, "workers": len(workers)}


@router.get("/v1/models")
async def list_models(request: Request):
    data = await (await _supervisor(request)).list_models()
    return {"object": "list", "data": data}


@router.post("/v1/models")
async def launch_model(body: LaunchModelRequest, request: Request, wait_ready: bool = True):
    payload = body.model_dump()
    result = await (await _supervisor(request)).launch_model(payload, wait_ready)
    _gateway(request).router.forget(result["model_uid"])
    return result


@router.get("/v1/models/instances")
async def model_instances(request: Request, model_name: Optional[str] = None,
                          model_uid: Optional[str] = None):
    models = await (await _supervisor(request)).list_models()
    return [m for m in models
            if (model_name is None or m["model_name"] == model_name)
            and (model_uid is None or m["id"] == model_uid)]


@router.get("/v1/models/{model_uid}")
async def describe_model(model_uid: str, request: Request):
    return await (await _supervisor(request)).describe_model(model_uid)


@router.delete("/v1/models/{model_uid}")
async def terminate_model(model_uid: str, request: Request):
    await (await _supervisor(request)).terminate_model(model_uid)
    _gateway(request).router.forget(model_uid)
    return JSONResponse(None)


@router.get("/v1/models/{model_uid}/replicas")
async def model_replicas(model_uid: str, request: Request):
    return (await (await _supervisor(request)).get_replicas(model_uid))["replicas"]


@router.post("/v1/models/{model_uid}/requests/{request_id}/abort")
async def abort_request(model_uid: str, request_id: str, request: Request):
    aborted = await _gateway(request).abort(model_uid, request_id)
    return {"msg": "aborted" if aborted else "not running", "aborted": aborted}


@router.get("/v1/model_registrations/{model_type}")
async def list_registrations(model_type: str, request: Request, detailed: bool = False):
    return await (await _supervisor(request)).list_registrations(model_type, detailed)


@router.get("/v1/model_registrations/{model_type}/{model_name}")
async def get_registration(model_type: str, model_name: str, request: Request):
    return await (await _supervisor(request)).get_registration(model_type, model_name)


@router.get("/v1/engines/{model_name}")
async def query_engines(model_name: str, request: Request, all: bool = False):  # noqa: A002
    return await (await _supervisor(request)).query_engines(model_name, None, all)


@router.get("/v1/engines/{model_type}/{model_name}")
async def query_engines_typed(model_type: str, model_name: str, request: Request,
                              all: bool = False):  # noqa: A002
    return await (await _supervisor(request)).query_engines(model_name, model_type, all)


@router.get("/v1/cluster/info")
async def cluster_info(request: Request):
    return await (await _supervisor(request)).cluster_info()


@router.get("/v1/workers")
async def workers(request: Request):
    return await (await _supervisor(request)).list_workers()


@router.get("/v1/cluster/auth")
async def cluster_auth():
    return {"auth": False}


@router.get("/v1/address")
async def address(request: Request):
    return _gateway(request).supervisor_address


@router.get("/v1/supervisor")
async def supervisor_info(request: Request):
    return {"address": _gateway(request).supervisor_address, "version": __version__}


# --- cluster: replicas of a running model, workers, stopping -----------------------------------

@router.post("/v1/models/{model_uid}/replicas")
async def add_model_replicas(model_uid: str, request: Request,
                             body: Optional[Dict[str, Any]] = Body(default=None),
                             wait_ready: bool = True):
    count = (body or {}).get("replica", 1)
    replicas = await (await _supervisor(request)).add_replicas(model_uid, count, wait_ready)
    _gateway(request).router.forget(model_uid)
    return {"model_uid": model_uid, "replicas": replicas}


@router.delete("/v1/models/{model_uid}/replicas/{replica_id}")
async def remove_model_replica(model_uid: str, replica_id: int, request: Request,
                               drain_timeout: float = 30.0):
    gateway = _gateway(request)
    supervisor = await _supervisor(request)
    listed = (await supervisor.get_replicas(model_uid))["replicas"]
    if replica_id not in [r["replica_id"] for r in listed]:
        raise ModelNotFoundError(f"model {model_uid!r} has no replica {replica_id}; its replicas "
                                 f"are {[r['replica_id'] for r in listed]}", param="replica_id")
    replica_uid = replica_names.replica_uid(model_uid, replica_id)
    try:
        busy = await gateway.drain(model_uid, replica_uid, drain_timeout)
        result = await supervisor.remove_replica(model_uid, replica_id)
    finally:
        gateway.router.drained(replica_uid)
        gateway.router.forget(model_uid)
    return {**result, "drained": busy == 0}


@router.post("/v1/clusters/stop")
async def stop_cluster(request: Request):
    return await (await _supervisor(request)).stop_cluster()
