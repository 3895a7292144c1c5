"""The Anthropic Messages API of a real xinference-local, with the real ``anthropic`` SDK,
on SmolLM2-135M served by llama.cpp."""

import anthropic
import httpx
import pytest

from .conftest import DEFAULT_MODEL

QUESTION = [{"role": "user", "content": "Write one sentence about whales."}]


@pytest.fixture(scope="module")
def client(local_server):
    with anthropic.Anthropic(base_url=f"{local_server.base_url}/anthropic", api_key="any",
                             max_retries=0, timeout=120) as sdk:
        yield sdk


def test_message_reads_as_english_with_usage(client):
    message = client.messages.create(model=DEFAULT_MODEL, max_tokens=24, messages=QUESTION,
                                     extra_body={"temperature": 0},
                                     system="You are a helpful assistant.")
    assert message.role == "assistant" and message.model == DEFAULT_MODEL
    [block] = message.content
    assert block.type == "text" and len(block.text.split()) >= 3
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 24
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 10


def test_stream_gives_the_same_blocks(client):
    with client.messages.stream(model=DEFAULT_MODEL, max_tokens=16, messages=QUESTION,
                                extra_body={"temperature": 0}) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0


def test_stop_sequence_cuts_the_text(client):
    message = client.messages.create(model=DEFAULT_MODEL, max_tokens=48,
                                     extra_body={"temperature": 0},
                                     messages=QUESTION, stop_sequences=["whale", "Whale"])
    assert "whale" not in message.content[0].text.lower()
    assert message.stop_reason == "end_turn"


def test_count_tokens_matches_the_prompt(client):
    counted = client.messages.count_tokens(model=DEFAULT_MODEL, messages=QUESTION)
    message = client.messages.create(model=DEFAULT_MODEL, max_tokens=1, messages=QUESTION)
    usage = message.usage
    assert counted.input_tokens == usage.input_tokens + (usage.cache_read_input_tokens or 0)


def test_models_and_errors(client, local_server):
    assert DEFAULT_MODEL in [m.id for m in client.models.list().data]
    assert client.models.retrieve(DEFAULT_MODEL).type == "model"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=4, messages=QUESTION)
    bare = httpx.post(f"{local_server.base_url}/v1/messages", timeout=30,
                      json={"model": DEFAULT_MODEL, "messages": QUESTION})
    assert bare.status_code == 400 and bare.json()["error"]["type"] == "invalid_request_error"
