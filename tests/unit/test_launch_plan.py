"""Launch planning over the real registry and engine table (no actors)."""

import pytest

from xinference.core.launch_plan import engine_table, launch_request_from_body, plan_launch
from xinference.errors import (EngineUnavailableError, InvalidRequestError,
                               ModelNotFoundError)
from xinference.model.registry import get_registry


def plan(**body):
    return plan_launch(launch_request_from_body(body), get_registry())


def test_engine_chosen_when_omitted_and_uid_defaults_to_name():
    family, config = plan(model_name="smollm2-135m-instruct")
    assert config.engine == "llama.cpp"
    assert config.model_uid == "smollm2-135m-instruct"
    assert config.quantization == "Q4_1" and config.model_format == "ggufv2"
    assert family.model_type == "LLM"


def test_unknown_keys_become_engine_options():
    _, config = plan(model_name="smollm2-135m-instruct", n_ctx="4096", model_uid="x",
                     envs={"A": 0})
    assert config.options == {"n_ctx": "4096"}


def test_unknown_model_names_the_model():
    with pytest.raises(ModelNotFoundError, match="no-such"):
        plan(model_name="no-such")


def test_refused_engine_gives_the_reason():
    with pytest.raises(EngineUnavailableError, match="CUDA|format"):
        plan(model_name="smollm2-135m-instruct", model_engine="vLLM")


def test_unknown_engine_lists_known_ones():
    with pytest.raises(InvalidRequestError, match="llama.cpp"):
        plan(model_name="smollm2-135m-instruct", model_engine="warp-drive")


def test_spec_mismatch_lists_what_is_offered():
    with pytest.raises(ModelNotFoundError, match="Q4_1"):
        plan(model_name="smollm2-135m-instruct", quantization="Q8_0")


@pytest.mark.parametrize("uid", ["has space", "", "-lead", "x" * 200])
def test_bad_uid_rejected(uid):
    if uid == "":
        _, config = plan(model_name="smollm2-135m-instruct", model_uid=uid)
        assert config.model_uid == "smollm2-135m-instruct"
        return
    with pytest.raises(InvalidRequestError, match="model_uid"):
        plan(model_name="smollm2-135m-instruct", model_uid=uid)


def test_model_type_is_case_insensitive_and_validated():
    assert launch_request_from_body({"model_name": "m", "model_type": "embedding"}).model_type \
        == "embedding"
    assert launch_request_from_body({"model_name": "m", "model_type": "llm"}).model_type == "LLM"
    with pytest.raises(InvalidRequestError, match="model_type"):
        launch_request_from_body({"model_name": "m", "model_type": "hologram"})


def test_engine_table_marks_unusable_engines_with_reason():
    family = get_registry().get("LLM", "smollm2-135m-instruct")
    usable = engine_table(family)
    assert "llama.cpp" in usable and "vLLM" not in usable
    everything = engine_table(family, include_unavailable=True)
    assert everything["vLLM"][0]["available"] is False
    assert everything["vLLM"][0]["reason"]
