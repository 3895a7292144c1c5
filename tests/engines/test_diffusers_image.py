"""The diffusers image engine on tiny random Stable Diffusion pipelines (real diffusers).

Covers text to image, image to image and inpainting, seeds, the batching of
concurrent requests (merged calls, grouping by size, the pixel budget), abort,
and the 400s for what a model cannot do or a request gets wrong.
"""

import asyncio

import pytest
from image_models import png, png_size

from xinference.errors import InvalidRequestError, RequestAbortedError
from xinference.model.engines.base import EngineConfig
from xinference.model.image.diffusers_engine import DiffusersImageEngine
from xinference.settings import get_settings

FAST = {"num_inference_steps": 2}


def _engine(path: str, abilities=None, **options) -> DiffusersImageEngine:
    family = {"model_ability": abilities} if abilities else {}
    config = EngineConfig(model_uid="tiny-sd", model_type="image", model_name="tiny-sd",
                          engine="diffusers", model_format="diffusers", model_path=path,
                          family=family, options=options)
    engine = DiffusersImageEngine(config)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def engine(tiny_sd_dir):
    engine = _engine(tiny_sd_dir, batch_interval=0.2)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def inpainter(tiny_inpaint_dir):
    engine = _engine(tiny_inpaint_dir)
    yield engine
    engine.close()


async def test_text_to_image_makes_n_pngs_of_the_size_asked(engine):
    result = await engine.text_to_image({"prompt": "the red cat", "n": 2, "size": "48x32",
                                         **FAST})
    assert [png_size(p) for p in result.images] == [(48, 32), (48, 32)]
    default = await engine.text_to_image({"prompt": "the cat", **FAST})
    assert [png_size(p) for p in default.images] == [(32, 32)]  # the model's own size
    assert engine.describe()["default_size"] == "32x32"


async def test_a_seed_gives_the_same_images_and_another_seed_others(engine):
    ask = {"prompt": "the cat", "seed": 7, **FAST}
    first = (await engine.text_to_image(ask)).images
    again = (await engine.text_to_image(ask)).images
    other = (await engine.text_to_image({**ask, "seed": 8})).images
    assert first == again and first != other


async def test_concurrent_requests_share_one_pipeline_call_per_size(engine):
    before = dict(engine.describe())
    sizes = ["32x32"] * 4 + ["48x48"] * 2
    results = await asyncio.gather(*[
        engine.text_to_image({"prompt": f"cat {i}", "size": size, "request_id": f"r{i}",
                              **FAST}) for i, size in enumerate(sizes)])
    assert [png_size(r.images[0]) for r in results] == [(32, 32)] * 4 + [(48, 48)] * 2
    after = engine.describe()
    assert after["images"] - before["images"] == 6
    assert after["pipeline_calls"] - before["pipeline_calls"] == 2  # one per size
    assert after["merged_calls"] - before["merged_calls"] == 2
    assert after["largest_batch"] >= 4


async def test_the_pixel_budget_cuts_batches(tiny_sd_dir, monkeypatch):
    monkeypatch.setenv("XINFERENCE_TEXT_TO_IMAGE_BATCHING_SIZE", "64*32")
    get_settings(refresh=True)
    try:
        engine = _engine(tiny_sd_dir, batch_interval=0.2)
    finally:
        monkeypatch.undo()
        get_settings(refresh=True)
    try:
        assert engine.describe()["pixel_budget"] == 2048
        await asyncio.gather(*[engine.text_to_image({"prompt": "cat", "request_id": f"p{i}",
                                                     **FAST}) for i in range(4)])
        stats = engine.describe()
        assert stats["pipeline_calls"] == 2 and stats["largest_batch"] == 2
    finally:
        engine.close()


async def test_image_to_image_keeps_the_input_size_unless_asked(engine):
    result = await engine.image_to_image({"prompt": "the cat", "image": png(40, 24), **FAST})
    assert png_size(result.images[0]) == (40, 24)
    resized = await engine.image_to_image({"image": png(40, 24), "size": "32x32", "n": 3,
                                           "strength": 0.5, **FAST})
    assert [png_size(p) for p in resized.images] == [(32, 32)] * 3


async def test_inpainting_needs_an_inpainting_unet(engine, inpainter):
    with pytest.raises(InvalidRequestError) as exc:
        await engine.inpaint({"prompt": "cat", "image": png(32, 32), "mask": png(32, 32)})
    assert "9 input channels" in exc.value.message and "has 4" in exc.value.message
    mask = png(32, 32, color=(0, 0, 0, 0), mode="RGBA")  # OpenAI style: transparent = redraw
    result = await inpainter.inpaint({"prompt": "the cat", "image": png(32, 32), "mask": mask,
                                      "n": 2, **FAST})
    assert [png_size(p) for p in result.images] == [(32, 32)] * 2
    with pytest.raises(InvalidRequestError) as exc:
        await inpainter.text_to_image({"prompt": "cat", **FAST})
    assert "only inpaints" in exc.value.message


async def test_bad_requests_are_400s_naming_the_parameter(engine):
    cases = [({"prompt": "cat", "size": "33x32"}, "size"),
             ({"prompt": "cat", "n": 11}, "n"),
             ({"prompt": "", "n": 1}, "prompt"),
             ({"prompt": "cat", "num_inference_steps": 0}, "num_inference_steps"),
             ({"prompt": "cat", "quality": "hd"}, "quality"),
             ({"prompt": "cat", "strength": 0.5}, "strength")]
    for request, param in cases:
        with pytest.raises(InvalidRequestError) as exc:
            await engine.text_to_image(request)
        assert exc.value.param == param, request
    with pytest.raises(InvalidRequestError) as exc:
        await engine.image_to_image({"prompt": "cat", "image": b"not a picture"})
    assert exc.value.param == "image"
    with pytest.raises(InvalidRequestError) as exc:
        await engine.image_to_image({"image": png(32, 32), "num_inference_steps": 1,
                                     "strength": 0.5})
    assert exc.value.param == "num_inference_steps"


async def test_abilities_of_the_family_are_enforced(tiny_sd_dir):
    engine = _engine(tiny_sd_dir, abilities=["text2image"])
    try:
        with pytest.raises(InvalidRequestError) as exc:
            await engine.image_to_image({"prompt": "cat", "image": png(32, 32), **FAST})
        assert "image2image" in exc.value.message
    finally:
        engine.close()


async def test_abort_drops_a_waiting_request(tiny_sd_dir):
    engine = _engine(tiny_sd_dir, batch_interval=0.5)
    try:
        task = asyncio.ensure_future(engine.text_to_image(
            {"prompt": "cat", "request_id": "gone", **FAST}))
        await asyncio.sleep(0.1)
        assert await engine.abort("gone") is True
        with pytest.raises(RequestAbortedError):
            await task
        assert await engine.abort("gone") is False
        await asyncio.sleep(0.6)  # past the batching window: nothing was drawn for it
        assert engine.describe()["images"] == 0
    finally:
        engine.close()
