"""Server-sent events from a replica's stream to the client.

A replica sends each batch of events already framed (``data: ...`` lines, with
``event:`` lines for the dialects that name their events), so they go out as
they are. An :class:`~xinference.api.serve.Envelope` says how the dialect ends
a stream (OpenAI's ``data: [DONE]``), keeps it alive when no event has gone out
for ``ping_seconds``, and reports an error after the stream started (one event,
no traceback). If the client goes away, closing this generator cancels the
replica's stream, which stops the generation in the engine.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable, Optional

from .errors import classify

logger = logging.getLogger(__name__)


async def sse_events(batches: AsyncIterator[bytes], ping_seconds: float, envelope: Any,
                     on_close: Optional[Callable] = None,
                     observe: Optional[Callable[[bytes], None]] = None) -> AsyncIterator[bytes]:
    """Each batch as it comes; pings when quiet; the dialect's end or error event."""
    iterator = batches.__aiter__()
    pending = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=ping_seconds)
            if not done:
                yield envelope.ping
                continue
            task, pending = pending, None
            try:
                batch = task.result()
            except StopAsyncIteration:
                break
            if batch:
                if observe is not None:
                    observe(batch)
                yield batch
        if envelope.done:
            yield envelope.done
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - becomes one error event
        status, body = classify(exc)
        yield envelope.error_event(status, body)
        if envelope.done:
            yield envelope.done
    finally:
        if pending is not None:
            pending.cancel()
        if on_close is not None:
            try:
                await on_close()
            except Exception:  # noqa: BLE001
                logger.debug("closing a stream failed", exc_info=True)
