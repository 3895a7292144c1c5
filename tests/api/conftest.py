"""Fixtures of the in-process API tier: a LocalCluster with one model of each type, and
an :class:`~harness.Api` on it (the real app, an httpx client and an ``openai`` client).

Models: ``chat`` (LLM), ``think`` (LLM that reasons first), ``slow`` (LLM, 20 ms a word),
``embed`` (embedding), ``rank`` (rerank), all on the fake engine.
"""

import pytest
from harness import Api, LocalCluster


@pytest.fixture
def cluster() -> LocalCluster:
    cluster = LocalCluster()
    cluster.launch("chat")
    cluster.launch("think", reasoning=True)
    cluster.launch("slow", delay_per_token=0.02)
    cluster.launch("embed", "embedding")
    cluster.launch("rank", "rerank")
    return cluster


@pytest.fixture
async def api(cluster):
    async with Api.open(cluster) as api:
        yield api
