"""Custom model registrations: ``POST`` and ``DELETE /v1/model_registrations/...``.

These routes call :mod:`xinference.model.custom` directly, with no actor hop:
the REST gateway runs in the supervisor's process in every deployment mode
(``xinference-local`` and ``xinference-supervisor`` both serve the API from the
process that holds the supervisor actor), so the process registry changed here
is the one the supervisor plans launches from. Workers need no copy: a launch
sends them the whole family definition. ``worker_ip`` is accepted for
compatibility and ignored, for the same reason. The handlers run on the event
loop, one at a time, so two registrations of one name cannot race (the work is
a few small file operations).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from ..model.custom import register_custom_model, unregister_custom_model

router = APIRouter()


class RegisterModelRequest(BaseModel):
    """Xinference's body: ``model`` is the family definition as a JSON string."""

    model_config = ConfigDict(extra="allow")

    model: Union[str, Dict[str, Any]]
    persist: bool = False
    worker_ip: Optional[str] = None


@router.post("/v1/model_registrations/{model_type}")
async def register_model(model_type: str, body: RegisterModelRequest):
    family = register_custom_model(model_type, body.model, body.persist)
    return {"model_type": family.model_type, "model_name": family.model_name,
            "persist": body.persist}


@router.delete("/v1/model_registrations/{model_type}/{model_name}")
async def unregister_model(model_type: str, model_name: str):
    unregister_custom_model(model_type, model_name)
    return {"model_type": model_type, "model_name": model_name}


@router.get("/v1/models/vllm-supported")
async def vllm_supported_models():
    """LLM families the vLLM engine's rules accept (format and platform aside)."""
    from ..model.engines.registry import find_engine
    from ..model.registry import get_registry

    families = find_engine("LLM", "vLLM").families or ()
    names = [f.model_name for f in get_registry().list("LLM")
             if (f.model_family or "").lower() in families or f.model_name.lower() in families]
    return {"model_names": sorted(names)}
