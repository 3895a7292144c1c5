"""Server-sent events as they leave the gateway: ``data:`` lines, ``[DONE]``, one error
event when a stream fails after it started, and a plain error answer before it did."""

import asyncio
import json

from harness import Api, sse_data

USER = [{"role": "user", "content": "one two three"}]


async def test_every_event_is_a_data_line_and_the_stream_ends_with_done(api):
    resp = await api.http.post("/v1/chat/completions",
                               json={"model": "chat", "messages": USER, "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    frames = [f for f in resp.text.split("\n\n") if f]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames)
    data = sse_data(resp.text)
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    (replica,) = api.cluster.models["chat"].replicas
    assert replica.streams[0].destroyed


async def test_completions_stream_the_same_way(api):
    resp = await api.http.post("/v1/completions",
                               json={"model": "chat", "prompt": "a b", "stream": True})
    texts = [json.loads(d)["choices"][0]["text"] for d in sse_data(resp.text)[:-1]
             if json.loads(d)["choices"]]
    assert "".join(texts) == "echo: a b"


async def test_error_after_the_stream_started_is_one_error_event(cluster):
    cluster.models["slow"].replicas[0].fail_streams_after = 2
    async with Api.open(cluster) as api:
        resp = await api.http.post("/v1/chat/completions",
                                   json={"model": "slow", "messages": USER, "stream": True})
    assert resp.status_code == 200
    data = sse_data(resp.text)
    errors = [json.loads(d) for d in data if d != "[DONE]" and "error" in json.loads(d)]
    assert len(errors) == 1 and data[-1] == "[DONE]"
    error = errors[0]["error"]
    assert error["type"] == "model_unavailable" and "Traceback" not in error["message"]
    assert data.index(json.dumps(errors[0])) == len(data) - 2


async def test_error_before_the_first_event_is_a_plain_json_answer(api):
    resp = await api.http.post("/v1/chat/completions", json={
        "model": "chat", "messages": USER, "stream": True, "n": 0})
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"


async def test_abort_mid_stream_ends_it_with_an_error_event(api):
    (replica,) = api.cluster.models["slow"].replicas
    body = {"model": "slow", "stream": True, "request_id": "r-1",
            "messages": [{"role": "user", "content": " ".join("w" * 40)}]}
    streamed = asyncio.ensure_future(api.http.post("/v1/chat/completions", json=body))
    while not (replica.streams and replica.streams[0].sent):
        await asyncio.sleep(0.01)
    aborted = await api.http.post("/v1/models/slow/requests/r-1/abort")
    assert aborted.json() == {"msg": "aborted", "aborted": True}
    data = sse_data((await streamed).text)
    assert "aborted" in json.loads(data[-2])["error"]["message"] and data[-1] == "[DONE]"
    assert replica.engine.active_streams == 0 and replica.streams[0].destroyed


async def test_abort_before_the_first_event_is_a_plain_error(cluster):
    (replica,) = cluster.launch("slower", delay_per_token=0.3).replicas
    body = {"model": "slower", "stream": True, "request_id": "r-2", "messages": USER}
    async with Api.open(cluster) as api:
        streamed = asyncio.ensure_future(api.http.post("/v1/chat/completions", json=body))
        while not replica.engine.active_streams:
            await asyncio.sleep(0.001)
        await api.http.post("/v1/models/slower/requests/r-2/abort")
        resp = await streamed
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "request_aborted"


async def test_sdk_stream_of_a_failing_replica_raises(cluster):
    cluster.models["slow"].replicas[0].fail_streams_after = 1
    async with Api.open(cluster) as api:
        stream = await api.openai.chat.completions.create(model="slow", messages=USER,
                                                          stream=True)
        try:
            async for _ in stream:
                pass
        except Exception as exc:  # noqa: BLE001 - the SDK's APIError, whatever its version
            assert "not reachable" in str(exc)
        else:
            raise AssertionError("the SDK did not report the error event")
