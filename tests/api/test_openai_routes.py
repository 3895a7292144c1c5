"""The OpenAI routes through the official ``openai`` SDK: chat, completions, embeddings and
rerank, whole and streamed, with the shapes the SDK parses."""

import base64
import struct

import pytest


async def test_chat_whole(api):
    out = await api.openai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello there"}])
    assert out.object == "chat.completion" and out.model == "chat"
    (choice,) = out.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    assert out.usage.prompt_tokens == 2 and out.usage.completion_tokens == 3
    assert out.usage.total_tokens == 5


async def test_chat_streamed_with_usage(api):
    stream = await api.openai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "one two three"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


async def test_chat_n_stop_and_max_tokens(api):
    out = await api.openai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "a b c d"}], n=2, max_tokens=2)
    assert [c.index for c in out.choices] == [0, 1]
    assert {c.message.content for c in out.choices} == {"echo: a "}
    assert {c.finish_reason for c in out.choices} == {"length"}
    stopped = await api.openai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "a b c d"}], stop=[" c"])
    assert stopped.choices[0].message.content == "echo: a b"


async def test_completions_whole_and_streamed(api):
    out = await api.openai.completions.create(model="chat", prompt="once upon")
    assert out.object == "text_completion" and out.choices[0].text == "echo: once upon"
    stream = await api.openai.completions.create(model="chat", prompt="once upon", stream=True)
    pieces = [c.choices[0].text async for c in stream if c.choices]
    assert "".join(pieces) == "echo: once upon" and len(pieces) > 1


async def test_embeddings_float_and_base64(api):
    out = await api.openai.embeddings.create(model="embed", input=["hello", "world"])
    assert [d.index for d in out.data] == [0, 1]
    vector = out.data[0].embedding
    assert len(vector) == 8 and abs(sum(v * v for v in vector) - 1) < 1e-6
    assert out.usage.prompt_tokens == 2
    raw = await api.http.post("/v1/embeddings", json={
        "model": "embed", "input": "hello", "encoding_format": "base64"})
    packed = base64.b64decode(raw.json()["data"][0]["embedding"])
    assert struct.unpack("<8f", packed) == pytest.approx(vector, abs=1e-6)


async def test_embeddings_dimensions(api):
    out = await api.openai.embeddings.create(model="embed", input="x", dimensions=4)
    assert len(out.data[0].embedding) == 4


async def test_rerank(api):
    docs = ["the cat sat", "a dog ran", "the cat ran away"]
    resp = await api.http.post("/v1/rerank", json={
        "model": "rank", "query": "the cat", "documents": docs, "top_n": 2,
        "return_documents": True, "return_len": True})
    assert resp.status_code == 200
    body = resp.json()
    assert [r["index"] for r in body["results"]] == [0, 2]
    assert body["results"][0]["document"] == {"text": "the cat sat"}
    assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]
    assert body["meta"]["tokens"]["input_tokens"] > 0


async def test_calls_reach_the_replica_as_typed_calls(api):
    await api.openai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], extra_body={"top_k": 3})
    (call,) = api.cluster.models["chat"].replicas[0].calls
    assert call.operation.value == "chat" and not call.stream
    assert call.body["top_k"] == 3 and call.request_id
