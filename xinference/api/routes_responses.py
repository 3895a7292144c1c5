"""The OpenAI Responses API: ``POST /v1/responses`` (whole or streamed), and the stored
responses: ``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``.

A request is checked and its ``previous_response_id`` resolved here (the earlier
turns go to the replica as ``call.context["history"]``); the replica's Responses
serving module answers. What goes back to the client is watched (``ResponseTap``)
for the final response, stored with its conversation unless ``store`` is false.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..model.llm.serving.responses_request import chat_request
from ..model.operations import Dialect, InferenceCall, Operation
from .errors import error_body
from .responses_store import ResponseStore, ResponseTap, conversation, listed_items
from .schemas_responses import CreateResponseRequest, response_request
from .serve import Envelope, respond

router = APIRouter()

PING = b": ping\n\n"


def responses_store(request: Request) -> ResponseStore:
    """The gateway's store, made on first use from the settings."""
    state = request.app.state
    store = getattr(state, "responses_store", None)
    if store is None:
        settings = state.gateway.settings
        store = state.responses_store = ResponseStore(
            settings.responses_store_size, settings.responses_store_max_bytes,
            settings.responses_store_ttl)
    return store


def _same_body(status: int, body: Dict[str, Any]) -> Dict[str, Any]:
    return body


def _keeper(store: ResponseStore, payload: Dict[str, Any], history: list, request_size: int):
    def keep(response: Dict[str, Any], size: int) -> None:
        store.put(response, conversation(history, payload, response), listed_items(payload),
                  request_size + size)
    return keep


@router.post("/v1/responses")
async def create_response(body: CreateResponseRequest, request: Request):
    payload = response_request(body)
    store = responses_store(request)
    previous = payload.get("previous_response_id")
    history = store.history(previous) if previous else []
    chat_request(payload, history)
    payload.setdefault("request_id", uuid.uuid4().hex)
    streaming = bool(payload.get("stream"))
    call = InferenceCall(Operation.CHAT, payload, Dialect.RESPONSES, streaming,
                         {"history": history} if history else {})
    keep = None
    if payload.get("store") is not False and store.enabled:
        keep = _keeper(store, payload, history, len(await request.body()))
    tap = ResponseTap(streaming, keep)
    envelope = Envelope(error_body=_same_body, error_event=tap.error_event, ping=PING, done=b"")
    return await respond(request, payload["model"], call, envelope, observe=tap.observe)


def _not_found(response_id: str) -> JSONResponse:
    message = f"Response with id '{response_id}' not found."
    return JSONResponse(error_body(message, "invalid_request_error"), status_code=404)


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request):
    entry = responses_store(request).get(response_id)
    return _not_found(response_id) if entry is None else entry.response


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request):
    if not responses_store(request).delete(response_id):
        return _not_found(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(response_id: str, request: Request,
                           limit: int = Query(20, ge=1, le=100),
                           order: str = Query("desc", pattern="^(asc|desc)$"),
                           after: Optional[str] = None):
    entry = responses_store(request).get(response_id)
    if entry is None:
        return _not_found(response_id)
    items = entry.input_items if order == "asc" else entry.input_items[::-1]
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return {"object": "list", "data": page, "has_more": len(items) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None}
