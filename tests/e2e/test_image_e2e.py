"""Image models end to end: a tiny random Stable Diffusion pipeline registered as a custom
image model on a real xinference-local, launched with the CLI, and served to the OpenAI
SDK, our client and Xinference's client over real HTTP.

The pipeline is built in the test's temporary folder (tests/image_models.py); the model
runs the diffusers engine in its own process. Eight concurrent requests must complete
and be merged into shared pipeline calls, which the model process logs.
"""

import base64
import glob
import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from image_models import png, png_size

from xinference.client import Client, ImageModelHandle

from .conftest import run_cli

NAME = "e2e-tiny-sd"
UID = "e2e-image"
FAST = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def image_uid(api, local_server, tiny_sd_dir):
    family = {"model_name": NAME, "model_family": "stable_diffusion", "model_uri": tiny_sd_dir,
              "model_ability": ["text2image", "image2image"]}
    resp = api.post("/v1/model_registrations/image",
                    json={"model": json.dumps(family), "persist": False})
    assert resp.status_code == 200, resp.text
    try:
        done = run_cli(local_server.base_url, "launch", "-n", NAME, "-t", "image", "-u", UID,
                       "--batch_interval", "0.3")
        assert done.returncode == 0, done.stderr + done.stdout
        assert "diffusers" in done.stdout
        yield UID
    finally:
        api.delete(f"/v1/models/{UID}")
        api.delete(f"/v1/model_registrations/image/{NAME}")


@pytest.fixture(scope="module")
def sdk(local_server):
    return openai.OpenAI(base_url=f"{local_server.base_url}/v1", api_key="none", max_retries=0)


def test_registered_launched_listed_and_described(api, local_server, image_uid):
    names = [r["model_name"] for r in api.get("/v1/model_registrations/image").json()]
    assert NAME in names
    registrations = run_cli(local_server.base_url, "registrations", "-t", "image")
    assert registrations.returncode == 0 and NAME in registrations.stdout
    listing = run_cli(local_server.base_url, "list")
    assert listing.returncode == 0 and image_uid in listing.stdout and "image" in listing.stdout
    listed = {m["id"]: m for m in api.get("/v1/models").json()["data"]}
    assert listed[image_uid]["model_type"] == "image"
    desc = api.get(f"/v1/models/{image_uid}").json()
    assert (desc["model_engine"], desc["model_format"], desc["status"]) == (
        "diffusers", "diffusers", "READY")
    assert desc["model_ability"] == ["text2image", "image2image"]


def test_openai_sdk_generates_b64_json_and_urls(sdk, image_uid):
    inline = sdk.images.generate(model=image_uid, prompt="the red cat", n=2, size="32x32",
                                 response_format="b64_json", extra_body=FAST)
    assert [png_size(base64.b64decode(d.b64_json)) for d in inline.data] == [(32, 32)] * 2
    linked = sdk.images.generate(model=image_uid, prompt="the cat", size="48x32",
                                 response_format="url", extra_body=FAST)
    fetched = httpx.get(linked.data[0].url, timeout=30)
    assert fetched.status_code == 200 and png_size(fetched.content) == (48, 32)


def _batch_lines(home: str):
    lines = []
    for path in glob.glob(f"{home}/logs/*/xinference.log"):
        with open(path, errors="replace") as fh:
            lines += [line for line in fh if "image batch:" in line]
    return lines


def test_eight_concurrent_requests_complete_and_are_batched(sdk, local_server, image_uid):
    before = len(_batch_lines(local_server.home))

    def one(i: int):
        result = sdk.images.generate(model=image_uid, prompt=f"cat number {i}", size="32x32",
                                     response_format="b64_json", extra_body={"seed": i, **FAST})
        return png_size(base64.b64decode(result.data[0].b64_json))

    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(one, range(8)))
    assert sizes == [(32, 32)] * 8
    merged = _batch_lines(local_server.home)[before:]
    assert merged, "no pipeline call merged concurrent requests"
    counts = [int(re.search(r"from (\d+) requests", line).group(1)) for line in merged]
    assert max(counts) >= 2


def test_variations_and_edits(sdk, image_uid):
    varied = sdk.images.create_variation(model=image_uid, image=("in.png", png(40, 24)),
                                         response_format="b64_json", extra_body=FAST)
    assert png_size(base64.b64decode(varied.data[0].b64_json)) == (40, 24)
    edited = sdk.images.edit(model=image_uid, image=("in.png", png(32, 32)),
                             prompt="make it blue", response_format="url", extra_body=FAST)
    assert png_size(httpx.get(edited.data[0].url, timeout=30).content) == (32, 32)
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.images.edit(model=image_uid, image=("in.png", png(32, 32)),
                        mask=("m.png", png(32, 32)), prompt="x", extra_body=FAST)
    assert "not inpainting" in str(exc.value)  # its registration lists no inpainting


def test_bad_size_and_n_are_400s(sdk, api, image_uid):
    for kwargs in ({"size": "30x30"}, {"size": "large"}, {"n": 0}, {"n": 11}):
        with pytest.raises(openai.BadRequestError):
            sdk.images.generate(model=image_uid, prompt="cat", **kwargs)
    resp = api.post("/v1/images/generations", json={"model": image_uid, "prompt": "cat",
                                                     "size": "32x32x3"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "size"


def test_our_client_and_xinference_client(local_server, image_uid):
    from xinference_client import RESTfulClient

    handle = Client(local_server.base_url).get_model(image_uid)
    assert isinstance(handle, ImageModelHandle)
    drawn = handle.text_to_image("the cat", size="32*32", response_format="b64_json", **FAST)
    assert png_size(base64.b64decode(drawn["data"][0]["b64_json"])) == (32, 32)
    varied = handle.image_to_image(png(24, 16), "a cat", response_format="b64_json", **FAST)
    assert png_size(base64.b64decode(varied["data"][0]["b64_json"])) == (24, 16)
    theirs = RESTfulClient(local_server.base_url).get_model(image_uid)
    answer = theirs.text_to_image("the cat", size="32*32", response_format="b64_json",
                                  seed=1, num_inference_steps=2)
    assert png_size(base64.b64decode(answer["data"][0]["b64_json"])) == (32, 32)
    again = theirs.image_to_image(png(32, 32), "a cat", response_format="b64_json",
                                  num_inference_steps=2)
    assert len(again["data"]) == 1


@pytest.fixture(scope="module")
def inpaint_uid(api, tiny_inpaint_dir):
    family = {"model_name": "e2e-tiny-sd-inpaint", "model_family": "stable_diffusion",
              "model_uri": f"file://{tiny_inpaint_dir}", "model_ability": ["inpainting"]}
    resp = api.post("/v1/model_registrations/image",
                    json={"model": json.dumps(family), "persist": False})
    assert resp.status_code == 200, resp.text
    try:
        launched = api.post("/v1/models", json={"model_name": family["model_name"],
                                                 "model_type": "image",
                                                 "model_uid": "e2e-inpaint"})
        assert launched.status_code == 200, launched.text
        yield "e2e-inpaint"
    finally:
        api.delete("/v1/models/e2e-inpaint")
        api.delete(f"/v1/model_registrations/image/{family['model_name']}")


def test_inpainting_model_with_both_clients_and_the_sdk(local_server, sdk, inpaint_uid):
    from xinference_client import RESTfulClient

    picture, mask = png(32, 32), png(32, 32, color=(255, 255, 255))
    ours = Client(local_server.base_url).get_model(inpaint_uid)
    drawn = ours.inpainting(picture, mask, "a cat", response_format="b64_json", **FAST)
    assert png_size(base64.b64decode(drawn["data"][0]["b64_json"])) == (32, 32)
    edited = ours.image_edit(picture, "a cat", mask=mask, size="48x32",
                             response_format="b64_json", **FAST)
    assert png_size(base64.b64decode(edited["data"][0]["b64_json"])) == (48, 32)
    theirs = RESTfulClient(local_server.base_url).get_model(inpaint_uid)
    for answer in (theirs.inpainting(picture, mask, "a cat", response_format="b64_json",
                                     num_inference_steps=2),
                   theirs.image_edit(picture, "a cat", mask=mask, response_format="b64_json",
                                     num_inference_steps=2)):
        assert png_size(base64.b64decode(answer["data"][0]["b64_json"])) == (32, 32)
    edited = sdk.images.edit(model=inpaint_uid, image=("in.png", picture),
                             mask=("m.png", png(32, 32, (0, 0, 0, 0), "RGBA")), prompt="a cat",
                             size="48x48", response_format="b64_json", extra_body=FAST)
    assert png_size(base64.b64decode(edited.data[0].b64_json)) == (48, 48)
    with pytest.raises(openai.BadRequestError):
        sdk.images.generate(model=inpaint_uid, prompt="a cat", extra_body=FAST)


def test_terminate(api, image_uid):
    assert api.delete(f"/v1/models/{image_uid}").status_code == 200
    assert api.get(f"/v1/models/{image_uid}").status_code == 404
