"""Anthropic Messages and OpenAI Responses through a real xinference-local, with the official
``anthropic`` and ``openai`` SDKs, on SmolLM2 served by both CPU engines (llama.cpp and
transformers); and OpenAI's ``json_object`` mode on both."""

import json

import anthropic
import httpx
import openai
import pytest

from .conftest import DEFAULT_MODEL

WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
FN_WEATHER = {"type": "function", "name": "get_weather", "description": WEATHER["description"],
              "parameters": WEATHER["input_schema"]}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def claude(local_server):
    with anthropic.Anthropic(base_url=f"{local_server.base_url}/anthropic", api_key="any",
                             max_retries=0, timeout=180) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def oai(local_server):
    with openai.OpenAI(base_url=f"{local_server.base_url}/v1", api_key="any", max_retries=0,
                       timeout=180) as sdk:
        yield sdk


def test_anthropic_create_stream_and_count(claude, cpu_llm):
    message = claude.messages.create(model=cpu_llm, max_tokens=20, messages=ASK,
                                     system="Answer briefly.", extra_body={"temperature": 0})
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens") and message.usage.output_tokens > 0
    with claude.messages.stream(model=cpu_llm, max_tokens=20, messages=ASK,
                                system="Answer briefly.", extra_body={"temperature": 0}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == message.content[0].text
    counted = claude.messages.count_tokens(model=cpu_llm, messages=ASK, system="Answer briefly.")
    usage = message.usage
    assert counted.input_tokens == usage.input_tokens + (usage.cache_read_input_tokens or 0)


def test_anthropic_tool_use_round_trip(claude, cpu_llm):
    asked = claude.messages.create(model=cpu_llm, max_tokens=64, messages=ASK, tools=[WEATHER],
                                   tool_choice={"type": "tool", "name": "get_weather"},
                                   extra_body={"temperature": 0})
    [use] = [b for b in asked.content if b.type == "tool_use"]
    assert asked.stop_reason == "tool_use" and use.name == "get_weather"
    assert isinstance(use.input, dict) and isinstance(use.input.get("city"), str)
    history = ASK + [{"role": "assistant", "content": asked.content},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": "Sunny, 24 degrees"}]}]
    answer = claude.messages.create(model=cpu_llm, max_tokens=24, messages=history,
                                    tools=[WEATHER], extra_body={"temperature": 0})
    prompt = lambda u: u.input_tokens + (u.cache_read_input_tokens or 0)  # noqa: E731
    assert answer.content and prompt(answer.usage) > prompt(asked.usage)


def test_responses_create_stream_and_follow_up(oai, cpu_llm):
    first = oai.responses.create(model=cpu_llm, instructions="Answer briefly.",
                                 input="Name one colour of the sky.", max_output_tokens=16,
                                 temperature=0)
    assert first.status in ("completed", "incomplete") and first.output_text.strip()
    assert first.usage.output_tokens > 0
    events = list(oai.responses.create(model=cpu_llm, instructions="Answer briefly.",
                                       input="Name one colour of the sky.", stream=True,
                                       max_output_tokens=16, temperature=0))
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-1] == f"response.{first.status}"
    assert events[-1].response.output_text == first.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    again = oai.responses.create(model=cpu_llm, previous_response_id=first.id,
                                 input="And one more?", max_output_tokens=16, temperature=0)
    assert again.previous_response_id == first.id
    assert again.usage.input_tokens > first.usage.input_tokens
    assert oai.responses.retrieve(first.id).id == first.id
    oai.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(first.id)


def test_responses_function_tool_and_its_output(oai, cpu_llm):
    called = oai.responses.create(model=cpu_llm, input="What is the weather in Paris?",
                                  tools=[FN_WEATHER], max_output_tokens=64, temperature=0,
                                  tool_choice={"type": "function", "name": "get_weather"})
    [call] = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    answer = oai.responses.create(
        model=cpu_llm, previous_response_id=called.id, tools=[FN_WEATHER],
        max_output_tokens=24, temperature=0,
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": "Sunny, 24 degrees"}])
    assert answer.status in ("completed", "incomplete") and answer.output


def test_openai_json_object_mode(oai, cpu_llm):
    out = oai.chat.completions.create(
        model=cpu_llm, temperature=0, max_tokens=200, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe your favourite food in JSON."}])
    assert out.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(out.choices[0].message.content), dict)


def test_anthropic_names_the_stop_sequence_on_transformers(claude, smollm2_tf):
    message = claude.messages.create(
        model=smollm2_tf, max_tokens=48, stop_sequences=["ocean", "sea"],
        messages=[{"role": "user", "content": "Write one sentence about whales."}],
        extra_body={"temperature": 0})
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "ocean")
    assert message.content[0].text.endswith("of the ")


def test_anthropic_stop_sequence_cuts_the_text_on_llama_cpp(claude):
    message = claude.messages.create(model=DEFAULT_MODEL, max_tokens=48,
                                     stop_sequences=["whale", "Whale"],
                                     messages=[{"role": "user",
                                                "content": "Write one sentence about whales."}],
                                     extra_body={"temperature": 0})
    assert "whale" not in message.content[0].text.lower()
    assert message.stop_reason == "end_turn" and message.stop_sequence is None


def test_anthropic_models_and_errors(claude, local_server):
    assert DEFAULT_MODEL in [m.id for m in claude.models.list().data]
    assert claude.models.retrieve(DEFAULT_MODEL).type == "model"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=4, messages=ASK)
    bare = httpx.post(f"{local_server.base_url}/v1/messages", timeout=30,
                      json={"model": DEFAULT_MODEL, "messages": ASK})
    assert bare.status_code == 400 and bare.json()["error"]["type"] == "invalid_request_error"
