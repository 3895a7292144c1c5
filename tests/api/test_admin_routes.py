"""The management routes over the LocalCluster: list, describe, launch, replicas,
terminate, and the OpenAI model list the SDK reads."""

import asyncio


async def test_status_and_model_list(api):
    status = await api.http.get("/status")
    assert status.json()["status"] == "ok" and status.json()["workers"] == 1
    models = await api.openai.models.list()
    assert [m.id for m in models.data] == ["chat", "embed", "rank", "slow", "think"]
    assert {m.object for m in models.data} == {"model"}
    by_id = {m.id: m for m in models.data}
    assert by_id["embed"].model_type == "embedding" and by_id["chat"].status == "READY"


async def test_describe_and_replicas(api):
    described = (await api.http.get("/v1/models/rank")).json()
    assert described["model_type"] == "rerank" and described["replica"] == 1
    replicas = (await api.http.get("/v1/models/rank/replicas")).json()
    assert [r["replica_uid"] for r in replicas] == ["rank-0"]
    instances = (await api.http.get("/v1/models/instances", params={"model_uid": "chat"})).json()
    assert [m["id"] for m in instances] == ["chat"]


async def test_launch_serve_terminate(api):
    launched = await api.http.post("/v1/models", json={
        "model_name": "fake", "model_uid": "new", "model_engine": "fake", "replica": 2,
        "reasoning": True})
    assert launched.json()["model_uid"] == "new"
    out = await api.openai.chat.completions.create(
        model="new", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.reasoning_content
    assert (await api.http.delete("/v1/models/new")).status_code == 200
    gone = await api.http.post("/v1/chat/completions", json={
        "model": "new", "messages": [{"role": "user", "content": "hi"}]})
    assert gone.status_code == 404
    assert (await api.http.get("/v1/models/new")).status_code == 404


async def test_launch_twice_is_400_and_bad_launch_body_is_400(api):
    again = await api.http.post("/v1/models", json={"model_name": "fake", "model_uid": "chat"})
    assert again.status_code == 400 and "already running" in again.json()["detail"]
    bad = await api.http.post("/v1/models", json={"model_name": "fake", "replica": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "replica"


async def test_concurrent_requests_spread_over_replicas(api):
    model = api.cluster.launch("wide", replicas=3, delay_per_token=0.01)
    await asyncio.gather(*(api.openai.completions.create(model="wide", prompt="a b c")
                           for _ in range(6)))
    assert [len(replica.calls) for replica in model.replicas] == [2, 2, 2]


async def test_metrics_count_requests(api):
    await api.openai.chat.completions.create(model="chat",
                                             messages=[{"role": "user", "content": "x"}])
    text = (await api.http.get("/metrics")).text
    assert 'xinference_requests_total{endpoint="chat_completions",status="200"} 1.0' in text
