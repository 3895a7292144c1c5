"""Error answers: status codes and OpenAI's body (plus ``detail``), never a 500 for a
mistake of the client's, and the ``openai`` SDK's exception classes on top of them."""

import openai
import pytest
from harness import Api

USER = [{"role": "user", "content": "hi"}]


def assert_openai_error(resp, status, error_type, param=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type and body["detail"] == error["message"]
    if param is not None:
        assert error["param"] == param
    assert "Traceback" not in resp.text
    return error["message"]


@pytest.mark.parametrize("body, param", [
    ({"model": "chat", "messages": []}, "messages"),
    ({"messages": USER}, "model"),
    ({"model": "chat", "messages": USER, "temperature": 7}, "temperature"),
    ({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"model": "chat", "messages": USER, "response_format": {"type": "yaml"}}, None),
])
async def test_validation_is_400_naming_the_field(api, body, param):
    resp = await api.http.post("/v1/chat/completions", json=body)
    message = assert_openai_error(resp, 400, "invalid_request_error", param)
    assert message.startswith("Invalid request: ")


async def test_malformed_json_is_400(api):
    resp = await api.http.post("/v1/chat/completions", content=b"{not json",
                               headers={"content-type": "application/json"})
    assert_openai_error(resp, 400, "invalid_request_error")


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "nope", "messages": USER}),
    ("/v1/embeddings", {"model": "nope", "input": "x"}),
    ("/v1/rerank", {"model": "nope", "query": "q", "documents": ["d"]}),
])
async def test_unknown_model_is_404(api, path, body):
    message = assert_openai_error(await api.http.post(path, json=body), 404,
                                  "not_found_error", "model")
    assert "'nope'" in message


async def test_unknown_path_is_404_in_the_same_shape(api):
    assert_openai_error(await api.http.get("/v1/nothing-here"), 404, "not_found_error")


@pytest.mark.parametrize("path, body, operation", [
    ("/v1/chat/completions", {"model": "embed", "messages": USER}, "chat"),
    ("/v1/chat/completions", {"model": "embed", "messages": USER, "stream": True}, "chat"),
    ("/v1/completions", {"model": "rank", "prompt": "x"}, "text completion"),
    ("/v1/embeddings", {"model": "chat", "input": "x"}, "embeddings"),
    ("/v1/rerank", {"model": "embed", "query": "q", "documents": ["d"]}, "rerank"),
])
async def test_operation_the_model_does_not_serve_is_400(api, path, body, operation):
    message = assert_openai_error(await api.http.post(path, json=body), 400,
                                  "invalid_request_error", "model")
    assert f"does not serve {operation}" in message and repr(body["model"]) in message


async def test_abort_on_a_model_that_cannot_abort_is_not_an_error(api):
    resp = await api.http.post("/v1/models/embed/requests/r1/abort")
    assert resp.status_code == 200 and resp.json() == {"msg": "not running", "aborted": False}
    resp = await api.http.post("/v1/models/chat/requests/r1/abort")
    assert resp.status_code == 200 and resp.json()["aborted"] is False


async def test_model_still_loading_is_503(api):
    api.cluster.models["chat"].replicas[0].status = "LAUNCHING"
    resp = await api.http.post("/v1/chat/completions", json={"model": "chat", "messages": USER})
    assert "still loading" in assert_openai_error(resp, 503, "model_unavailable")


async def test_failed_model_says_why(api):
    replica = api.cluster.models["chat"].replicas[0]
    replica.status, replica.error = "FAILED", "out of memory while loading"
    resp = await api.http.post("/v1/chat/completions", json={"model": "chat", "messages": USER})
    assert "out of memory" in assert_openai_error(resp, 503, "model_unavailable")


async def test_dead_replica_is_routed_around_then_503(cluster):
    model = cluster.launch("pair", replicas=2)
    model.replicas[0].dead = True
    async with Api.open(cluster) as api:
        for _ in range(3):
            out = await api.openai.chat.completions.create(model="pair", messages=USER)
            assert out.choices[0].message.content == "echo: hi"
        model.replicas[1].dead = True
        api.app.state.gateway.router.forget("pair")
        resp = await api.http.post("/v1/chat/completions",
                                   json={"model": "pair", "messages": USER})
    assert_openai_error(resp, 503, "model_unavailable")


async def test_sdk_raises_its_own_error_classes(api):
    with pytest.raises(openai.BadRequestError) as bad:
        await api.openai.embeddings.create(model="chat", input="x")
    assert "does not serve embeddings" in bad.value.message
    with pytest.raises(openai.NotFoundError):
        await api.openai.chat.completions.create(model="nope", messages=USER)
    with pytest.raises(openai.BadRequestError) as invalid:
        await api.openai.chat.completions.create(model="chat", messages=USER, n=99)
    assert invalid.value.body["param"] == "n"
