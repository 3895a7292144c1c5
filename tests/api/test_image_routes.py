"""The /v1/images routes in-process, on real diffusers engines over tiny random pipelines.

The harness's LocalCluster hosts the loaded engines (a plain one and an inpainting one)
beside a fake LLM; requests go through the real app, the gateway and a ReplicaService,
from httpx and the ``openai`` SDK.
"""

import base64

import openai
import pytest
from harness import Api, LocalCluster
from image_models import png, png_size

from xinference.model.engines.base import EngineConfig
from xinference.model.image.diffusers_engine import DiffusersImageEngine

FAST = {"num_inference_steps": 2}


def _load(uid: str, path: str) -> DiffusersImageEngine:
    engine = DiffusersImageEngine(EngineConfig(
        model_uid=uid, model_type="image", model_name=uid, engine="diffusers",
        model_format="diffusers", model_path=path))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def engines(tiny_sd_dir, tiny_inpaint_dir):
    loaded = [_load("sd", tiny_sd_dir), _load("sd-inpaint", tiny_inpaint_dir)]
    yield loaded
    for engine in loaded:
        engine.close()


def _cluster(engines) -> LocalCluster:
    cluster = LocalCluster()
    for engine in engines:
        cluster.host(engine)
    cluster.launch("chat")
    return cluster


@pytest.fixture
async def api(engines):
    async with Api.open(_cluster(engines)) as api:
        yield api


async def test_generations_b64_json_through_the_openai_sdk(api):
    result = await api.openai.images.generate(model="sd", prompt="the red cat", n=2,
                                              size="48x32", response_format="b64_json",
                                              extra_body={"seed": 3, **FAST})
    sizes = [png_size(base64.b64decode(item.b64_json)) for item in result.data]
    assert sizes == [(48, 32), (48, 32)] and result.created > 0


async def test_url_answers_are_served_by_the_gateway_until_they_expire(engines):
    async with Api.open(_cluster(engines), image_url_ttl=60) as api:
        resp = await api.http.post("/v1/images/generations", json={
            "model": "sd", "prompt": "cat", "size": "32*32", **FAST})
        assert resp.status_code == 200, resp.text
        url = resp.json()["data"][0]["url"]
        assert url.startswith("http://testserver/v1/images/files/") and url.endswith(".png")
        image = await api.http.get(url)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert png_size(image.content) == (32, 32)
        api.app.state.image_store._clock = lambda: float("inf")  # every image has expired
        gone = await api.http.get(url)
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found_error"


async def test_xinference_kwargs_and_steps_alias_are_read(api):
    resp = await api.http.post("/v1/images/generations", json={
        "model": "sd", "prompt": "cat", "response_format": "b64_json",
        "kwargs": '{"seed": 11, "steps": 2}'})
    again = await api.http.post("/v1/images/generations", json={
        "model": "sd", "prompt": "cat", "response_format": "b64_json", "seed": 11,
        "num_inference_steps": 2})
    assert resp.status_code == again.status_code == 200
    assert resp.json()["data"] == again.json()["data"]


async def test_variations_and_edits_through_the_openai_sdk(api):
    varied = await api.openai.images.create_variation(
        model="sd", image=("in.png", png(40, 24)), n=2, response_format="b64_json",
        extra_body=FAST)
    assert [png_size(base64.b64decode(i.b64_json)) for i in varied.data] == [(40, 24)] * 2
    edited = await api.openai.images.edit(
        model="sd", image=("in.png", png(32, 32)), prompt="make it red", size="32x32",
        response_format="b64_json", extra_body=FAST)
    assert png_size(base64.b64decode(edited.data[0].b64_json)) == (32, 32)
    mask = png(32, 32, color=(0, 0, 0, 0), mode="RGBA")
    inpainted = await api.openai.images.edit(
        model="sd-inpaint", image=("in.png", png(32, 32)), mask=("mask.png", mask),
        prompt="a cat", response_format="b64_json", extra_body=FAST)
    assert png_size(base64.b64decode(inpainted.data[0].b64_json)) == (32, 32)


async def test_xinference_inpainting_route_and_its_refusal_on_a_plain_unet(api):
    files = {"image": ("i", png(32, 32)), "mask_image": ("m", png(32, 32, (255, 255, 255)))}
    data = {"model": "sd-inpaint", "prompt": "cat", "response_format": "b64_json",
            "kwargs": '{"num_inference_steps": 2}'}
    ok = await api.http.post("/v1/images/inpainting", data=data, files=files)
    assert ok.status_code == 200, ok.text
    refused = await api.http.post("/v1/images/inpainting", data={**data, "model": "sd"},
                                  files=files)
    assert refused.status_code == 400 and "9 input channels" in refused.json()["detail"]


@pytest.mark.parametrize("body, param", [
    ({"size": "33x32"}, "size"), ({"size": "big"}, "size"), ({"n": 11}, "n"), ({"n": 0}, "n"),
    ({"response_format": "png"}, "response_format"), ({"quality": "hd"}, "quality"),
    ({"prompt": ""}, "prompt"), ({"model": None}, "model"),
])
async def test_bad_generation_requests_are_400s_in_openai_shape(api, body, param):
    request = {"model": "sd", "prompt": "cat", **body}
    resp = await api.http.post("/v1/images/generations",
                               json={k: v for k, v in request.items() if v is not None})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param
    assert resp.json()["error"]["type"] == "invalid_request_error"


async def test_sdk_sees_bad_size_and_n_as_bad_requests(api):
    with pytest.raises(openai.BadRequestError):
        await api.openai.images.generate(model="sd", prompt="cat", size="32x33")
    with pytest.raises(openai.BadRequestError):
        await api.openai.images.generate(model="sd", prompt="cat", n=50)


async def test_uploads_are_checked(api):
    no_image = await api.http.post("/v1/images/variations", data={"model": "sd"})
    assert no_image.status_code == 400 and no_image.json()["error"]["param"] == "image"
    two = await api.http.post("/v1/images/edits", data={"model": "sd", "prompt": "c"},
                              files=[("image[]", ("a", png(8, 8))), ("image[]", ("b", png(8, 8)))])
    assert two.status_code == 400 and two.json()["error"]["param"] == "image"
    junk = await api.http.post("/v1/images/variations", data={"model": "sd"},
                               files={"image": ("a", b"not a picture")})
    assert junk.status_code == 400 and junk.json()["error"]["param"] == "image"


async def test_bodies_over_the_limit_are_413(engines):
    async with Api.open(_cluster(engines), image_request_max_bytes=2000) as api:
        resp = await api.http.post("/v1/images/variations", data={"model": "sd"},
                                   files={"image": ("a", b"\0" * 5000)})
        assert resp.status_code == 413 and resp.json()["error"]["param"] == "image"
        small = await api.http.post("/v1/images/generations", json={
            "model": "sd", "prompt": "cat", "response_format": "b64_json", **FAST})
        assert small.status_code == 200


async def test_other_model_types_and_unknown_models_are_refused(api):
    llm = await api.http.post("/v1/images/generations", json={"model": "chat", "prompt": "c"})
    assert llm.status_code == 400 and "text to image" in llm.json()["detail"]
    missing = await api.http.post("/v1/images/generations", json={"model": "nope",
                                                                   "prompt": "c"})
    assert missing.status_code == 404


async def test_abort_by_request_id_answers_the_request_with_request_aborted(tiny_sd_dir):
    import asyncio

    engine = DiffusersImageEngine(EngineConfig(
        model_uid="sd-slow", model_type="image", model_name="sd-slow", engine="diffusers",
        model_format="diffusers", model_path=tiny_sd_dir, options={"batch_interval": 0.5}))
    engine.load()
    try:
        async with Api.open(_cluster([engine])) as api:
            pending = asyncio.ensure_future(api.http.post("/v1/images/generations", json={
                "model": "sd-slow", "prompt": "cat", "request_id": "img-1", **FAST}))
            await asyncio.sleep(0.2)
            aborted = await api.http.post("/v1/models/sd-slow/requests/img-1/abort")
            assert aborted.json()["aborted"] is True
            resp = await pending
            assert resp.status_code == 400
            assert resp.json()["error"]["type"] == "request_aborted"
    finally:
        engine.close()
