"""The Responses REST API in-process: the real app and routes, a replica served by
:class:`ReplicaService` on the fake engine, and the ``openai`` SDK over an ASGI transport."""

from __future__ import annotations

import asyncio
import pickle

import httpx2
import openai
import pytest

from xinference.api.app import create_app
from xinference.api.gateway import Gateway
from xinference.core.replica_service import ReplicaService
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.fake import FakeEngine
from xinference.settings import Settings

UID = "fake-llm"
TOOL = {"type": "function", "name": "lookup", "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}


class LocalGateway:
    """The gateway's calls, answered by one in-process replica (calls are pickled, as
    they are on the way to a model's process)."""

    cap_max_tokens = Gateway.cap_max_tokens

    def __init__(self, service: ReplicaService, settings: Settings):
        self.service = service
        self.settings = settings

    async def call(self, model_uid, call):
        return await self.service.answer(pickle.loads(pickle.dumps(call)))

    def stream(self, model_uid, call):
        return self.service.stream(pickle.loads(pickle.dumps(call)))


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
        app = create_app("127.0.0.1:1", cfg)
        app.state.gateway = LocalGateway(ReplicaService(self.engine), cfg)
        self.client = openai.AsyncOpenAI(
            base_url="http://test/v1", api_key="none", max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)))


def run(test, **settings):
    async def main():
        setup = Setup(**settings)
        async with setup.client:
            await test(setup)
    asyncio.run(main())


def test_create_retrieve_list_delete():
    async def test(s):
        first = await s.client.responses.create(model=UID, input="Hello there",
                                                instructions="Be brief.", metadata={"k": "v"})
        assert first.status == "completed" and first.output_text == "echo: Hello there"
        assert [i.type for i in first.output] == ["reasoning", "message"]
        assert first.usage.output_tokens == 3 and first.metadata == {"k": "v"}
        again = await s.client.responses.retrieve(first.id)
        assert again.model_dump() == first.model_dump()
        items = await s.client.responses.input_items.list(first.id)
        assert [i.type for i in items.data] == ["message"]
        assert items.data[0].content[0].text == "Hello there"
        await s.client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await s.client.responses.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            await s.client.responses.delete(first.id)
    run(test)


def test_previous_response_id_continues_the_conversation():
    async def test(s):
        first = await s.client.responses.create(model=UID, input="My name is Ada",
                                                instructions="Be brief.")
        second = await s.client.responses.create(model=UID, input="Who am I",
                                                 previous_response_id=first.id)
        assert second.output_text == "echo: Who am I"
        assert second.previous_response_id == first.id
        messages = s.requests[-1]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"] == "echo: My name is Ada"
        assert messages[1]["reasoning_content"] == "Thinking about the echo."
        third = await s.client.responses.create(model=UID, input="And now",
                                                previous_response_id=second.id)
        assert len(s.requests[-1]["messages"]) == 5 and third.status == "completed"
    run(test)


def test_streamed_response_is_stored_and_accumulated_by_the_sdk():
    async def test(s):
        async with s.client.responses.stream(model=UID, input="one two three") as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_response()
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert kinds[-1] == "response.completed"
        assert "response.reasoning_summary_text.delta" in kinds
        assert final.output_text == "echo: one two three"
        stored = await s.client.responses.retrieve(final.id)
        assert stored.output_text == final.output_text
        follow = await s.client.responses.create(model=UID, input="more",
                                                 previous_response_id=final.id)
        assert s.requests[-1]["messages"][1]["content"] == "echo: one two three"
        assert follow.status == "completed"
    run(test)


def test_function_call_round_trip():
    async def test(s):
        first = await s.client.responses.create(model=UID, input="ping", tools=[TOOL],
                                                tool_choice="required")
        (call,) = [i for i in first.output if i.type == "function_call"]
        assert call.name == "lookup" and call.arguments == '{"input": "ping"}'
        await s.client.responses.create(
            model=UID, previous_response_id=first.id, tools=[TOOL],
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "pong"}])
        messages = s.requests[-1]["messages"]
        assert messages[1]["tool_calls"][0]["id"] == call.call_id
        assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "pong"}
        async with s.client.responses.stream(model=UID, input="ping", tools=[TOOL],
                                             tool_choice="required") as stream:
            streamed = await stream.get_final_response()
        assert [i.type for i in streamed.output] == ["reasoning", "function_call"]
        assert streamed.output[1].arguments == '{"input": "ping"}'
    run(test)


def test_cut_by_max_output_tokens_is_incomplete_whole_and_streamed():
    async def test(s):
        whole = await s.client.responses.create(model=UID, input="a b c d e f",
                                                max_output_tokens=2)
        assert whole.status == "incomplete"
        assert whole.incomplete_details.reason == "max_output_tokens"
        events = [e async for e in await s.client.responses.create(
            model=UID, input="a b c d e f", max_output_tokens=2, stream=True)]
        assert events[-1].type == "response.incomplete"
        assert [e.sequence_number for e in events] == list(range(len(events)))
        stored = await s.client.responses.retrieve(events[-1].response.id)
        assert stored.status == "incomplete"
    run(test)


def test_errors_are_openai_shaped():
    async def test(s):
        with pytest.raises(openai.BadRequestError) as err:
            await s.client.responses.create(model=UID, input="x", previous_response_id="resp_no")
        assert err.value.code == "previous_response_not_found"
        with pytest.raises(openai.BadRequestError) as err:
            await s.client.responses.create(model=UID, input="x",
                                            tools=[{"type": "web_search"}])
        assert "web_search" in err.value.message
        with pytest.raises(openai.BadRequestError):
            await s.client.responses.create(model=UID, input="x", temperature=5)
        unstored = await s.client.responses.create(model=UID, input="x", store=False)
        with pytest.raises(openai.NotFoundError):
            await s.client.responses.retrieve(unstored.id)
    run(test)


def test_store_size_zero_keeps_nothing():
    async def test(s):
        first = await s.client.responses.create(model=UID, input="x")
        with pytest.raises(openai.BadRequestError):
            await s.client.responses.create(model=UID, input="y", previous_response_id=first.id)
    run(test, responses_store_size=0)


def test_failure_mid_stream_ends_with_an_error_event():
    from xinference.errors import ModelUnavailableError
    from xinference.model.llm.deltas import ChoiceDelta, Generation

    async def failing():
        yield ChoiceDelta(content="partial ")
        raise ModelUnavailableError("the model's process died")

    async def test(s):
        s.engine.start_chat = lambda req: Generation("r", 1, 1, failing())
        events = [e async for e in await s.client.responses.create(model=UID, input="x",
                                                                   stream=True)]
        assert events[-1].type == "error" and "died" in events[-1].message
        assert events[-1].code == "model_unavailable"
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert "response.completed" not in [e.type for e in events]
    run(test)
