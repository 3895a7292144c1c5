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
