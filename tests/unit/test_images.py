"""Images in chat requests (xinference.model.llm.images): finding them in every dialect,
the vision refusal, the limits, and fetching from a real http.server on 127.0.0.1."""

import asyncio
import base64
import http.server
import threading
import time

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.engines.base import EngineConfig
from xinference.model.llm import images
from xinference.model.llm.images import ImagePolicy
from xinference.model.operations import Dialect, InferenceCall, Operation
from xinference.settings import Settings

def _png(size=(4, 3)) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
VISION = ["chat", "vision"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", ctype="image/png", length=True, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for name, value in headers:
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        routes = {
            "/cat.png": lambda: self._send(200, PNG),
            "/sniffed": lambda: self._send(200, PNG, ctype="application/octet-stream"),
            "/page": lambda: self._send(200, b"<html></html>", ctype="text/html"),
            "/missing": lambda: self._send(404, b"no"),
            "/moved": lambda: self._send(302, headers=[("Location", "/cat.png")]),
            "/big": lambda: self._send(200, PNG + b"\x00" * 5000),
            "/big-unsized": lambda: self._send(200, PNG + b"\x00" * 5000, length=False),
        }
        if self.path == "/slow":
            time.sleep(1.5)
            return self._send(200, PNG)
        routes.get(self.path, lambda: self._send(404))()


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def policy(server_url=None, **kw):
    hosts = frozenset([server_url.split("//")[1]]) if server_url else frozenset()
    return ImagePolicy(**{"max_bytes": 1000, "max_count": 3, "fetch_timeout": 0.5,
                          "fetch_hosts": hosts, **kw})


def chat(*urls, text="what is this?"):
    parts = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return {"messages": [{"role": "user", "content": parts}]}


def config(abilities=VISION):
    return EngineConfig("m", "LLM", "m", "fake", "fake", "", family={"model_ability": abilities})


def refused(fn, *args) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        fn(*args)
    return info.value


# ------------------------------------------------------------------------------ finding
def test_images_are_found_in_every_dialect_and_in_history():
    openai = chat(PNG_URI, "http://h/a.png")
    assert [s.url for s in images.find_images(openai)] == [PNG_URI, "http://h/a.png"]
    responses = {"input": [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": PNG_URI}]}]}
    history = [{"role": "user", "content": [{"type": "input_image", "image_url": "http://h/b"}]}]
    found = images.find_images(responses, history)
    assert [s.url for s in found] == [PNG_URI, "http://h/b"]
    assert found[0].where == "input[0].content[1]" and found[0].param == "input"
    b64 = base64.b64encode(PNG).decode()
    anthropic = {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}},
        {"type": "image", "source": {"type": "url", "url": "https://h/c.png"}}]}]}
    assert [s.url for s in images.find_images(anthropic)] == [PNG_URI, "https://h/c.png"]
    assert images.find_images({"messages": [{"role": "user", "content": "text"}]}) == []


def test_set_data_rewrites_each_shape_as_base64():
    anthropic = {"type": "image", "source": {"type": "url", "url": "https://h/c.png"}}
    slot = images.ImageSlot(anthropic, "m", "messages")
    slot.set_data("image/png", PNG)
    assert anthropic["source"] == {"type": "base64", "media_type": "image/png",
                                   "data": base64.b64encode(PNG).decode()}
    responses = {"type": "input_image", "image_url": "http://h/b", "detail": "low"}
    images.ImageSlot(responses, "i", "input").set_data("image/png", PNG)
    assert responses["image_url"] == PNG_URI and responses["detail"] == "low"
    openai = {"type": "image_url", "image_url": {"url": "http://h/a", "detail": "high"}}
    images.ImageSlot(openai, "m", "messages").set_data("image/png", PNG)
    assert openai["image_url"] == {"url": PNG_URI, "detail": "high"}


# ------------------------------------------------------------------------------ refusing
def test_a_model_without_vision_refuses_images_naming_the_part():
    err = refused(images.checked_call, config(["chat"]),
                  InferenceCall(Operation.CHAT, chat(PNG_URI)), policy())
    assert "cannot read images" in err.message and "'vision'" in err.message
    assert err.param == "messages" and "messages[0].content[1]" in err.message
    text_only = InferenceCall(Operation.CHAT, chat())
    assert images.checked_call(config(["chat"]), text_only, policy()) == (text_only, [])


@pytest.mark.parametrize("url, words", [
    ("data:text/plain;base64,aGk=", "not an image"),
    ("data:image/png,rawbytes", "base64"),
    ("data:image/png;base64,!!!notbase64", "not valid base64"),
    ("data:image/png;base64,", "empty"),
    ("data:image/png;base64," + base64.b64encode(b"x" * 1200).decode(), "larger than 1000"),
    ("ftp://h/cat.png", "data URI or an http(s) URL"),
    ("file:///etc/passwd", "data URI or an http(s) URL"),
    ("cat.png", "data URI or an http(s) URL"),
    ("http://example.com/cat.png", "XINFERENCE_IMAGE_FETCH_HOSTS"),
])
def test_bad_or_refused_image_urls_are_400(url, words):
    err = refused(images.check_images, images.find_images(chat(url)), "m", VISION, policy())
    assert words in err.message and err.param == "messages"


def test_images_pillow_cannot_read_or_too_many_pixels_are_400(monkeypatch):
    garbage = "data:image/png;base64," + base64.b64encode(b"\x89PNG not really").decode()
    err = refused(images.check_images, images.find_images(chat(garbage)), "m", VISION, policy())
    assert "cannot be read" in err.message
    monkeypatch.setattr(images, "MAX_PIXELS", 11)
    err = refused(images.check_images, images.find_images(chat(PNG_URI)), "m", VISION, policy())
    assert "4x3 pixels; at most 11" in err.message


def test_the_image_count_is_bounded():
    slots = images.find_images(chat(*[PNG_URI] * 4))
    err = refused(images.check_images, slots, "m", VISION, policy())
    assert "4 images" in err.message and "XINFERENCE_IMAGE_MAX_COUNT" in err.message
    assert images.check_images(slots[:3], "m", VISION, policy()) == []


def test_fetching_is_off_by_default_and_hosts_match_exactly():
    default = ImagePolicy.from_settings(Settings())
    assert default.fetch_hosts == frozenset() and not default.host_allowed("http://localhost/x")
    allowed = ImagePolicy.from_settings(Settings(image_fetch_hosts=" Img.Example.com, h:8080"))
    assert allowed.host_allowed("https://img.example.com/a.png")
    assert not allowed.host_allowed("https://evil.img.example.com/a.png")
    assert allowed.host_allowed("http://h:8080/a") and not allowed.host_allowed("http://h/a")
    assert not allowed.host_allowed("http://h:notaport/a")


def test_a_bare_string_image_url_becomes_an_object_in_a_copy():
    body = {"messages": [{"role": "user", "content": [{"type": "image_url",
                                                       "image_url": PNG_URI}]}]}
    fixed, remote = images.checked_call(config(), InferenceCall(Operation.CHAT, body), policy())
    assert remote == [] and fixed.body["messages"][0]["content"][0]["image_url"] == {
        "url": PNG_URI}
    assert body["messages"][0]["content"][0]["image_url"] == PNG_URI


# ------------------------------------------------------------------------------ fetching
def test_allowed_urls_are_fetched_into_a_copy_of_the_call(server):
    body = chat(f"{server}/cat.png", PNG_URI, f"{server}/sniffed")
    call = InferenceCall(Operation.CHAT, body, Dialect.OPENAI)
    fetched, remote = images.checked_call(config(), call, policy(server))
    assert len(remote) == 2 and fetched is not call
    asyncio.run(images.fetch_images(remote, policy(server)))
    assert images.image_urls(fetched.body["messages"]) == [PNG_URI] * 3
    assert body["messages"][0]["content"][1]["image_url"]["url"] == f"{server}/cat.png"


@pytest.mark.parametrize("path, words", [
    ("/moved", "redirect"), ("/missing", "HTTP 404"), ("/page", "did not answer with an image"),
    ("/big", "larger than 1000"), ("/big-unsized", "larger than 1000"),
    ("/slow", "XINFERENCE_IMAGE_FETCH_TIMEOUT"),
])
def test_fetch_failures_are_400_naming_the_part(server, path, words):
    slots = images.find_images(chat(f"{server}{path}"))
    with pytest.raises(InvalidRequestError) as info:
        asyncio.run(images.fetch_images(slots, policy(server)))
    assert words in info.value.message and "messages[0].content[1]" in info.value.message


def test_an_unreachable_allowed_host_is_a_400():
    slots = images.find_images(chat("http://127.0.0.1:9/x.png"))
    with pytest.raises(InvalidRequestError) as info:
        asyncio.run(images.fetch_images(slots, policy("http://127.0.0.1:9")))
    assert "fetching the image failed" in info.value.message


# ------------------------------------------------------------------------------ decoding
def test_decode_and_open_real_images():
    pytest.importorskip("PIL")
    from PIL import Image
    import io

    out = io.BytesIO()
    Image.new("RGBA", (5, 3), (1, 2, 3, 4)).save(out, format="PNG")
    mime, data = images.decode_data_uri(
        "data:image/png;base64," + base64.b64encode(out.getvalue()).decode(), 10_000)
    assert mime == "image/png"
    picture = images.open_image(data)
    assert picture.mode == "RGB" and picture.size == (5, 3)
    err = refused(images.open_image, b"not an image at all")
    assert "cannot be read" in err.message and err.param == "messages"


def test_vision_is_an_llm_ability_of_custom_families():
    from xinference.model.family_checks import check_llm

    check_llm({"model_ability": ["chat", "vision"]})
    with pytest.raises(InvalidRequestError):
        check_llm({"model_ability": ["chat", "eyesight"]})
