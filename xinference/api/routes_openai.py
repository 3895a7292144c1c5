"""OpenAI-compatible inference endpoints: chat, completions, embeddings, rerank.

Each route validates its body and sends one typed call to the model; replicas
answer with JSON bytes or SSE frames that go out unchanged (see :mod:`.serve`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..model.operations import InferenceCall, Operation
from .schemas import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                      RerankRequest, engine_request)
from .serve import respond

router = APIRouter()


async def _send(request: Request, operation: Operation, body) -> object:
    payload = engine_request(body)
    call = InferenceCall(operation, payload, stream=bool(payload.get("stream")))
    return await respond(request, body.model, call)


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await _send(request, Operation.CHAT, body)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    return await _send(request, Operation.COMPLETE, body)


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request):
    return await _send(request, Operation.EMBED, body)


@router.post("/v1/rerank")
async def rerank(body: RerankRequest, request: Request):
    return await _send(request, Operation.RERANK, body)
