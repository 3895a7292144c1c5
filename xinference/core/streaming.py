"""Stream stages shared by the model actor and the gateway, and the bytes they carry.

Answers cross from a replica to the gateway already encoded: whole answers as
JSON bytes, streams as server-sent-event frames. The gateway sends them on as
they are instead of decoding nested dicts from the RPC and encoding them again
(an RPC carrying bytes costs both processes about a quarter less CPU than one
carrying a chunk dict).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Dict, Iterable, List

try:  # optional: encodes floats (embeddings) about 10x faster than the json module
    import orjson
except ImportError:  # pragma: no cover - depends on the installation
    orjson = None

_END = object()


def json_bytes(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON: the bytes Starlette's ``JSONResponse`` would send.

    With orjson installed it does the encoding (NaN and infinities become null
    there, where the json module refuses them); what orjson cannot encode falls
    back to the json module.
    """
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            pass
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def sse_frames(events: Iterable[Dict[str, Any]], named: bool) -> bytes:
    """Server-sent events for ``events``: ``data:`` lines, preceded by ``event: <type>``
    lines when ``named`` (the Anthropic and Responses dialects name every event)."""
    out = []
    for event in events:
        if named:
            out.append(b"event: " + str(event.get("type", "message")).encode() + b"\n")
        out.append(b"data: " + json_bytes(event) + b"\n\n")
    return b"".join(out)


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


async def ready_batches(source: AsyncIterator[Any]) -> AsyncIterator[List[Any]]:
    """Re-yield ``source`` as lists of every item ready at the time of asking.

    The source runs ahead in its own task, so a slow consumer (one RPC per
    yielded list) gets all chunks produced meanwhile in one list instead of
    paying one round trip per chunk. Closing this generator closes the source.
    """
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
            queue.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            queue.put_nowait(_Failure(exc))

    task = asyncio.create_task(pump())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            items = [x for x in batch if x is not _END and not isinstance(x, _Failure)]
            if items:
                yield items
            for marker in batch:
                if marker is _END:
                    return
                if isinstance(marker, _Failure):
                    raise marker.exc
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
