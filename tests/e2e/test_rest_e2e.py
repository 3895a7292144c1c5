"""REST and OpenAI SDK against a real xinference-local with SmolLM2 on llama.cpp."""

import importlib.util
import json
import os
import signal

import openai
import pytest

from helpers import wait_until

from .conftest import DEFAULT_MODEL

ENGLISH = {"the", "a", "is", "and", "of", "to", "in", "it", "you", "i", "are", "with", "for",
           "that", "this", "hello", "paris", "capital", "france"}


def _words(text: str):
    return {w.strip(".,!?;:'\"").lower() for w in text.split()}


@pytest.fixture(scope="module")
def oai(local_server):
    client = openai.OpenAI(base_url=f"{local_server.base_url}/v1", api_key="not-needed")
    yield client
    client.close()


def test_chat_answer_reads_as_english(api):
    resp = api.post("/v1/chat/completions", json={
        "model": DEFAULT_MODEL, "max_tokens": 40, "temperature": 0,
        "messages": [{"role": "user", "content": "Write one sentence about whales."}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    text = body["choices"][0]["message"]["content"]
    assert body["object"] == "chat.completion" and body["model"] == DEFAULT_MODEL
    assert _words(text) & ENGLISH, text
    assert body["usage"]["completion_tokens"] > 0


def test_sse_stream_has_many_chunks_and_done(api):
    with api.stream("POST", "/v1/chat/completions", json={
            "model": DEFAULT_MODEL, "max_tokens": 24, "stream": True,
            "messages": [{"role": "user", "content": "Say hello."}]}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) > 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"


def test_openai_sdk_chat_plain_and_stream(oai):
    answer = oai.chat.completions.create(
        model=DEFAULT_MODEL, max_tokens=30, temperature=0,
        messages=[{"role": "user", "content": "Write one sentence about whales."}])
    assert _words(answer.choices[0].message.content) & ENGLISH
    pieces = [c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model=DEFAULT_MODEL, max_tokens=30, stream=True,
        messages=[{"role": "user", "content": "Write one sentence about whales."}]) if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert _words("".join(pieces)) & ENGLISH


def test_openai_sdk_lists_models(oai):
    ids = [m.id for m in oai.models.list().data]
    assert DEFAULT_MODEL in ids


def test_unknown_model_uid_is_404(api, oai):
    resp = api.post("/v1/chat/completions", json={
        "model": "no-such-uid", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404
    assert "no-such-uid" in resp.json()["error"]["message"]
    assert api.get("/v1/models/no-such-uid").status_code == 404
    assert api.delete("/v1/models/no-such-uid").status_code == 404
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-uid",
                                    messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("body, field", [
    ({"model": DEFAULT_MODEL}, "messages"),
    ({"model": DEFAULT_MODEL, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 9},
     "temperature"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
])
def test_invalid_body_is_400_naming_the_field(api, body, field):
    resp = api.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert "Traceback" not in resp.text


def test_malformed_json_is_400(api):
    resp = api.post("/v1/chat/completions", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_launch_unknown_name_is_404_with_the_name(api):
    resp = api.post("/v1/models", json={"model_name": "no-such-model", "model_type": "LLM"})
    assert resp.status_code == 404
    assert "no-such-model" in resp.json()["detail"]


def test_launch_duplicate_uid_is_400(api):
    resp = api.post("/v1/models", json={"model_name": DEFAULT_MODEL, "model_uid": DEFAULT_MODEL,
                                        "model_engine": "llama.cpp"})
    assert resp.status_code == 400
    assert "already running" in resp.json()["detail"]


def test_engines_and_registrations(api):
    engines = api.get(f"/v1/engines/{DEFAULT_MODEL}").json()
    assert "llama.cpp" in engines
    assert engines["llama.cpp"][0]["quantizations"] == ["Q4_1"]
    full = api.get(f"/v1/engines/{DEFAULT_MODEL}", params={"all": "true"}).json()
    assert "CUDA" in full["vLLM"][0]["reason"] or "format" in full["vLLM"][0]["reason"]
    names = [r["model_name"] for r in api.get("/v1/model_registrations/LLM").json()]
    assert DEFAULT_MODEL in names
    assert api.get("/status").json()["status"] == "ok"


def test_killed_model_process_is_restarted_and_the_server_keeps_serving(api):
    resp = api.post("/v1/models", json={"model_name": DEFAULT_MODEL, "model_uid": "doomed",
                                        "model_engine": "fake"})
    assert resp.status_code == 200, resp.text
    pid = api.get("/v1/models/doomed").json()["replicas"][0]["pid"]
    assert api.post("/v1/chat/completions", json={
        "model": "doomed", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    os.kill(pid, signal.SIGKILL)

    def restarted():
        (replica,) = api.get("/v1/models/doomed/replicas").json()
        return replica["status"] == "READY" and replica["pid"] != pid
    wait_until(restarted, 30, "the replica to be restarted")
    (replica,) = api.get("/v1/models/doomed/replicas").json()
    assert replica["restarts"] == 1 and "SIGKILL" in replica["last_failure"]
    answer = api.post("/v1/chat/completions", json={
        "model": "doomed", "messages": [{"role": "user", "content": "hi again"}]})
    assert answer.status_code == 200, answer.text
    ok = api.post("/v1/chat/completions", json={
        "model": DEFAULT_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200
    assert api.delete("/v1/models/doomed").status_code == 200


def _loads_torch(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "libtorch" in maps.read()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or not os.path.exists("/proc"),
                    reason="needs torch installed (else nothing could load it) and /proc")
def test_server_and_llama_cpp_model_processes_keep_torch_out(api, local_server):
    replica_pid = api.get(f"/v1/models/{DEFAULT_MODEL}").json()["replicas"][0]["pid"]
    assert not _loads_torch(local_server.process.pid)
    assert not _loads_torch(replica_pid)
