"""Vision chat on a real xinference-local, through the official ``openai`` SDK.

A tiny random Llava (tests/tiny_vision.py) is registered as a custom LLM with the
``vision`` ability from its local folder and launched on transformers; the llama.cpp
fixtures (a tiny Gemma 3 GGUF and its projector) are registered the same way and
launched with ``mmproj``. SmolLM2, which has no ``vision``, answers an image with a 400.
"""

import base64
import json

import anthropic
import openai
import pytest
import tiny_vision as tv
from helpers import wait_until

from .conftest import DEFAULT_MODEL, model_ready
from .llm_helpers import _TESTS

FIXTURES = _TESTS / "fixtures" / "vision"
LLAVA, GEMMA = "e2e-tiny-llava", "e2e-tiny-gemma3"
RED = tv.data_uri(tv.png_bytes((220, 20, 20)))
QUESTION = "What is in the picture?"


def _family(name, spec):
    return {"version": 2, "model_name": name, "model_lang": ["en"],
            "model_ability": ["chat", "vision"], "context_length": 512,
            "model_description": "a tiny random vision model", "model_specs": [spec]}


def _register_and_launch(api, local_server, family, launch):
    resp = api.post("/v1/model_registrations/LLM", json={"model": json.dumps(family),
                                                         "persist": False})
    assert resp.status_code == 200, resp.text
    resp = api.post("/v1/models", json={"model_name": family["model_name"],
                                        "model_uid": family["model_name"], **launch})
    assert resp.status_code == 200, resp.text
    wait_until(lambda: model_ready(local_server.base_url, family["model_name"]), 240,
               family["model_name"], local_server)
    return family["model_name"]


@pytest.fixture(scope="module")
def vision_models(api, local_server, tmp_path_factory):
    """The tiny Llava on transformers and the tiny Gemma 3 on llama.cpp, custom models
    launched from their local files; terminated and unregistered at the end."""
    folder = tv.build_tiny_llava(str(tmp_path_factory.mktemp("tiny-llava")))
    launched = []
    try:
        launched.append(_register_and_launch(api, local_server, _family(LLAVA, {
            "model_format": "pytorch", "model_size_in_billions": "0_01",
            "quantizations": ["none"], "model_uri": f"file://{folder}"}),
            {"model_engine": "Transformers"}))
        launched.append(_register_and_launch(api, local_server, _family(GEMMA, {
            "model_format": "ggufv2", "model_size_in_billions": "0_01", "quantizations": ["F16"],
            "model_uri": f"file://{FIXTURES}", "model_file_name_template": "tiny-gemma3.gguf"}),
            {"model_engine": "llama.cpp", "mmproj": "mmproj-tiny-gemma3.gguf", "n_ctx": 1024,
             "n_parallel": 1, "n_threads": 1}))
        yield launched
    finally:
        for name in (LLAVA, GEMMA):
            api.delete(f"/v1/models/{name}")
            api.delete(f"/v1/model_registrations/LLM/{name}")


@pytest.fixture(scope="module")
def oai(local_server):
    client = openai.OpenAI(base_url=f"{local_server.base_url}/v1", api_key="none",
                           max_retries=0, timeout=120)
    yield client
    client.close()


@pytest.mark.parametrize("uid", [LLAVA, GEMMA], ids=["transformers", "llama.cpp"])
def test_a_chat_with_an_image_part_whole_and_streamed(oai, vision_models, uid):
    parts = [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": RED}}]
    answer = oai.chat.completions.create(model=uid, max_tokens=4, temperature=0,
                                         messages=[{"role": "user", "content": parts}])
    text_only = oai.chat.completions.create(model=uid, max_tokens=4, temperature=0,
                                            messages=[{"role": "user", "content": QUESTION}])
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens > 0
    assert answer.usage.prompt_tokens > text_only.usage.prompt_tokens
    if uid == LLAVA:
        assert answer.usage.prompt_tokens >= text_only.usage.prompt_tokens + tv.IMAGE_TOKENS
    chunks = list(oai.chat.completions.create(
        model=uid, max_tokens=4, temperature=0, stream=True,
        stream_options={"include_usage": True}, messages=[{"role": "user", "content": parts}]))
    assert chunks[-1].usage.prompt_tokens == answer.usage.prompt_tokens


@pytest.mark.parametrize("uid", [LLAVA, GEMMA], ids=["transformers", "llama.cpp"])
def test_anthropic_image_blocks_and_responses_input_images(oai, local_server, vision_models,
                                                           uid):
    data = base64.b64encode(tv.png_bytes((220, 20, 20))).decode()
    with anthropic.Anthropic(base_url=f"{local_server.base_url}/anthropic", api_key="any",
                             max_retries=0) as client:
        message = client.messages.create(model=uid, max_tokens=4, messages=[{
            "role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": data}},
                {"type": "text", "text": QUESTION}]}])
        counted = client.messages.count_tokens(model=uid, messages=[{
            "role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": data}},
                {"type": "text", "text": QUESTION}]}])
    assert message.usage.output_tokens > 0 and message.stop_reason in ("end_turn", "max_tokens")
    assert counted.input_tokens == message.usage.input_tokens
    response = oai.responses.create(model=uid, max_output_tokens=4, store=False, input=[{
        "role": "user", "content": [{"type": "input_image", "image_url": RED},
                                    {"type": "input_text", "text": QUESTION}]}])
    assert response.usage.input_tokens == message.usage.input_tokens


def test_a_model_without_vision_answers_400(oai, local_server):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=DEFAULT_MODEL, max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                         {"type": "image_url", "image_url": {"url": RED}}]}])
    assert info.value.status_code == 400
    assert "cannot read images" in info.value.message and "'vision'" in info.value.message


def test_urls_of_hosts_not_allowed_are_400(oai, vision_models):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=LLAVA, max_tokens=4, messages=[
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}]}])
    assert "XINFERENCE_IMAGE_FETCH_HOSTS" in info.value.message
