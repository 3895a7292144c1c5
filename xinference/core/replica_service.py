"""What a replica does with a call: check the operation, run the serving layer, encode.

A plain class, so the model actor stays thin and the in-process API tests can
serve a replica without a process. The operation must be one the engine declares
(``Engine.capabilities``), else the answer is a 400 naming the model, its type and
the operation; the model type's serving module (from :mod:`xinference.model_types`)
turns the engine's results into the call's dialect.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict

from ..errors import InvalidRequestError, ModelUnavailableError
from ..model.operations import Dialect, InferenceCall, Operation
from ..model_types import find_model_type
from .streaming import json_bytes, ready_batches, sse_frames

# Answers bigger than this many items (embeddings, choices) are encoded off the event loop.
_INLINE_ENCODE_ITEMS = 64


async def encoded(result: Any) -> bytes:
    """``result`` as JSON bytes; large answers are encoded in a worker thread. An answer
    that is bytes already (audio, subtitles) is sent as it is."""
    if isinstance(result, (bytes, bytearray)):
        return bytes(result)
    items = ()
    if isinstance(result, dict):
        items = result.get("data") or result.get("results") or result.get("choices") or ()
    if len(items) > _INLINE_ENCODE_ITEMS:
        return await asyncio.to_thread(json_bytes, result)
    return json_bytes(result)


class ReplicaService:
    """Serves calls on one loaded engine."""

    def __init__(self, engine: Any):
        self.engine = engine
        config = engine.config
        model_type = find_model_type(config.model_type)
        if model_type is None:
            raise ModelUnavailableError(f"Unknown model type {config.model_type!r}")
        self._serving = model_type.load("serving")

    def _check(self, call: InferenceCall) -> None:
        if call.operation not in self.engine.capabilities:
            cfg = self.engine.config
            raise InvalidRequestError(
                f"Model {cfg.model_uid!r} ({cfg.model_type}, engine {cfg.engine}) does not "
                f"serve {call.operation.label}; launch a model that does for this endpoint",
                param="model")

    async def answer(self, call: InferenceCall) -> bytes:
        """The whole answer to ``call``, as the JSON bytes the client receives."""
        self._check(call)
        return await encoded(await self._serving.answer(self.engine, call))

    def stream(self, call: InferenceCall) -> AsyncIterator[bytes]:
        """The streamed answer as SSE frames, one bytes item per batch of ready events
        (events that are bytes, such as audio, are joined as they are, unframed).
        A bad request raises here, before anything is sent."""
        self._check(call)
        events = self._serving.stream(self.engine, call)
        return self._frames(events, call.dialect != Dialect.OPENAI)

    @staticmethod
    async def _frames(events: AsyncIterator[Dict[str, Any]], named: bool) -> AsyncIterator[bytes]:
        async for batch in ready_batches(events):
            if isinstance(batch[0], (bytes, bytearray)):
                yield b"".join(batch)
            else:
                yield sse_frames(batch, named)

    async def abort(self, request_id: str) -> bool:
        """Stop request ``request_id``; False when nothing by that id runs here."""
        if Operation.ABORT not in self.engine.capabilities:
            return False
        return await self.engine.abort(request_id)
