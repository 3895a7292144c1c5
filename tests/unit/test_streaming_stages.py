"""ready_batches and sse_frames (model actor side) and sse_events (gateway side)."""

import asyncio
import json

import pytest

from xinference.api.serve import OPENAI, Envelope
from xinference.api.sse import sse_events
from xinference.core.streaming import ready_batches, sse_frames
from xinference.errors import InvalidRequestError


async def numbers(n, delay=0.0, fail_at=None, closed=None):
    try:
        for i in range(n):
            if fail_at == i:
                raise InvalidRequestError("bad item")
            await asyncio.sleep(delay)
            yield i
    finally:
        if closed is not None:
            closed.append(True)


def collect(agen):
    async def run():
        return [x async for x in agen]
    return asyncio.run(run())


def test_ready_batches_keeps_order_and_groups_ready_items():
    async def run():
        out = []
        async for batch in ready_batches(numbers(50)):
            out.append(batch)
            await asyncio.sleep(0.01)  # a slow consumer gets several items per pull
        return out
    batches = asyncio.run(run())
    assert [x for b in batches for x in b] == list(range(50))
    assert len(batches) < 50


def test_ready_batches_raises_after_delivering_items():
    async def run():
        seen = []
        with pytest.raises(InvalidRequestError):
            async for batch in ready_batches(numbers(5, fail_at=3)):
                seen.extend(batch)
        return seen
    assert asyncio.run(run()) == [0, 1, 2]


def test_closing_ready_batches_closes_the_source():
    closed = []

    async def run():
        gen = ready_batches(numbers(1000, delay=0.001, closed=closed))
        await gen.__anext__()
        await gen.aclose()
    asyncio.run(run())
    assert closed == [True]


async def batches_of(items, delay=0.0, named=False):
    for item in items:
        await asyncio.sleep(delay)
        yield sse_frames([item], named)


DONE, PING = OPENAI.done, OPENAI.ping


def test_sse_frames_name_events_for_the_dialects_that_do():
    assert sse_frames([{"a": 1}], named=False) == b'data: {"a":1}\n\n'
    assert sse_frames([{"type": "ping"}, {"type": "message_stop"}], named=True) == (
        b'event: ping\ndata: {"type":"ping"}\n\nevent: message_stop\n'
        b'data: {"type":"message_stop"}\n\n')


def test_sse_passes_frames_and_ends_with_the_dialects_done():
    seen = []
    events = collect(sse_events(batches_of([{"a": 1}, {"b": 2}]), 10, OPENAI,
                                observe=seen.append))
    assert events[-1] == DONE and seen == events[:-1]
    assert json.loads(events[0][len(b"data: "):]) == {"a": 1}
    quiet = Envelope(OPENAI.error_body, OPENAI.error_event, ping=b"event: ping\n\n", done=b"")
    named = collect(sse_events(batches_of([{"type": "x"}], named=True), 10, quiet))
    assert named == [b'event: x\ndata: {"type":"x"}\n\n']


def test_sse_pings_when_quiet():
    events = collect(sse_events(batches_of([{"a": 1}], delay=0.25), 0.05, OPENAI))
    assert PING in events and events[-1] == DONE


def test_sse_error_mid_stream_is_one_error_event():
    async def failing():
        yield sse_frames([{"a": 1}], False)
        raise InvalidRequestError("too long", param="messages")
    events = collect(sse_events(failing(), 10, OPENAI))
    error = json.loads(events[1][len(b"data: "):])["error"]
    assert error["message"] == "too long" and error["param"] == "messages"
    assert events[-1] == DONE
