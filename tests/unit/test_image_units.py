"""The image type's pure parts: request parameters, the flat family shape and its launch
plan, the gateway's URL store, the batching setting and the client handle."""

import json

import pytest

from xinference.api.image_store import ImageStore
from xinference.client.handles import ImageModelHandle, handle_for
from xinference.core.launch_plan import launch_request_from_body, plan_launch
from xinference.errors import InvalidRequestError
from xinference.model.custom import read_persisted, register_custom_model
from xinference.model.image.params import parse_request, parse_size, response_format
from xinference.model.registry import ModelRegistry
from xinference.settings import Settings, SettingsError


@pytest.mark.parametrize("size, expected", [("32x32", (32, 32)), ("64*48", (64, 48)),
                                            (" 1024 X 512 ", (1024, 512)), (None, (None, None)),
                                            ("auto", (None, None)), ("", (None, None))])
def test_size_is_two_numbers(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["32", "32x", "axb", "30x32", "4096x512", "0x0", "32x32x32"])
def test_bad_sizes_are_400s_naming_size(size):
    with pytest.raises(InvalidRequestError) as exc:
        parse_size(size)
    assert exc.value.param == "size" and repr(size) in exc.value.message


def test_parse_merges_kwargs_aliases_and_form_strings():
    body = parse_request({"model": "m", "prompt": "cat", "n": "3", "size": "32*64",
                          "kwargs": json.dumps({"seed": 5, "steps": 4, "guidance_scale": 2})})
    assert (body["n"], body["width"], body["height"]) == (3, 32, 64)
    assert (body["seed"], body["num_inference_steps"], body["guidance_scale"]) == (5, 4, 2.0)
    assert body["model"] == "m" and body["negative_prompt"] is None
    assert parse_request(body) == body  # the engine parses the canonical form again


@pytest.mark.parametrize("request_body, param", [
    ({"prompt": "c", "n": 0}, "n"), ({"prompt": "c", "n": 11}, "n"),
    ({"prompt": "c", "n": "two"}, "n"), ({"prompt": "c", "n": True}, "n"),
    ({"prompt": "c", "seed": -1}, "seed"), ({"prompt": "c", "steps": 151}, "num_inference_steps"),
    ({"prompt": "c", "guidance_scale": 99}, "guidance_scale"),
    ({"prompt": "c", "strength": 0}, "strength"), ({"prompt": "c", "style": "vivid"}, "style"),
    ({"prompt": "c", "kwargs": "[1]"}, "kwargs"), ({"prompt": 3}, "prompt"), ({}, "prompt"),
    ({"prompt": "x" * 32_001}, "prompt"), ({"prompt": "c", "width": 32}, "height"),
])
def test_bad_parameters_are_400s_naming_them(request_body, param):
    with pytest.raises(InvalidRequestError) as exc:
        parse_request(request_body)
    assert exc.value.param == param


def test_response_format():
    assert response_format({}) == "url" and response_format({"response_format": "b64_json"})
    with pytest.raises(InvalidRequestError) as exc:
        response_format({"response_format": "png"})
    assert exc.value.param == "response_format"


def test_store_expires_images_and_keeps_within_its_size():
    now = [0.0]
    store = ImageStore(ttl=10, max_bytes=10, clock=lambda: now[0])
    first = store.put(b"aaaa")
    second = store.put(b"bbbb")
    assert store.get(first) == b"aaaa" and store.total_bytes == 8
    third = store.put(b"cccc")  # no room for three: the oldest goes
    assert store.get(first) is None and store.get(second) == b"bbbb"
    now[0] = 11
    assert store.get(third) is None and len(store) == 0 and store.total_bytes == 0
    with pytest.raises(InvalidRequestError) as exc:
        store.put(b"x" * 11)
    assert exc.value.param == "response_format"


def test_batching_size_setting_is_a_pixel_budget():
    assert Settings().text_to_image_pixel_budget == 1024 * 1024
    for raw, pixels in [("1024*1024", 1 << 20), ("512x512", 512 * 512), ("4096", 4096)]:
        assert Settings.from_env({"XINFERENCE_TEXT_TO_IMAGE_BATCHING_SIZE": raw}
                                 ).text_to_image_pixel_budget == pixels
    for raw in ("big", "0", "1*2*3"):
        with pytest.raises(SettingsError):
            Settings.from_env({"XINFERENCE_TEXT_TO_IMAGE_BATCHING_SIZE": raw})


def _flat(path, **extra):
    return {"model_name": "my-sd", "model_family": "stable_diffusion", "model_uri": str(path),
            "model_ability": ["text2image", "image2image"], **extra}


def test_flat_registration_becomes_a_diffusers_spec_and_persists(tmp_path):
    regs = tmp_path / "regs"
    registry = ModelRegistry(registrations_dir=regs)
    family = register_custom_model("image", json.dumps(_flat(tmp_path)), persist=True,
                                   registry=registry)
    assert family.model_type == "image" and family.model_family == "stable_diffusion"
    spec = family.model_specs[0]
    assert (spec.model_format, spec.model_uri, spec.quantizations) == (
        "diffusers", str(tmp_path), ["none"])
    assert (regs / "image" / "my-sd.json").exists()
    assert [f.model_name for f in read_persisted(regs)] == ["my-sd"]
    req = launch_request_from_body({"model_name": "my-sd", "model_type": "image"})
    _, config = plan_launch(req, registry)
    assert (config.engine, config.model_type, config.model_format) == (
        "diffusers", "image", "diffusers")


@pytest.mark.parametrize("change, param", [
    ({"model_family": None}, "model_family"), ({"model_uri": None}, "model_uri"),
    ({"model_uri": "relative/dir"}, "model_uri"), ({"model_uri": "http://x/y"}, "model_uri"),
    ({"model_ability": ["chat"]}, "model_ability"), ({"model_name": "bad name"}, "model_name"),
])
def test_bad_flat_registrations_are_400s_naming_the_field(tmp_path, change, param):
    data = {k: v for k, v in {**_flat(tmp_path), **change}.items() if v is not None}
    with pytest.raises(InvalidRequestError) as exc:
        register_custom_model("image", json.dumps(data), registry=ModelRegistry())
    assert exc.value.param == param


def test_client_drives_image_models_with_the_image_handle():
    handle = handle_for(None, "sd", {"model_type": "image"})
    assert isinstance(handle, ImageModelHandle)
    assert callable(handle.image_to_image) and callable(handle.inpainting)


def test_the_gateway_imports_no_image_library():
    from helpers import imported_by

    loaded = imported_by("import xinference.api.routes_image, xinference.model.image.serving")
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "diffusers", "PIL")]
    assert heavy == []
