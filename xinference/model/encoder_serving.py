"""Serving of the embedding and rerank types: their engines answer with the response dicts."""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict

from ..errors import InvalidRequestError
from .operations import InferenceCall, Operation


async def answer(engine: Any, call: InferenceCall) -> Dict[str, Any]:
    """``/v1/embeddings`` or ``/v1/rerank`` answer for ``call``."""
    if call.operation == Operation.EMBED:
        return await engine.embed(call.body)
    if call.operation == Operation.RERANK:
        return await engine.rerank(call.body)
    raise InvalidRequestError(f"{call.operation.label} is not an operation of this model type")


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Dict[str, Any]]:
    """Embeddings and rerank answers are never streamed."""
    raise InvalidRequestError(f"{call.operation.label} answers cannot be streamed",
                              param="stream")
