"""``response_format: json_object`` on both SmolLM2 engines, greedy: a JSON object that ends.

The transformers engine once forced compact JSON; SmolLM2 wants a line break
after ``{``, so it was pushed onto ``{"`` and filled the key with emoji until
``max_tokens``. llama.cpp allows that whitespace, and both must now agree.
"""

import asyncio
import json

import pytest

from xinference.model.engines.base import EngineConfig

PROMPTS = ["Describe your favourite food in JSON.",
           "Give me a JSON object with a name and an age."]


def _transformers(path):
    from xinference.model.engines.transformers_llm import TransformersEngine
    from xinference.model.registry import ModelRegistry

    family = ModelRegistry().get("LLM", "smollm2-135m-instruct").to_dict()
    return TransformersEngine(EngineConfig(
        model_uid="json-tf", model_type="LLM", model_name="smollm2", engine="transformers",
        model_format="ggufv2", model_path=path, family=family))


def _llama_cpp(path):
    from xinference.model.engines.llama_cpp import LlamaCppEngine

    return LlamaCppEngine(EngineConfig(
        model_uid="json-llama", model_type="LLM", model_name="smollm2", engine="llama.cpp",
        model_format="ggufv2", model_path=path,
        options={"n_ctx": 2048, "n_parallel": 1, "n_threads": 1}))


@pytest.fixture(scope="module", params=["transformers", "llama.cpp"])
def engine(request, smollm2_gguf):
    build = _transformers if request.param == "transformers" else _llama_cpp
    eng = build(smollm2_gguf)
    eng.load()
    yield eng
    eng.close()


def json_chat(engine, prompt, **extra):
    request = {"model": engine.config.model_uid, "temperature": 0, "max_tokens": 200,
               "messages": [{"role": "user", "content": prompt}],
               "response_format": {"type": "json_object"}, **extra}
    return asyncio.run(engine.chat(request))["choices"][0]


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_json_object_answer_parses_and_stops(engine, prompt):
    choice = json_chat(engine, prompt)
    content = choice["message"]["content"]
    data = json.loads(content)
    assert isinstance(data, dict) and data, content
    assert all(key.isascii() and key.strip() for key in data), content
    assert choice["finish_reason"] == "stop", content

