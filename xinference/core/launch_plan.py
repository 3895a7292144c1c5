"""From a launch request to an engine config: family, spec, quantization, engine.

Pure functions over the model registry and the engine table; the supervisor
calls :func:`plan_launch` and the tests call it without any actor.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InvalidRequestError, ModelNotFoundError
from ..model.engines.base import EngineConfig
from ..model.engines.registry import check_engine, choose_engine, engines_for_type
from ..model.registry import ModelFamily, ModelRegistry, ModelSpec, normalize_model_type
from .messages import LAUNCH_FIELDS, LaunchRequest

_UID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def launch_request_from_body(body: Dict[str, Any]) -> LaunchRequest:
    """Split a POST /v1/models body into our fields and engine options (every other key)."""
    if not body.get("model_name"):
        raise InvalidRequestError("model_name is required", param="model_name")
    options = {k: v for k, v in body.items() if k not in LAUNCH_FIELDS and v is not None}
    if body.get("trust_remote_code") is not None:
        options["trust_remote_code"] = body["trust_remote_code"]
    replica = body.get("replica") or 1
    if not isinstance(replica, int) or replica < 1:
        raise InvalidRequestError("replica must be a positive integer", param="replica")
    size = body.get("model_size_in_billions")
    gpu_idx = body.get("gpu_idx")
    if isinstance(gpu_idx, int):
        gpu_idx = [gpu_idx]
    return LaunchRequest(
        model_name=body["model_name"],
        model_type=normalize_model_type(body.get("model_type")),
        model_uid=body.get("model_uid") or None,
        model_engine=body.get("model_engine") or None,
        model_format=body.get("model_format") or None,
        model_size_in_billions=None if size in (None, "") else str(size),
        quantization=body.get("quantization") or None,
        replica=replica,
        n_gpu=body.get("n_gpu", "auto"),
        worker_ip=body.get("worker_ip") or None,
        gpu_idx=gpu_idx,
        enable_thinking=body.get("enable_thinking"),
        context_length=body.get("context_length"),
        model_path=body.get("model_path") or None,
        envs={str(k): str(v) for k, v in (body.get("envs") or {}).items()},
        options=options,
    )


def validate_model_uid(uid: str) -> str:
    if not _UID_PATTERN.match(uid):
        raise InvalidRequestError(
            f"model_uid {uid!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit", param="model_uid")
    return uid


def _pick_spec(family: ModelFamily, req: LaunchRequest) -> Tuple[ModelSpec, Optional[str]]:
    specs = family.find_specs(req.model_format, req.model_size_in_billions, req.quantization)
    if not specs:
        offered = "; ".join(
            f"format {s.model_format}, size {s.model_size_in_billions}, quantizations "
            f"{', '.join(s.quantizations)}" for s in family.model_specs)
        raise ModelNotFoundError(
            f"{family.model_name} has no spec with format={req.model_format}, "
            f"size={req.model_size_in_billions}, quantization={req.quantization}; "
            f"it offers: {offered}",
            param="model_format")
    if req.model_engine or req.model_format:
        spec = specs[0]
    else:
        spec = _first_runnable(family, specs)
    quantization = req.quantization
    if quantization is None:
        quantization = spec.quantizations[0] if spec.quantizations else None
    else:
        quantization = next(q for q in spec.quantizations if q.lower() == quantization.lower())
    return spec, quantization


def _first_runnable(family: ModelFamily, specs: List[ModelSpec]) -> ModelSpec:
    for spec in specs:
        quant = spec.quantizations[0] if spec.quantizations else None
        for entry in engines_for_type(family.model_type):
            if check_engine(entry, spec.model_format, quant, family.model_family) is None:
                return spec
    return specs[0]


def plan_launch(req: LaunchRequest, registry: ModelRegistry) -> Tuple[ModelFamily, EngineConfig]:
    """Resolve a launch request into the family and an engine config (model_path left empty).

    Raises ModelNotFoundError for an unknown name or spec and EngineUnavailableError, with each
    engine's reason, when nothing here can run it.
    """
    family = registry.get(req.model_type, req.model_name)
    spec, quantization = _pick_spec(family, req)
    entry = choose_engine(family.model_type, spec.model_format, quantization,
                          family.model_family, req.model_engine)
    uid = validate_model_uid(req.model_uid or family.model_name)
    context_length = req.context_length or family.context_length
    config = EngineConfig(
        model_uid=uid, model_type=family.model_type, model_name=family.model_name,
        engine=entry.name, model_format=spec.model_format, model_path=req.model_path or "",
        quantization=quantization, model_size_in_billions=spec.model_size_in_billions,
        family=family.to_dict(), options=dict(req.options), context_length=context_length,
        enable_thinking=req.enable_thinking, n_gpu=req.n_gpu, gpu_idx=req.gpu_idx,
    )
    return family, config


def engine_table(family: ModelFamily, include_unavailable: bool = False) -> Dict[str, List[Dict]]:
    """``GET /v1/engines/{name}``: for each engine, the specs it can run here (or why not)."""
    table: Dict[str, List[Dict]] = {}
    for entry in engines_for_type(family.model_type):
        if not entry.auto_select:
            continue
        for spec in family.model_specs:
            usable = [q for q in spec.quantizations
                      if check_engine(entry, spec.model_format, q, family.model_family) is None]
            reason = None if usable else check_engine(
                entry, spec.model_format, spec.quantizations[0] if spec.quantizations else None,
                family.model_family)
            if not usable and not include_unavailable:
                continue
            row = {"model_name": family.model_name, "model_format": spec.model_format,
                   "model_size_in_billions": spec.model_size_in_billions,
                   "quantizations": usable or spec.quantizations, "available": bool(usable)}
            if reason:
                row["reason"] = reason
            table.setdefault(entry.name, []).append(row)
    return table
