"""DynamicBatcher with plain Python functions as the engine (no torch)."""

import asyncio
import threading
import time

import pytest

from xinference.model.batching import DynamicBatcher, length_groups, run_grouped
from xinference.settings import Settings


class Recorder:
    """A blocking 'engine' that squares numbers and records each batch and its thread."""

    def __init__(self, delay=0.0, poison=None):
        self.batches = []
        self.threads = set()
        self.delay = delay
        self.poison = poison

    def __call__(self, items):
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        if self.poison is not None and self.poison in items:
            raise ValueError(f"cannot handle {self.poison}")
        return [x * x for x in items]


def _run(batcher, requests):
    async def go():
        return await asyncio.gather(*[batcher.submit(r) for r in requests], return_exceptions=True)

    return asyncio.run(go())


def test_concurrent_requests_merge_and_split_back_in_order():
    engine = Recorder()
    batcher = DynamicBatcher(engine, max_batch_size=16, max_wait=0.05)
    requests = [list(range(i * 10, i * 10 + 1 + i % 4)) for i in range(20)]
    try:
        results = _run(batcher, requests)
    finally:
        batcher.close()
    assert results == [[x * x for x in r] for r in requests]
    total = sum(len(r) for r in requests)
    assert all(len(b) <= 16 for b in engine.batches)
    assert sum(len(b) for b in engine.batches) == total
    assert len(engine.batches) == -(-total // 16)
    assert [x for b in engine.batches for x in b] == [x for r in requests for x in r]
    assert len(engine.threads) == 1 and threading.get_ident() not in engine.threads


def test_request_larger_than_a_batch_is_spread_over_batches():
    engine = Recorder()
    batcher = DynamicBatcher(engine, max_batch_size=4, max_wait=0.0)
    try:
        assert _run(batcher, [list(range(10))]) == [[x * x for x in range(10)]]
    finally:
        batcher.close()
    assert [len(b) for b in engine.batches] == [4, 4, 2]


def test_failing_item_fails_its_request_alone():
    engine = Recorder(poison=13)
    batcher = DynamicBatcher(engine, max_batch_size=64, max_wait=0.05)
    requests = [[1, 2], [12, 13, 14], [3], [4, 5, 6]]
    try:
        results = _run(batcher, requests)
    finally:
        batcher.close()
    assert isinstance(results[1], ValueError) and "13" in str(results[1])
    assert results[0] == [1, 4] and results[2] == [9] and results[3] == [16, 25, 36]
    assert engine.batches[0] == [1, 2, 12, 13, 14, 3, 4, 5, 6]
    assert engine.batches[1:] == [[1, 2], [12, 13, 14], [3], [4, 5, 6]]


def test_wrong_result_count_is_an_error_for_that_request():
    batcher = DynamicBatcher(lambda items: items[:-1], max_batch_size=8, max_wait=0.0)
    try:
        results = _run(batcher, [[1, 2]])
    finally:
        batcher.close()
    assert isinstance(results[0], RuntimeError) and "1 results for 2 items" in str(results[0])


def test_event_loop_is_not_blocked_while_engine_runs():
    engine = Recorder(delay=0.3)
    batcher = DynamicBatcher(engine, max_batch_size=8, max_wait=0.0)

    async def go():
        ticks = 0
        task = asyncio.ensure_future(batcher.submit([1, 2, 3]))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.01)
        return ticks, task.result()

    try:
        ticks, result = asyncio.run(go())
    finally:
        batcher.close()
    assert result == [1, 4, 9]
    assert ticks >= 10


def test_wait_window_gathers_late_arrivals():
    engine = Recorder()
    batcher = DynamicBatcher(engine, max_batch_size=100, max_wait=0.2)

    async def go():
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(batcher.submit([2]))
        return await first, await second

    try:
        assert asyncio.run(go()) == ([1], [4])
    finally:
        batcher.close()
    assert engine.batches == [[1, 2]]


def test_full_batch_does_not_wait_for_the_window():
    engine = Recorder()
    batcher = DynamicBatcher(engine, max_batch_size=4, max_wait=5.0)
    start = time.perf_counter()
    try:
        assert _run(batcher, [[1, 2], [3, 4]]) == [[1, 4], [9, 16]]
    finally:
        batcher.close()
    assert time.perf_counter() - start < 2.0


def test_cancelled_request_is_skipped_and_closed_batcher_refuses():
    engine = Recorder(delay=0.2)
    batcher = DynamicBatcher(engine, max_batch_size=2, max_wait=0.0)

    async def go():
        busy = asyncio.ensure_future(batcher.submit([1, 2]))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(batcher.submit([7, 8]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        later = await batcher.submit([3])
        return await busy, later

    try:
        assert asyncio.run(go()) == ([1, 4], [9])
    finally:
        batcher.close()
    assert [7, 8] not in engine.batches
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(batcher.submit([1]))


def test_defaults_come_from_settings(monkeypatch):
    import xinference.settings as settings_module

    fake = Settings(batch_size=5, batch_interval=0.25)
    monkeypatch.setattr(settings_module, "get_settings", lambda refresh=False: fake)
    batcher = DynamicBatcher(lambda items: items)
    assert (batcher.max_batch_size, batcher.max_wait) == (5, 0.25)
    assert Settings.from_env({"XINFERENCE_BATCH_SIZE": "7"}).batch_size == 7
    assert Settings().batch_size == 32 and Settings().batch_interval == 0.003


def test_length_groups_bound_padding():
    lengths = [5, 100, 7, 98, 6, 50]
    groups = length_groups(lengths, budget=200)
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 200
    assert groups == [[1, 3], [5, 2, 4, 0]]
    assert length_groups([300], budget=10) == [[0]]
    items = ["a" * n for n in lengths]
    assert run_grouped(lambda xs: [len(x) for x in xs], items, lengths, 200) == lengths


@pytest.fixture
def batch_size_env(monkeypatch):
    from xinference.settings import get_settings

    def set_size(value):
        monkeypatch.setenv("XINFERENCE_BATCH_SIZE", str(value))
        get_settings(refresh=True)

    yield set_size
    monkeypatch.undo()
    get_settings(refresh=True)


def test_encoder_batcher_window_follows_batch_size_setting_and_options(batch_size_env):
    from xinference.model.batching import ENCODER_GATHER_FACTOR, encoder_batcher

    batch_size_env(8)
    assert encoder_batcher(Recorder(), {}, "e").max_batch_size == 8 * ENCODER_GATHER_FACTOR
    explicit = encoder_batcher(Recorder(), {"batch_size": "5", "batch_interval": 0.5}, "e")
    assert (explicit.max_batch_size, explicit.max_wait) == (5, 0.5)


@pytest.mark.parametrize("options", [{"batch_size": 0}, {"batch_size": "many"},
                                     {"batch_interval": -1}])
def test_encoder_batcher_rejects_bad_options_as_a_bad_request(options):
    from xinference.errors import InvalidRequestError
    from xinference.model.batching import encoder_batcher

    with pytest.raises(InvalidRequestError, match="batch"):
        encoder_batcher(Recorder(), options, "e")
