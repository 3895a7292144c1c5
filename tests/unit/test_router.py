"""Replica routing: least outstanding, refresh on TTL, clear reasons when none can serve."""

import asyncio

import pytest

from xinference.api.router import ReplicaRouter
from xinference.errors import ModelUnavailableError


def replicas(*states, error=None):
    return {"model_type": "LLM", "status": "READY" if "READY" in states else states[0],
            "replicas": [{"replica_uid": f"m-{i}", "address": f"addr{i}", "status": s,
                          "error": error if s == "FAILED" else None}
                         for i, s in enumerate(states)]}


def make_router(info, calls=None, ttl=5.0):
    async def fetch(uid):
        if calls is not None:
            calls.append(uid)
        return info

    async def make_ref(address, uid):
        return (address, uid)
    return ReplicaRouter(fetch, make_ref, ttl=ttl)


def test_least_outstanding_replica_is_chosen():
    router = make_router(replicas("READY", "READY", "FAILED"))

    async def run():
        async with router.use("m") as first:
            async with router.use("m") as second:
                assert first.replica_uid != second.replica_uid
                assert {first.replica_uid, second.replica_uid} == {"m-0", "m-1"}
        assert router.outstanding("m") == 0
    asyncio.run(run())


def test_supervisor_asked_once_within_ttl():
    calls = []
    router = make_router(replicas("READY"), calls)

    async def run():
        for _ in range(5):
            await router.pick("m")
    asyncio.run(run())
    assert calls == ["m"]


def test_failed_model_reports_its_reason():
    router = make_router(replicas("FAILED", error="the model process was killed by SIGKILL"))
    with pytest.raises(ModelUnavailableError, match="SIGKILL"):
        asyncio.run(router.pick("m"))


def test_loading_model_says_so():
    router = make_router(replicas("LAUNCHING"))
    with pytest.raises(ModelUnavailableError, match="loading"):
        asyncio.run(router.pick("m"))


def test_refreshing_a_model_keeps_handles_and_dead_marks_of_a_prefixed_model():
    """Models ``m`` and ``m-2``: ``m`` losing its replicas must not touch ``m-2``'s state."""
    listed = {"m": ["m-0", "m-1"], "m-2": ["m-2-0", "m-2-1"]}
    refs_made = []

    async def fetch(uid):
        return {"model_type": "LLM", "status": "READY",
                "replicas": [{"replica_uid": r, "address": f"addr-{r}", "status": "READY"}
                             for r in listed[uid]]}

    async def make_ref(address, uid):
        refs_made.append(uid)
        return (address, uid)
    router = ReplicaRouter(fetch, make_ref, ttl=60.0)

    async def run():
        await router.replicas("m")
        dead = next(h for h in await router.replicas("m-2") if h.replica_uid == "m-2-0")
        router.mark_dead("m-2", dead)
        assert [h.replica_uid for h in await router.replicas("m-2")] == ["m-2-1"]
        listed["m"] = []
        router.forget("m")
        with pytest.raises(ModelUnavailableError):
            await router.pick("m")
        router.forget("m-2")
        assert [h.replica_uid for h in await router.replicas("m-2")] == ["m-2-1"]
    asyncio.run(run())
    assert refs_made.count("m-2-1") == 1 and refs_made.count("m-2-0") == 1
