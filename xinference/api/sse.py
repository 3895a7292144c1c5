"""Server-sent events: chunks from a replica to ``data:`` lines for the client.

A replica sends each batch of chunks as JSON lines (bytes, see
``ModelActor.chat_stream_json``); a list of chunk dicts works too.

A stream ends with ``data: [DONE]``. An error after the stream started is sent
as one ``data: {"error": ...}`` event (no traceback). When no chunk has gone
out for ``ping_seconds``, a ``: ping`` comment keeps proxies from closing the
connection. If the client goes away, closing this generator cancels the
replica's stream, which stops the generation in the engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, List, Union

from .errors import classify

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def encode_event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def encode_batch(batch: Union[bytes, List[Any]]) -> bytes:
    """Events for one batch: JSON lines (one event per line) or a list of chunk dicts."""
    if isinstance(batch, (bytes, bytearray)):
        if not batch:
            return b""
        return b"data: " + bytes(batch).replace(b"\n", b"\n\ndata: ") + b"\n\n"
    return b"".join(encode_event(chunk) for chunk in batch)


async def sse_events(batches: AsyncIterator[Union[bytes, List[Any]]], ping_seconds: float,
                     on_close=None) -> AsyncIterator[bytes]:
    """Encode each chunk of each batch as an event; ping when quiet; always end cleanly."""
    iterator = batches.__aiter__()
    pending = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=ping_seconds)
            if not done:
                yield PING
                continue
            task, pending = pending, None
            try:
                batch = task.result()
            except StopAsyncIteration:
                break
            events = encode_batch(batch)
            if events:
                yield events
        yield DONE
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - becomes one error event
        _, body = classify(exc)
        yield encode_event({"error": body["error"]})
        yield DONE
    finally:
        if pending is not None:
            pending.cancel()
        if on_close is not None:
            try:
                await on_close()
            except Exception:  # noqa: BLE001
                logger.debug("closing a stream failed", exc_info=True)
