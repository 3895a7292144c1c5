"""The transformers engine on a vision model: a tiny random Llava built here, loaded through
``AutoProcessor`` + ``AutoModelForImageTextToText`` because its family has ``vision``."""

import asyncio

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.engines.base import EngineConfig

import tiny_vision as tv  # noqa: E402 - a helper module of tests/

RED = tv.data_uri(tv.png_bytes((220, 20, 20)))
BLUE = tv.data_uri(tv.png_bytes((20, 20, 220), size=(64, 64)))
QUESTION = "What is in the picture?"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from xinference.model.engines.transformers_llm import TransformersEngine

    path = tv.build_tiny_llava(str(tmp_path_factory.mktemp("tiny-llava")))
    config = EngineConfig(model_uid="llava", model_type="LLM", model_name="tiny-llava",
                          engine="Transformers", model_format="pytorch", model_path=path,
                          family={"model_ability": ["chat", "vision"], "context_length": 512})
    engine = TransformersEngine(config)
    engine.load()
    yield engine
    engine.close()


def ask(messages, **extra):
    return {"messages": messages, "max_tokens": 4, "temperature": 0, **extra}


def no_eos(engine):
    return {str(i): -100 for i in engine.stop_ids}


def test_loaded_with_its_processor(engine):
    from transformers import LlavaForConditionalGeneration

    assert isinstance(engine.model, LlavaForConditionalGeneration)
    assert engine.processor is not None and engine.reads_images
    assert engine.describe()["vision"] is True


def test_the_image_becomes_image_tokens_and_pixel_values(engine):
    job = engine._chat_job(ask([tv.image_message(QUESTION, RED)]))
    image_id = engine.tokenizer.convert_tokens_to_ids("<image>")
    assert job.prompts[0].count(image_id) == tv.IMAGE_TOKENS
    assert tuple(job.inputs[0]["pixel_values"].shape) == (1, 3, 32, 32)
    text_job = engine._chat_job(ask([{"role": "user", "content": QUESTION}]))
    assert text_job.inputs == [] and image_id not in text_job.prompts[0]


def test_chat_with_an_image_answers_and_its_prompt_grows_by_the_image(engine):
    with_image = run(engine.chat(ask([tv.image_message(QUESTION, RED)],
                                     logit_bias=no_eos(engine))))
    text_only = run(engine.chat(ask([{"role": "user", "content": QUESTION}],
                                    logit_bias=no_eos(engine))))
    assert with_image["choices"][0]["finish_reason"] == "length"
    assert with_image["usage"]["completion_tokens"] == 4
    assert with_image["choices"][0]["message"]["content"]
    grown = with_image["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"]
    assert tv.IMAGE_TOKENS <= grown <= tv.IMAGE_TOKENS + 2  # the image tokens and a newline
    counted = engine.count_chat_tokens(ask([tv.image_message(QUESTION, RED)]))
    assert counted == with_image["usage"]["prompt_tokens"]


def test_the_pixels_reach_the_model(engine):
    def first_logprob(url):
        answer = run(engine.chat(ask([tv.image_message(QUESTION, url)], max_tokens=1,
                                     logprobs=True, top_logprobs=3)))
        return [t["logprob"] for t in answer["choices"][0]["logprobs"]["content"][0]
                ["top_logprobs"]]

    assert first_logprob(RED) == first_logprob(RED)
    assert first_logprob(RED) != first_logprob(BLUE)


def test_streamed_and_batched_with_a_text_chat(engine):
    async def both():
        async def gather(request):
            return [c async for c in engine.chat_stream(dict(request, stream=True))]
        return await asyncio.gather(
            gather(ask([tv.image_message(QUESTION, BLUE)], logit_bias=no_eos(engine))),
            gather(ask([{"role": "user", "content": QUESTION}], logit_bias=no_eos(engine))))

    for chunks in run(both()):
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finishes[-1] == "length"


@pytest.mark.parametrize("url, words", [
    ("https://example.com/cat.png", "data URI"),
    ("data:image/png;base64," + "QUJD" * 10, "cannot be read"),
])
def test_images_the_engine_cannot_use_are_400(engine, url, words):
    with pytest.raises(InvalidRequestError) as info:
        engine.start_chat(ask([tv.image_message(QUESTION, url)]))
    assert words in info.value.message and info.value.param == "messages"


def test_several_choices_share_the_image(engine):
    answer = run(engine.chat(ask([tv.image_message(QUESTION, RED)], n=2, seed=3,
                                 temperature=1.0, logit_bias=no_eos(engine))))
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    assert all(c["finish_reason"] == "length" for c in answer["choices"])
    assert answer["usage"]["completion_tokens"] == 8
