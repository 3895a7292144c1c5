"""Server-sent events, decoded once for both clients.

An event is one or more ``data:`` lines ended by a blank line; lines starting
with ``:`` are keep-alive comments; ``data: [DONE]`` ends the stream; an event
``{"error": {...}}`` is the server reporting a failure after the stream began.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterable, AsyncIterator, Iterable, Iterator, List, Optional

from .errors import XinferenceClientError, error_from_stream

DONE = "[DONE]"


class SSEDecoder:
    """Feed lines (without their line ending); complete events come back as dicts."""

    def __init__(self, action: str = "read the stream"):
        self._action = action
        self._data: List[str] = []
        self.done = False

    def feed(self, line: str) -> Optional[Any]:
        """Take one line; return the event it completes, if any (raises on error events)."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def finish(self) -> Optional[Any]:
        """The last event when the stream ends without a blank line after it."""
        return self._dispatch()

    def _dispatch(self) -> Optional[Any]:
        if not self._data or self.done:
            self._data = []
            return None
        payload = "\n".join(self._data)
        self._data = []
        if payload.strip() == DONE:
            self.done = True
            return None
        try:
            event = json.loads(payload)
        except ValueError:
            raise XinferenceClientError(
                f"the server sent a stream event that is not JSON: {payload[:200]!r}",
                action=self._action) from None
        if isinstance(event, dict) and event.get("error") is not None:
            self.done = True
            raise error_from_stream(event["error"], self._action)
        return event


def iter_events(lines: Iterable[str], action: str) -> Iterator[Any]:
    """Events of a stream of lines, until ``[DONE]`` or the end."""
    decoder = SSEDecoder(action)
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event
        if decoder.done:
            return
    event = decoder.finish()
    if event is not None:
        yield event


async def aiter_events(lines: AsyncIterable[str], action: str) -> AsyncIterator[Any]:
    """The async twin of :func:`iter_events` (same decoder)."""
    decoder = SSEDecoder(action)
    async for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event
        if decoder.done:
            return
    event = decoder.finish()
    if event is not None:
        yield event
