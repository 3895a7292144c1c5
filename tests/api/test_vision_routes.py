"""Images in chats, through the real app and the replica's serving layer (fake engine):
refused with a 400 in each dialect's shape when the model's family has no ``vision``
ability or a limit is passed, handed to a vision model's engine as data URIs, and
fetched from an allowed host (a real http.server on 127.0.0.1)."""

import base64
import functools
import http.server
import threading

import anthropic
import openai
import pytest

from xinference.settings import get_settings

def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (3, 2), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


def look(url, text="What is in the picture?"):
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.fixture
def vision(cluster):
    """Model ``chat`` as a vision model: its family has the ``vision`` ability."""
    model = cluster.models["chat"]
    for replica in model.replicas:
        replica.engine.config.family = {"model_ability": ["chat", "vision"]}
    return model


@pytest.fixture
def images_site(tmp_path, monkeypatch):
    """An http.server on 127.0.0.1 serving ``cat.png``, allowed in XINFERENCE_IMAGE_FETCH_HOSTS
    (the replica reads it from its settings)."""
    (tmp_path / "cat.png").write_bytes(PNG)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("XINFERENCE_IMAGE_FETCH_HOSTS", host)
    get_settings(refresh=True)
    yield f"http://{host}"
    httpd.shutdown()
    httpd.server_close()
    monkeypatch.delenv("XINFERENCE_IMAGE_FETCH_HOSTS")
    get_settings(refresh=True)


async def test_a_vision_model_gets_the_image_part_as_sent(api, vision):
    answer = await api.openai.chat.completions.create(model="chat", messages=look(PNG_URI))
    assert answer.choices[0].message.content
    sent = vision.requests[-1]["messages"][0]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": PNG_URI}}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_without_vision_answers_400_in_openai_shape(api, stream):
    resp = await api.http.post("/v1/chat/completions", json={
        "model": "chat", "messages": look(PNG_URI), "stream": stream})
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"
    assert "cannot read images" in error["message"] and "'vision'" in error["message"]
    assert api.cluster.models["chat"].requests == []


async def test_anthropic_image_blocks_on_a_model_without_vision(api):
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(PNG).decode()}}
    with pytest.raises(anthropic.BadRequestError) as info:
        await api.anthropic().messages.create(model="chat", max_tokens=10, messages=[
            {"role": "user", "content": [block, {"type": "text", "text": "What is it?"}]}])
    body = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "cannot read images" in body["error"]["message"]


async def test_anthropic_image_blocks_reach_a_vision_model_as_image_url_parts(api, vision):
    data = base64.b64encode(PNG).decode()
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": data}}
    await api.anthropic().messages.create(model="chat", max_tokens=10, messages=[
        {"role": "user", "content": [block, {"type": "text", "text": "What is it?"}]}])
    sent = vision.requests[-1]["messages"][0]["content"]
    assert sent[0] == {"type": "image_url", "image_url": {"url": PNG_URI}}


async def test_responses_input_image_on_a_model_without_vision(api):
    with pytest.raises(openai.BadRequestError) as info:
        await api.openai.responses.create(model="chat", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What is it?"},
            {"type": "input_image", "image_url": PNG_URI}]}])
    assert "cannot read images" in info.value.message
    assert "input[0].content[1]" in info.value.message


async def test_too_many_images_is_400(api, vision):
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": PNG_URI}}] * 9}]
    resp = await api.http.post("/v1/chat/completions", json={"model": "chat",
                                                             "messages": messages})
    assert resp.status_code == 400
    assert "XINFERENCE_IMAGE_MAX_COUNT" in resp.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_urls_are_refused_unless_the_host_is_allowed(api, vision, stream):
    resp = await api.http.post("/v1/chat/completions", json={
        "model": "chat", "messages": look("http://127.0.0.1:9/cat.png"), "stream": stream})
    assert resp.status_code == 400
    assert "XINFERENCE_IMAGE_FETCH_HOSTS" in resp.json()["error"]["message"]
    assert vision.requests == []


async def test_an_allowed_url_reaches_the_engine_as_a_data_uri(api, vision, images_site):
    url = f"{images_site}/cat.png"
    answer = await api.openai.chat.completions.create(model="chat", messages=look(url))
    assert answer.choices[0].finish_reason == "stop"
    assert vision.requests[-1]["messages"][0]["content"][1]["image_url"]["url"] == PNG_URI
    stream = await api.openai.chat.completions.create(model="chat", messages=look(url),
                                                      stream=True)
    assert [chunk async for chunk in stream]
    assert vision.requests[-1]["messages"][0]["content"][1]["image_url"]["url"] == PNG_URI


async def test_a_failed_fetch_of_a_streamed_chat_is_a_plain_400(api, vision, images_site):
    resp = await api.http.post("/v1/chat/completions", json={
        "model": "chat", "messages": look(f"{images_site}/nothing.png"), "stream": True})
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    assert "HTTP 404" in resp.json()["error"]["message"]
