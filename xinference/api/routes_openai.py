"""OpenAI-compatible inference endpoints: chat, completions, embeddings, rerank.

Replicas answer with JSON bytes (the ``*_json`` methods of the model actor),
which go out unchanged: the gateway never re-encodes a response.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Dict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .errors import classify
from .gateway import Gateway
from .schemas import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                      RerankRequest, engine_request)
from .sse import sse_events

router = APIRouter()


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


_GONE = object()


async def _until_disconnect(request: Request) -> None:
    """Return once the HTTP client has gone away (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, awaitable: Awaitable) -> Any:
    """The result of ``awaitable``, or ``_GONE`` if the client disconnected first.

    Leaving cancels the work, which reaches the replica and stops the generation:
    a client that gives up (a timeout) does not keep a slot busy.
    """
    work = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    return _GONE if work.cancelled() else work.result()


async def _generate(gateway: Gateway, body: Dict[str, Any], unary: str, streaming: str,
                    request: Request):
    model_uid = body["model"]
    body = gateway.cap_max_tokens(body)
    if not body.get("stream"):
        result = await _unless_client_leaves(request, gateway.call(model_uid, unary, body))
        return Response(status_code=499) if result is _GONE else _json(result)
    batches = gateway.stream(model_uid, streaming, body).__aiter__()
    try:
        first = await _unless_client_leaves(request, batches.__anext__())
        if first is _GONE:
            await batches.aclose()
            return Response(status_code=499)
    except StopAsyncIteration:
        first = []
    except Exception as exc:  # noqa: BLE001 - before any byte went out: a plain error answer
        await batches.aclose()
        status, payload = classify(exc)
        return JSONResponse(payload, status_code=status)

    async def replay():
        yield first
        async for batch in batches:
            yield batch

    events = sse_events(replay(), gateway.settings.sse_ping_attempts_seconds,
                        on_close=batches.aclose)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _json(encoded: bytes) -> Response:
    """A JSON answer from the bytes a replica encoded."""
    return Response(encoded, media_type="application/json")


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await _generate(_gateway(request), engine_request(body), "chat_json",
                           "chat_stream_json", request)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    return await _generate(_gateway(request), engine_request(body), "complete_json",
                           "complete_stream_json", request)


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request):
    payload = engine_request(body)
    return _json(await _gateway(request).call(body.model, "embed_json", payload))


@router.post("/v1/rerank")
async def rerank(body: RerankRequest, request: Request):
    payload = engine_request(body)
    return _json(await _gateway(request).call(body.model, "rerank_json", payload))
