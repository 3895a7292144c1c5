"""The Anthropic Messages API: messages (whole or streamed), token counts and the model list.

Paths are served bare (``/v1/messages``) and under ``/anthropic`` (``base_url``
``http://host:port/anthropic`` for the ``anthropic`` SDK, which also finds
``/v1/models`` there). Every error, from validation to a failure mid-stream,
takes Anthropic's shape ``{"type": "error", "error": {"type", "message"}}``: the
domain error's status picks the type; a stream that already started ends with an
``event: error`` frame. Keys (``x-api-key`` or ``Authorization``) are accepted and
not checked.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Type

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from ..errors import InvalidRequestError, ModelNotFoundError
from ..model.llm.serving.anthropic_request import openai_chat_request
from ..model.operations import Dialect, InferenceCall, Operation
from .errors import classify
from .schemas_anthropic import CountTokensRequest, MessagesRequest, validation_message
from .serve import Envelope, respond

router = APIRouter()

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
          503: "overloaded_error", 529: "overloaded_error"}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def anthropic_error(status: int, body: Dict[str, Any]) -> Dict[str, Any]:
    """Anthropic's error body for our OpenAI-shaped one (``{"error": {"message", ...}}``)."""
    message = (body.get("error") or {}).get("message") or body.get("detail") or "Request failed"
    return {"type": "error", "error": {"type": error_type(status), "message": str(message)}}


def anthropic_error_event(status: int, body: Dict[str, Any]) -> bytes:
    """The ``event: error`` frame that ends a stream which failed after it started."""
    data = json.dumps(anthropic_error(status, body), ensure_ascii=False)
    return b"event: error\ndata: " + data.encode() + b"\n\n"


ANTHROPIC = Envelope(error_body=anthropic_error, error_event=anthropic_error_event,
                     ping=b'event: ping\ndata: {"type": "ping"}\n\n', done=b"")


def _error(exc: BaseException) -> JSONResponse:
    status, body = classify(exc)
    return JSONResponse(anthropic_error(status, body), status_code=status)


async def _payload(request: Request, schema: Type[BaseModel]) -> Dict[str, Any]:
    """The validated body as a dict; InvalidRequestError says what is wrong."""
    try:
        raw = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidRequestError("The request body must be a JSON object")
    try:
        payload = schema.model_validate(raw).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc)) from None
    openai_chat_request(payload)
    payload.setdefault("request_id", uuid.uuid4().hex)
    return payload


async def _answer(request: Request, schema: Type[BaseModel], operation: Operation) -> Response:
    try:
        payload = await _payload(request, schema)
    except InvalidRequestError as exc:
        return _error(exc)
    streaming = bool(payload.get("stream")) and operation == Operation.CHAT
    call = InferenceCall(operation, payload, Dialect.ANTHROPIC, streaming)
    return await respond(request, payload["model"], call, ANTHROPIC)


@router.post("/v1/messages")
@router.post("/anthropic/v1/messages")
async def create_message(request: Request):
    return await _answer(request, MessagesRequest, Operation.CHAT)


@router.post("/v1/messages/count_tokens")
@router.post("/anthropic/v1/messages/count_tokens")
async def count_tokens(request: Request):
    return await _answer(request, CountTokensRequest, Operation.COUNT_TOKENS)


def _created_at(seconds: Optional[float]) -> str:
    stamp = datetime.fromtimestamp(seconds or 0, tz=timezone.utc)
    return stamp.isoformat().replace("+00:00", "Z")


def model_info(entry: Dict[str, Any]) -> Dict[str, Any]:
    """Anthropic's model object for one entry of the supervisor's model list."""
    info = {"type": "model", "id": entry["id"],
            "display_name": entry.get("model_name") or entry["id"],
            "created_at": _created_at(entry.get("created"))}
    if entry.get("context_length"):
        info["max_input_tokens"] = entry["context_length"]
    return info


async def _llms(request: Request) -> List[Dict[str, Any]]:
    supervisor = await request.app.state.gateway.supervisor()
    models = [m for m in await supervisor.list_models()
              if str(m.get("model_type", "")).lower() == "llm"]
    return sorted(models, key=lambda m: (-(m.get("created") or 0), m["id"]))


def page(items: List[Dict[str, Any]], limit: int, after_id: Optional[str],
         before_id: Optional[str]) -> Dict[str, Any]:
    """One page of Anthropic's list shape, cut by ``after_id``/``before_id`` and ``limit``."""
    ids = [i["id"] for i in items]
    if after_id is not None:
        items = items[ids.index(after_id) + 1:] if after_id in ids else []
        chosen, more = items[:limit], len(items) > limit
    elif before_id is not None:
        items = items[:ids.index(before_id)] if before_id in ids else []
        chosen, more = items[-limit:], len(items) > limit
    else:
        chosen, more = items[:limit], len(items) > limit
    return {"data": chosen, "has_more": more,
            "first_id": chosen[0]["id"] if chosen else None,
            "last_id": chosen[-1]["id"] if chosen else None}


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequestError(f"limit must be an integer from 1 to 1000, got {raw!r}",
                                  param="limit")
    return int(raw)


@router.get("/anthropic/v1/models")
async def list_models(request: Request, after_id: Optional[str] = None,
                      before_id: Optional[str] = None):
    try:
        limit = _limit(request)
        models = [model_info(m) for m in await _llms(request)]
    except Exception as exc:  # noqa: BLE001 - answered in Anthropic's error shape
        return _error(exc)
    return page(models, limit, after_id, before_id)


@router.get("/anthropic/v1/models/{model_id}")
async def get_model(model_id: str, request: Request):
    try:
        found = [m for m in await _llms(request) if m["id"] == model_id]
        if not found:
            raise ModelNotFoundError(f"model: {model_id} (no running LLM has this uid; "
                                     "GET /anthropic/v1/models lists them)", param="model")
    except Exception as exc:  # noqa: BLE001 - answered in Anthropic's error shape
        return _error(exc)
    return model_info(found[0])
