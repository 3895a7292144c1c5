"""The gateway without xoscar: retry before the first token, draining, dead marks."""

import asyncio

import pytest

from xinference.api.gateway import Gateway
from xinference.api.router import ReplicaRouter, replica_gone
from xinference.errors import InvalidRequestError, ModelUnavailableError
from xinference.model.operations import InferenceCall, Operation
from xinference.settings import Settings


def _chat(body):
    return InferenceCall(Operation.CHAT, body)


class ServerClosed(Exception):
    """Named like xoscar's error: the router recognises it by name."""


class FakeIterator:
    def __init__(self, batches, fail_at=None, exc=None):
        self.batches = list(batches)
        self.fail_at = fail_at
        self.exc = exc
        self.pulled = 0
        self.destroyed = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.pulled == self.fail_at:
            raise self.exc
        if self.pulled >= len(self.batches):
            raise StopAsyncIteration
        self.pulled += 1
        return self.batches[self.pulled - 1]

    async def destroy(self):
        self.destroyed = True


class FakeReplica:
    """A model actor: ``dead`` fails every call as a killed process does."""

    def __init__(self, name, dead=False, fail_at=None):
        self.name = name
        self.dead = dead
        self.fail_at = fail_at
        self.calls = 0
        self.iterators = []

    async def serve(self, call):
        request = call.body
        self.calls += 1
        if self.dead:
            raise ConnectionRefusedError(f"[Errno 111] Connect call failed {self.name}")
        if request.get("bad"):
            raise InvalidRequestError("bad request", param="bad")
        return {"served_by": self.name}

    async def serve_stream(self, call):
        self.calls += 1
        if self.dead == "on-open":
            raise ConnectionRefusedError("refused")
        exc = ServerClosed("Remote server closed") if self.dead or self.fail_at else None
        iterator = FakeIterator([[self.name, 1], [self.name, 2]],
                                0 if self.dead else self.fail_at, exc)
        self.iterators.append(iterator)
        return iterator


def make_gateway(replicas, listing=None):
    listing = listing if listing is not None else {
        "model_type": "LLM", "status": "READY",
        "replicas": [{"replica_uid": f"m-{i}", "address": r.name, "status": "READY"}
                     for i, r in enumerate(replicas)]}
    by_address = {r.name: r for r in replicas}

    async def fetch(uid):
        return listing

    async def make_ref(address, uid):
        return by_address[address]
    gateway = Gateway("unused:1", Settings())
    gateway.router = ReplicaRouter(fetch, make_ref)
    return gateway, listing


def test_unary_call_on_a_dead_replica_is_served_by_another():
    dead, alive = FakeReplica("a", dead=True), FakeReplica("b")
    gateway, _ = make_gateway([dead, alive])

    async def run():
        answers = [await gateway.call("m", _chat({})) for _ in range(4)]
        assert answers == [{"served_by": "b"}] * 4
    asyncio.run(run())
    assert dead.calls == 1 and alive.calls == 4
    assert gateway.router.outstanding("m") == 0


def test_request_errors_are_not_retried():
    first, second = FakeReplica("a"), FakeReplica("b")
    gateway, _ = make_gateway([first, second])
    with pytest.raises(InvalidRequestError):
        asyncio.run(gateway.call("m", _chat({"bad": True})))
    assert first.calls + second.calls == 1


def test_every_replica_dead_is_a_503_that_says_why():
    gateway, _ = make_gateway([FakeReplica("a", dead=True), FakeReplica("b", dead=True)])
    with pytest.raises(ModelUnavailableError, match="cannot be reached"):
        asyncio.run(gateway.call("m", _chat({})))


def test_stream_whose_first_pull_fails_is_reopened_on_another_replica():
    dead, alive = FakeReplica("a", dead=True), FakeReplica("b")
    gateway, _ = make_gateway([dead, alive])

    async def run():
        return [batch async for batch in gateway.stream("m", _chat({}))]
    assert asyncio.run(run()) == [["b", 1], ["b", 2]]
    assert dead.iterators[0].destroyed and alive.iterators[0].destroyed
    assert gateway.router.outstanding("m") == 0


def test_stream_that_cannot_even_open_is_reopened_too():
    gateway, _ = make_gateway([FakeReplica("a", dead="on-open"), FakeReplica("b")])

    async def run():
        return [batch async for batch in gateway.stream("m", _chat({}))]
    assert asyncio.run(run())[0] == ["b", 1]


def test_stream_that_already_sent_a_chunk_is_not_replayed():
    first = FakeReplica("a", fail_at=1)
    gateway, _ = make_gateway([first, FakeReplica("b")])
    got = []

    async def run():
        async for batch in gateway.stream("m", _chat({})):
            got.append(batch)
    with pytest.raises(ServerClosed):
        asyncio.run(run())
    assert got == [["a", 1]]


def test_draining_replica_gets_nothing_new_and_drain_waits_for_its_requests():
    first, second = FakeReplica("a"), FakeReplica("b")
    gateway, _ = make_gateway([first, second])

    async def run():
        async with gateway.router.use("m") as busy:
            assert busy.replica_uid == "m-0"
            drain = asyncio.ensure_future(gateway.drain("m", "m-0", timeout=5))
            await asyncio.sleep(0.1)
            assert not drain.done()
            for _ in range(3):
                assert (await gateway.call("m", _chat({})))["served_by"] == "b"
        assert await asyncio.wait_for(drain, 2) == 0
        assert await gateway.drain("m", "m-1", timeout=0.01) == 0
    asyncio.run(run())
    assert first.calls == 0


def test_dead_mark_lasts_until_the_supervisor_lists_the_replica_elsewhere():
    old, other, moved = FakeReplica("a", dead=True), FakeReplica("b"), FakeReplica("c")
    gateway, listing = make_gateway([old, other, moved])
    listing["replicas"] = listing["replicas"][:2]

    async def run():
        await gateway.call("m", _chat({}))
        assert old.calls <= 1
        old.dead = False  # same address, still listed: stays avoided
        for _ in range(3):
            assert (await gateway.call("m", _chat({})))["served_by"] == "b"
        listing["replicas"][0] = {"replica_uid": "m-0", "address": "c", "status": "READY"}
        gateway.router.forget("m")
        served = {(await gateway.call("m", _chat({})))["served_by"] for _ in range(4)}
        assert served == {"c"}
    asyncio.run(run())
    assert old.calls == 1


def test_replica_gone_recognises_connection_errors_only():
    assert replica_gone(ConnectionRefusedError()) and replica_gone(ServerClosed())
    assert not replica_gone(InvalidRequestError("x")) and not replica_gone(ValueError())
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = ConnectionResetError()
    assert replica_gone(wrapped)
