"""The Anthropic REST API in-process: the real app and routes, a replica served by
:class:`ReplicaService` on the fake engine, and the ``anthropic`` SDK over an ASGI transport."""

from __future__ import annotations

import asyncio
import json
import pickle

import anthropic
import httpx2
import pytest

from xinference.api.app import create_app
from xinference.api.gateway import Gateway
from xinference.core.replica_service import ReplicaService
from xinference.errors import InvalidRequestError, ModelNotFoundError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.fake import FakeEngine
from xinference.model.llm.deltas import ChoiceDelta, Generation
from xinference.settings import Settings

UID = "fake-llm"
TOOL = {"name": "lookup", "description": "Look a word up",
        "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}}}
LISTED = [{"id": UID, "model_type": "LLM", "model_name": "fake", "created": 1767225600,
           "context_length": 2048},
          {"id": "older-llm", "model_type": "LLM", "model_name": "fake", "created": 1700000000},
          {"id": "emb", "model_type": "embedding", "model_name": "e", "created": 1800000000}]


class Supervisor:
    async def list_models(self):
        return LISTED


class LocalGateway:
    """The gateway's calls, answered by one in-process replica (calls are pickled, as
    they are on the way to a model's process)."""

    cap_max_tokens = Gateway.cap_max_tokens

    def __init__(self, service: ReplicaService, settings: Settings):
        self.service, self.settings = service, settings

    async def supervisor(self):
        return Supervisor()

    def _check(self, model_uid):
        if model_uid != UID:
            raise ModelNotFoundError(f"Model not found: {model_uid!r}", param="model")

    async def call(self, model_uid, call):
        self._check(model_uid)
        return await self.service.answer(pickle.loads(pickle.dumps(call)))

    async def stream(self, model_uid, call):
        self._check(model_uid)
        async for batch in self.service.stream(pickle.loads(pickle.dumps(call))):
            yield batch


class Setup:
    def __init__(self, **settings):
        self.engine = FakeEngine(EngineConfig(model_uid=UID, model_type="LLM",
                                              model_name="fake", engine="fake",
                                              model_format="", model_path="",
                                              options={"reasoning": True}))
        self.engine.load()
        self.requests = []
        start = self.engine.start_chat
        self.engine.start_chat = lambda req: (self.requests.append(req), start(req))[1]
        cfg = Settings(**settings)
        self.app = create_app("127.0.0.1:1", cfg)
        self.app.state.gateway = LocalGateway(ReplicaService(self.engine), cfg)
        self.http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app),
                                       base_url="http://test")
        self.client = anthropic.AsyncAnthropic(base_url="http://test/anthropic", api_key="key",
                                               max_retries=0, http_client=self.http)


def run(test, **settings):
    async def main():
        setup = Setup(**settings)
        async with setup.client:
            await test(setup)
    asyncio.run(main())


def hello(**extra):
    return dict(model=UID, max_tokens=32, messages=[{"role": "user", "content": "Hello there"}],
                **extra)


def test_create_message_with_thinking_and_usage():
    async def test(s):
        message = await s.client.messages.create(**hello(system="Be brief.",
                                                         extra_body={"top_k": 5}))
        assert [b.type for b in message.content] == ["thinking", "text"]
        assert message.content[0].thinking == "Thinking about the echo."
        assert message.content[1].text == "echo: Hello there"
        assert message.stop_reason == "end_turn" and message.model == UID
        assert message.id.startswith("msg_") and message.usage.output_tokens == 3
        assert s.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
        assert s.requests[-1]["top_k"] == 5 and s.requests[-1]["request_id"]
    run(test)


def test_tool_use_round_trip():
    async def test(s):
        first = await s.client.messages.create(**hello(tools=[TOOL],
                                                       tool_choice={"type": "any"}))
        call = first.content[-1]
        assert first.stop_reason == "tool_use" and call.type == "tool_use"
        assert call.id.startswith("toolu_") and call.input == {"input": "Hello there"}
        history = [{"role": "user", "content": "Hello there"},
                   {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                     for b in first.content]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                 "content": "a greeting"}]}]
        await s.client.messages.create(model=UID, max_tokens=32, tools=[TOOL],
                                       messages=history)
        sent = s.requests[-1]["messages"]
        assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"]
        assert sent[1]["tool_calls"][0]["id"] == "call_" + call.id[len("toolu_"):]
        assert sent[1]["reasoning_content"] == "Thinking about the echo."
    run(test)


def test_stream_with_the_sdk():
    async def test(s):
        async with s.client.messages.stream(**hello()) as stream:
            texts = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
        assert "".join(texts) == "echo: Hello there" and len(texts) == 3
        assert [b.type for b in final.content] == ["thinking", "text"]
        assert final.usage.input_tokens == 2 and final.usage.output_tokens == 3
        assert final.stop_reason == "end_turn"
    run(test)


def test_raw_stream_frames_name_their_events():
    async def test(s):
        async with s.http.stream("POST", "/v1/messages", json=hello(stream=True),
                                 headers={"x-api-key": "anything"}) as resp:
            body = (await resp.aread()).decode()
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in body.split("\n\n") if f.strip()]
        names = [f.split("\n")[0] for f in frames]
        assert names[0] == "event: message_start" and names[-1] == "event: message_stop"
        for frame in frames:
            name, data = frame.split("\n")
            assert json.loads(data[len("data: "):])["type"] == name[len("event: "):]
        assert "[DONE]" not in body
    run(test)


def test_count_tokens():
    async def test(s):
        counted = await s.client.messages.count_tokens(
            model=UID, messages=[{"role": "user", "content": "one two three"}], system="four")
        assert counted.input_tokens == 4
        bare = await s.http.post("/v1/messages/count_tokens",
                                 json={"model": UID, "messages": [{"role": "user",
                                                                   "content": "a b"}]})
        assert bare.json() == {"input_tokens": 2}
    run(test)


def test_validation_errors_have_anthropic_shape():
    async def test(s):
        for body in ({"model": UID, "messages": [{"role": "user", "content": "x"}]},
                     {"model": UID, "max_tokens": 0, "messages": []}, [1, 2]):
            resp = await s.http.post("/anthropic/v1/messages", json=body)
            assert resp.status_code == 400
            error = resp.json()
            assert error["type"] == "error"
            assert error["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in error["error"]["message"] or "object" in error["error"]["message"]
        document = [{"role": "user", "content": [{"type": "document", "source": {}}]}]
        with pytest.raises(anthropic.BadRequestError) as err:
            await s.client.messages.create(**{**hello(), "messages": document})
        assert "'document'" in err.value.body["error"]["message"]
    run(test)


def test_unknown_model_is_a_not_found_error():
    async def test(s):
        with pytest.raises(anthropic.NotFoundError) as err:
            await s.client.messages.create(**{**hello(), "model": "nope"})
        assert err.value.body["error"]["type"] == "not_found_error"
        with pytest.raises(anthropic.NotFoundError):
            async with s.client.messages.stream(**{**hello(), "model": "nope"}) as stream:
                await stream.get_final_message()
    run(test)


def test_refusals_are_400s():
    async def test(s):
        with pytest.raises(anthropic.BadRequestError) as err:
            await s.client.messages.create(**hello(
                tools=[TOOL], tool_choice={"type": "tool", "name": "missing"}))
        assert "'missing'" in err.value.body["error"]["message"]

        def refuse(request):
            raise InvalidRequestError("The chat template rejected the messages", "messages")
        s.engine.start_chat = refuse
        for streamed in (False, True):
            with pytest.raises(anthropic.BadRequestError) as err:
                await s.client.messages.create(**hello(stream=streamed))
            assert err.value.body == {"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "The chat template rejected the messages"}}
    run(test)


def test_error_after_the_stream_started_is_an_error_event():
    async def test(s):
        def failing(request):
            async def deltas():
                yield ChoiceDelta(content="partial")
                raise RuntimeError("engine fell over")
            return Generation("r", 0, 1, deltas())
        s.engine.start_chat = failing
        async with s.http.stream("POST", "/anthropic/v1/messages",
                                 json=hello(stream=True)) as resp:
            body = (await resp.aread()).decode()
        frames = [f for f in body.split("\n\n") if f.strip()]
        assert frames[-1].startswith("event: error\ndata: ")
        error = json.loads(frames[-1].split("data: ", 1)[1])
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
        assert "engine fell over" in error["error"]["message"]
        assert "message_stop" not in body
        with pytest.raises(anthropic.APIStatusError) as err:
            async with s.client.messages.stream(**hello()) as stream:
                await stream.get_final_message()
        assert "engine fell over" in str(err.value)
    run(test)


def test_model_list_and_lookup():
    async def test(s):
        page = await s.client.models.list()
        assert [m.id for m in page.data] == [UID, "older-llm"]
        first = page.data[0]
        assert first.type == "model" and first.display_name == "fake"
        assert first.created_at.year == 2026
        raw = (await s.http.get("/anthropic/v1/models", params={"limit": 1})).json()
        assert raw["has_more"] is True and raw["first_id"] == raw["last_id"] == UID
        assert raw["data"][0]["max_input_tokens"] == 2048
        rest = (await s.http.get("/anthropic/v1/models", params={"after_id": UID})).json()
        assert [m["id"] for m in rest["data"]] == ["older-llm"] and rest["has_more"] is False
        before = (await s.http.get("/anthropic/v1/models",
                                   params={"before_id": "older-llm"})).json()
        assert [m["id"] for m in before["data"]] == [UID]
        assert (await s.client.models.retrieve(UID)).id == UID
        with pytest.raises(anthropic.NotFoundError) as err:
            await s.client.models.retrieve("emb")
        assert err.value.body["error"]["type"] == "not_found_error"
        bad = await s.http.get("/anthropic/v1/models", params={"limit": 0})
        assert bad.status_code == 400 and bad.json()["type"] == "error"
    run(test)
