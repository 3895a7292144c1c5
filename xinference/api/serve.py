"""Sending one inference call to a model and its answer back, for every API dialect.

:func:`respond` is what each dialect's route calls once it has validated its body:
it picks a replica (retrying on another before the first byte if one is gone),
cancels the work when the client disconnects, streams server-sent events with
pings, and answers errors in the dialect's own shape, as its :class:`Envelope` says.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Optional

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..model.operations import InferenceCall
from .errors import classify
from .gateway import Gateway
from .sse import sse_events

Observer = Callable[[bytes], None]


@dataclass(frozen=True)
class Envelope:
    """How a dialect wraps what is not the model's answer.

    ``error_body(status, openai_body)``: the JSON error answer; ``error_event(status,
    openai_body)``: the SSE bytes of an error after the stream started; ``ping``: the
    bytes that keep a quiet stream open; ``done``: the bytes that end a stream (or b"").
    """

    error_body: Callable[[int, Dict[str, Any]], Dict[str, Any]]
    error_event: Callable[[int, Dict[str, Any]], bytes]
    ping: bytes = b": ping\n\n"
    done: bytes = b""

    def error_response(self, exc: BaseException) -> JSONResponse:
        status, body = classify(exc)
        return JSONResponse(self.error_body(status, body), status_code=status)


def _openai_error_event(status: int, body: Dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"error": body["error"]}).encode() + b"\n\n"


OPENAI = Envelope(lambda status, body: body, _openai_error_event, done=b"data: [DONE]\n\n")

_GONE = object()
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


async def _until_disconnect(request: Request) -> None:
    """Return once the HTTP client has gone away (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, awaitable: Awaitable) -> Any:
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


async def respond(request: Request, model_uid: str, call: InferenceCall,
                  envelope: Envelope = OPENAI, observe: Optional[Observer] = None,
                  media_type: Optional[str] = None) -> Response:
    """Run ``call`` on ``model_uid`` and answer the client, whole or streamed.

    ``media_type``: the answer is not JSON (audio, subtitles): a whole answer is sent
    with this type, a stream as the replica's raw bytes (no SSE framing, pings or end
    marker). Errors before the first byte are JSON in the dialect's shape either way."""
    gateway = gateway_of(request)
    call.body.setdefault("request_id", uuid.uuid4().hex)
    gateway.cap_max_tokens(call.body)
    try:
        if not call.stream:
            result = await unless_client_leaves(request, gateway.call(model_uid, call))
            if result is _GONE:
                return Response(status_code=499)
            if observe is not None:
                observe(result)
            return Response(result, media_type=media_type or "application/json")
        return await _streamed(request, gateway, model_uid, call, envelope, observe,
                               media_type)
    except Exception as exc:  # noqa: BLE001 - before any byte went out: a plain error answer
        return envelope.error_response(exc)


async def _streamed(request: Request, gateway: Gateway, model_uid: str, call: InferenceCall,
                    envelope: Envelope, observe: Optional[Observer],
                    media_type: Optional[str] = None) -> Response:
    batches = gateway.stream(model_uid, call).__aiter__()
    try:
        first = await unless_client_leaves(request, batches.__anext__())
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await batches.aclose()
        raise
    if first is _GONE:
        await batches.aclose()
        return Response(status_code=499)

    async def replay():
        yield first
        async for batch in batches:
            yield batch

    if media_type is not None:
        return StreamingResponse(_raw(replay(), batches), media_type=media_type,
                                 headers=_STREAM_HEADERS)
    events = sse_events(replay(), gateway.settings.sse_ping_attempts_seconds, envelope,
                        on_close=batches.aclose, observe=observe)
    return StreamingResponse(events, media_type="text/event-stream", headers=_STREAM_HEADERS)


async def _raw(chunks: AsyncIterator[bytes], batches: Any) -> AsyncIterator[bytes]:
    """A raw stream's bytes as they come. A failure after the first byte cannot be told
    in the body, so it is raised: the server cuts the connection and the client sees
    an incomplete answer rather than a short one that looks whole."""
    try:
        async for chunk in chunks:
            if chunk:
                yield chunk
    finally:
        await batches.aclose()
