"""Stream stages shared by the model actor and the gateway."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, List

_END = object()


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
        except (asyncio.CancelledError, Exception):
            pass
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
