"""The Python client (sync, async, and the official xinference-client) against a real server."""

import asyncio

import pytest

from xinference.client import (
    AsyncClient,
    ChatModelHandle,
    Client,
    EmbeddingModelHandle,
    XinferenceClientError,
)

from helpers import wait_until

from .conftest import DEFAULT_MODEL, model_ready

@pytest.fixture(scope="module")
def client(local_server):
    wait_until(lambda: model_ready(local_server.base_url, DEFAULT_MODEL), 120,
               "the default model", local_server)
    with Client(local_server.base_url) as c:
        yield c


def test_list_and_describe_the_default_model(client):
    models = client.list_models()
    entry = models[DEFAULT_MODEL]
    assert entry["status"] == "READY" and entry["model_type"] == "LLM"
    assert entry["model_engine"] == "llama.cpp"
    desc = client.describe_model(DEFAULT_MODEL)
    assert "chat" in desc["model_ability"]
    assert [r["status"] for r in desc["replicas"]] == ["READY"]


def test_chat_plain_and_streaming(client):
    handle = client.get_model(DEFAULT_MODEL)
    assert isinstance(handle, ChatModelHandle)
    answer = handle.chat([{"role": "user", "content": "Say hello to me."}],
                         generate_config={"max_tokens": 32, "temperature": 0})
    text = answer["choices"][0]["message"]["content"]
    assert text.strip() and answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] > 0
    chunks = list(handle.chat("Say hello.", generate_config={"stream": True, "max_tokens": 16}))
    assert len(chunks) > 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    streamed = "".join(c["choices"][0]["delta"].get("content") or ""
                       for c in chunks if c["choices"])
    assert streamed.strip()


def test_generate_continues_a_prompt(client):
    result = client.get_model(DEFAULT_MODEL).generate("Once upon a time",
                                                      {"max_tokens": 12, "temperature": 0})
    assert result["choices"][0]["text"].strip()
    assert result["usage"]["completion_tokens"] > 0


GREEDY = {"max_tokens": 16, "temperature": 0}


def test_async_client_matches_the_sync_one(client, local_server):
    async def run():
        async with AsyncClient(local_server.base_url) as aclient:
            models = await aclient.list_models()
            handle = await aclient.get_model(DEFAULT_MODEL)
            plain = await handle.chat("Name a colour.", generate_config=GREEDY)
            stream = await handle.chat("Say hi.", generate_config={"stream": True,
                                                                   "max_tokens": 12})
            chunks = [c async for c in stream]
            return models, plain, chunks

    models, plain, chunks = asyncio.run(run())
    assert set(models) == set(client.list_models())
    assert len(chunks) > 1 and chunks[0]["object"] == "chat.completion.chunk"
    sync_plain = client.get_model(DEFAULT_MODEL).chat("Name a colour.", generate_config=GREEDY)
    assert plain["choices"][0]["message"] == sync_plain["choices"][0]["message"]


def test_server_errors_reach_the_caller_with_status_and_message(client):
    with pytest.raises(XinferenceClientError) as info:
        client.describe_model("no-such-uid")
    assert info.value.status_code == 404 and "no-such-uid" in info.value.message
    with pytest.raises(RuntimeError, match="no-such-family"):
        client.launch_model("no-such-family")
    handle = client.get_model(DEFAULT_MODEL)
    with pytest.raises(XinferenceClientError) as bad:
        handle.chat("hi", generate_config={"stream": True, "max_tokens": 0})
    assert bad.value.status_code == 400 and "max_tokens" in str(bad.value)


def test_abort_ends_a_running_stream_with_an_error(client):
    handle = client.get_model(DEFAULT_MODEL)
    stream = handle.chat("Tell me a long story about a dragon.", generate_config={
        "stream": True, "max_tokens": 400, "request_id": "e2e-abort-1"})
    received = [next(stream), next(stream)]
    assert client.abort_request(DEFAULT_MODEL, "e2e-abort-1")["aborted"] is True
    with pytest.raises(XinferenceClientError, match="aborted"):
        for chunk in stream:
            received.append(chunk)
    assert len(received) < 400


def test_registrations_and_engines(client):
    names = [r["model_name"] for r in client.list_model_registrations("LLM")]
    assert DEFAULT_MODEL in names
    engines = client.query_engine_by_model_name(DEFAULT_MODEL)
    assert "llama.cpp" in engines
    everything = client.query_engine_by_model_name(DEFAULT_MODEL, include_unavailable=True)
    unusable = [e for rows in everything.values() for e in rows if e.get("available") is False]
    assert unusable and all(e.get("reason") for e in unusable)


def test_embedding_model_launch_use_terminate(client):
    uid = client.launch_model("all-MiniLM-L6-v2", model_type="embedding", model_uid="e2e-emb",
                              n_threads=1)
    try:
        assert uid == "e2e-emb"
        handle = client.get_model(uid)
        assert isinstance(handle, EmbeddingModelHandle)
        data = handle.create_embedding(["a cat", "a kitten", "a truck"])["data"]
        cat, kitten, truck = (d["embedding"] for d in data)
        assert len(cat) == 384

        def dot(a, b):
            return sum(x * y for x, y in zip(a, b))

        assert dot(cat, kitten) > dot(cat, truck)
    finally:
        client.terminate_model(uid)
    assert uid not in client.list_models()
    with pytest.raises(XinferenceClientError):
        client.describe_model(uid)


def test_the_official_xinference_client_works_against_our_server(local_server):
    official = pytest.importorskip("xinference_client")
    ref = official.RESTfulClient(local_server.base_url)
    assert DEFAULT_MODEL in ref.list_models()
    answer = ref.get_model(DEFAULT_MODEL).chat(
        messages=[{"role": "user", "content": "Hello!"}], generate_config={"max_tokens": 12})
    assert answer["choices"][0]["message"]["content"].strip()
