"""The llama.cpp engine and images: the ``mmproj`` launch option, the refusal without a
projector (SmolLM2), and a chat with an image on a tiny random Gemma 3 with its projector
(GGUF fixtures made by tests/fixtures/vision/make_tiny_gemma3.py)."""

import asyncio
from pathlib import Path

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.llama_cpp import LlamaCppEngine
from xinference.model.engines.llama_cpp_params import build_params

FIXTURES = Path(__file__).parents[1] / "fixtures" / "vision"
MODEL, PROJECTOR = FIXTURES / "tiny-gemma3.gguf", FIXTURES / "mmproj-tiny-gemma3.gguf"
VISION = {"model_ability": ["chat", "vision"]}

import tiny_vision as tv  # noqa: E402 - a helper module of tests/

RED = tv.data_uri(tv.png_bytes((220, 20, 20)))
BLUE = tv.data_uri(tv.png_bytes((20, 20, 220), size=(64, 64)))


def config(path, family=None, **options):
    return EngineConfig(model_uid="v", model_type="LLM", model_name="v", engine="llama.cpp",
                        model_format="ggufv2", model_path=str(path), family=family or VISION,
                        options={"n_ctx": 1024, "n_parallel": 1, "n_threads": 1, **options})


def ask(messages, **extra):
    return {"messages": messages, "max_tokens": 3, "temperature": 0, **extra}


# ------------------------------------------------------------------------------ options
def test_mmproj_option_is_a_file_beside_the_model_or_a_path(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"")
    (tmp_path / "proj.gguf").write_bytes(b"")
    near = build_params(config(tmp_path / "model.gguf", mmproj="proj.gguf"))
    assert near.mmproj.path == str(tmp_path / "proj.gguf")
    absolute = build_params(config("/elsewhere/m.gguf",
                                   multimodal_projector=str(tmp_path / "proj.gguf")))
    assert absolute.mmproj.path == str(tmp_path / "proj.gguf")
    assert build_params(config(tmp_path / "model.gguf")).mmproj.path == ""


@pytest.mark.parametrize("options, words", [
    ({"mmproj": "missing.gguf"}, "is not a file"),
    ({"mmproj": "a.gguf", "multimodal_projector": "a.gguf"}, "give the projector once"),
])
def test_bad_mmproj_options_are_400(tmp_path, options, words):
    (tmp_path / "a.gguf").write_bytes(b"")
    with pytest.raises(InvalidRequestError) as info:
        build_params(config(tmp_path / "model.gguf", **options))
    assert words in info.value.message and info.value.param == "mmproj"


# ------------------------------------------------------------------------------ SmolLM2
@pytest.fixture(scope="module")
def smollm(smollm2_gguf):
    engine = LlamaCppEngine(config(smollm2_gguf))
    engine.load()
    yield engine
    engine.close()


def test_without_a_projector_images_are_refused_naming_the_option(smollm):
    assert smollm.describe()["vision"] is False
    for start in (smollm.start_chat, smollm.count_chat_tokens):
        with pytest.raises(InvalidRequestError) as info:
            start(ask([tv.image_message("What is it?", RED)]))
        assert "mmproj" in info.value.message and info.value.param == "messages"
    answer = asyncio.run(smollm.chat(ask([{"role": "user", "content": "Hi"}])))
    assert answer["usage"]["completion_tokens"] > 0


# ------------------------------------------------------------------------------ Gemma 3
@pytest.fixture(scope="module")
def gemma():
    engine = LlamaCppEngine(config(MODEL, mmproj=PROJECTOR.name))
    engine.load()
    yield engine
    engine.close()


def test_a_chat_with_an_image_adds_image_tokens(gemma):
    assert gemma.describe()["vision"] is True
    question = "What is in the picture?"
    with_image = asyncio.run(gemma.chat(ask([tv.image_message(question, RED)])))
    text_only = asyncio.run(gemma.chat(ask([{"role": "user", "content": question}])))
    assert with_image["usage"]["completion_tokens"] > 0
    assert with_image["usage"]["prompt_tokens"] > text_only["usage"]["prompt_tokens"]
    counted = gemma.count_chat_tokens(ask([tv.image_message(question, RED)]))
    assert counted == with_image["usage"]["prompt_tokens"]


def test_the_pixels_reach_the_model(gemma):
    def top(url):
        answer = asyncio.run(gemma.chat(ask([tv.image_message("What is it?", url)],
                                            max_tokens=1, logprobs=True, top_logprobs=3)))
        return [t["logprob"] for t in answer["choices"][0]["logprobs"]["content"][0]
                ["top_logprobs"]]

    assert top(RED) != top(BLUE)


def test_urls_must_arrive_as_data_uris(gemma):
    with pytest.raises(InvalidRequestError) as info:
        gemma.start_chat(ask([tv.image_message("What?", "https://example.com/a.png")]))
    assert "data URIs" in info.value.message


def test_bytes_that_are_no_image_are_400(gemma):
    with pytest.raises(InvalidRequestError) as info:
        asyncio.run(gemma.chat(ask([tv.image_message("What?", "data:image/png;base64,"
                                                      + "QUJD" * 10)])))
    assert "Failed to load image" in info.value.message
