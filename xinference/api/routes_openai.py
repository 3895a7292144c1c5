"""OpenAI-compatible inference endpoints: chat, completions, embeddings, rerank."""

from __future__ import annotations

from typing import Any, Dict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .errors import classify
from .gateway import Gateway
from .schemas import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                      RerankRequest, engine_request)
from .sse import sse_events

router = APIRouter()


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def _generate(gateway: Gateway, body: Dict[str, Any], unary: str, streaming: str):
    model_uid = body["model"]
    body = gateway.cap_max_tokens(body)
    if not body.get("stream"):
        return JSONResponse(await gateway.call(model_uid, unary, body))
    batches = gateway.stream(model_uid, streaming, body).__aiter__()
    try:
        first = await batches.__anext__()
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


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await _generate(_gateway(request), engine_request(body), "chat", "chat_stream")


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    return await _generate(_gateway(request), engine_request(body), "complete", "complete_stream")


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request):
    payload = engine_request(body)
    return JSONResponse(await _gateway(request).call(body.model, "embed", payload))


@router.post("/v1/rerank")
async def rerank(body: RerankRequest, request: Request):
    payload = engine_request(body)
    return JSONResponse(await _gateway(request).call(body.model, "rerank", payload))
