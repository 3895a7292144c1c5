"""Custom model registrations at the registry level: register, persist, reload, unregister."""

import json
from pathlib import Path

import pytest

from xinference.errors import (DuplicateModelError, InvalidRequestError, ModelLaunchError,
                               ModelNotFoundError)
from xinference.model.custom import (parse_custom_family, read_persisted,
                                     register_custom_model, registration_file,
                                     unregister_custom_model)
from xinference.model.files import resolve_model_path
from xinference.model.registry import ModelRegistry


def _gguf_family(name="my-smollm", uri="/models/smollm"):
    return {
        "model_name": name, "model_lang": ["en"], "model_ability": ["chat", "generate"],
        "context_length": 2048,
        "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_135",
                         "quantizations": ["Q4_1"], "model_uri": uri,
                         "model_file_name_template": "model.{quantization}.gguf"}],
    }


@pytest.fixture
def regs(tmp_path):
    return tmp_path / "registrations"


@pytest.fixture
def registry(regs):
    return ModelRegistry(registrations_dir=regs)


def test_register_is_listed_as_custom_and_not_persisted_by_default(registry, regs):
    family = register_custom_model("llm", json.dumps(_gguf_family()), registry=registry)
    assert family.model_type == "LLM" and family.built_in is False
    found = registry.get("LLM", "my-smollm")
    assert found is family and found.model_specs[0].model_uri == "/models/smollm"
    assert "my-smollm" in [f.model_name for f in registry.list("LLM")]
    assert not regs.exists()
    assert ModelRegistry(registrations_dir=regs).find_any_type("smollm2-135m-instruct")
    with pytest.raises(ModelNotFoundError):
        ModelRegistry(registrations_dir=regs).get("LLM", "my-smollm")


def test_persisted_registration_reloads_in_a_fresh_registry(registry, regs):
    register_custom_model("LLM", _gguf_family(), persist=True, registry=registry)
    path = registration_file(regs, "LLM", "my-smollm")
    assert path == regs / "llm" / "my-smollm.json"
    assert json.loads(path.read_text())["model_type"] == "LLM"
    fresh = ModelRegistry(registrations_dir=regs)
    family = fresh.get("LLM", "my-smollm")
    assert family.built_in is False and family.context_length == 2048
    assert family.model_specs[0].quantizations == ["Q4_1"]
    assert fresh.get("LLM", "smollm2-135m-instruct").built_in is True
    listed = {f.model_name: f.built_in for f in fresh.list("LLM")}
    assert listed["my-smollm"] is False


def test_unregister_removes_family_and_file(registry, regs):
    register_custom_model("LLM", _gguf_family(), persist=True, registry=registry)
    unregister_custom_model("llm", "my-smollm", registry=registry)
    with pytest.raises(ModelNotFoundError):
        registry.get("LLM", "my-smollm")
    assert not registration_file(regs, "LLM", "my-smollm").exists()
    with pytest.raises(ModelNotFoundError):
        ModelRegistry(registrations_dir=regs).get("LLM", "my-smollm")
    with pytest.raises(ModelNotFoundError) as exc:
        unregister_custom_model("LLM", "my-smollm", registry=registry)
    assert "my-smollm" in exc.value.message


def test_built_ins_cannot_be_unregistered_or_shadowed(registry):
    with pytest.raises(InvalidRequestError) as exc:
        unregister_custom_model("LLM", "smollm2-135m-instruct", registry=registry)
    assert exc.value.status_code == 400 and "built in" in exc.value.message
    assert registry.get("LLM", "smollm2-135m-instruct")
    with pytest.raises(DuplicateModelError) as exc:
        register_custom_model("LLM", _gguf_family("SmolLM2-135M-Instruct"), registry=registry)
    assert exc.value.param == "model_name" and "built-in" in exc.value.message
    register_custom_model("LLM", _gguf_family(), registry=registry)
    with pytest.raises(DuplicateModelError):
        register_custom_model("LLM", _gguf_family(), registry=registry)


@pytest.mark.parametrize("mutate, field", [
    (lambda f: f.pop("model_name"), "model_name"),
    (lambda f: f.update(model_name="../escape"), "model_name"),
    (lambda f: f.update(model_specs=[]), "model_specs"),
    (lambda f: f["model_specs"][0].pop("model_format"), "model_specs[0].model_format"),
    (lambda f: f["model_specs"][0].update(quantizations="Q4_1"), "model_specs[0].quantizations"),
    (lambda f: f["model_specs"][0].update(model_uri="relative/dir"), "model_specs[0].model_uri"),
    (lambda f: f["model_specs"][0].update(model_uri="s3://bucket/m"), "model_specs[0].model_uri"),
    (lambda f: f["model_specs"][0].pop("model_uri"), "model_specs[0].model_uri"),
    (lambda f: f.update(context_length=-5), "context_length"),
    (lambda f: f.update(model_ability="chat"), "model_ability"),
    (lambda f: f.update(model_type="embedding"), "model_type"),
    (lambda f: f.update(model_ability=["chat", "embed"]), "model_ability"),
    (lambda f: f.update(stop="</s>"), "stop"),
    (lambda f: f.update(tool_call_format="xml"), "tool_call_format"),
    (lambda f: f.update(reasoning_start_tag="<think>"), "reasoning_end_tag"),
])
def test_invalid_definitions_name_the_field(registry, mutate, field):
    family = _gguf_family()
    mutate(family)
    with pytest.raises(InvalidRequestError) as exc:
        register_custom_model("LLM", json.dumps(family), registry=registry)
    assert exc.value.param == field and field.split(".")[-1] in exc.value.message
    with pytest.raises(ModelNotFoundError):
        registry.get("LLM", "my-smollm")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "42"])
def test_model_must_be_a_json_object(registry, text):
    with pytest.raises(InvalidRequestError) as exc:
        register_custom_model("LLM", text, registry=registry)
    assert exc.value.param == "model"


def test_unknown_type_and_spoofed_built_in_flag(registry):
    with pytest.raises(InvalidRequestError) as exc:
        register_custom_model("image2", _gguf_family(), registry=registry)
    assert exc.value.param == "model_type"
    family = register_custom_model("LLM", dict(_gguf_family(), built_in=True), registry=registry)
    assert family.built_in is False and family.to_dict()["built_in"] is False
    unregister_custom_model("LLM", "my-smollm", registry=registry)


def test_model_path_alias_and_spec_defaults():
    data = parse_custom_family("embedding", {
        "model_name": "my-emb", "dimensions": 384,
        "model_specs": [{"model_format": "pytorch", "model_path": "file:///m/emb"}]})
    registry = ModelRegistry()
    family = register_custom_model("embedding", data, registry=registry)
    spec = family.model_specs[0]
    assert spec.model_uri == "file:///m/emb" and spec.quantizations == ["none"]
    assert family.dimensions == 384


@pytest.mark.parametrize("model_type, changes, field", [
    ("embedding", {"dimensions": 0}, "dimensions"),
    ("embedding", {"max_tokens": "512"}, "max_tokens"),
    ("embedding", {"model_ability": ["chat"]}, "model_ability"),
    ("rerank", {"model_ability": ["embed"]}, "model_ability"),
    ("rerank", {"max_tokens": True}, "max_tokens"),
])
def test_the_types_own_check_runs_on_registration(registry, model_type, changes, field):
    family = dict({"model_name": "my-encoder", "model_specs": [
        {"model_format": "pytorch", "model_uri": "/models/encoder"}]}, **changes)
    with pytest.raises(InvalidRequestError) as exc:
        register_custom_model(model_type, family, registry=registry)
    assert exc.value.param == field and field in exc.value.message


def test_bad_persisted_files_are_skipped(regs):
    (regs / "llm").mkdir(parents=True)
    (regs / "llm" / "broken.json").write_text("{oops")
    (regs / "llm" / "other-name.json").write_text(json.dumps(_gguf_family("my-smollm")))
    (regs / "llm" / "good.json").write_text(json.dumps(_gguf_family("good")))
    assert [f.model_name for f in read_persisted(regs)] == ["good"]
    registry = ModelRegistry(registrations_dir=regs)
    assert registry.get("LLM", "good").built_in is False
    assert registry.get("LLM", "smollm2-135m-instruct").built_in is True


def test_files_resolve_a_custom_specs_local_path(tmp_path, registry):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.Q4_1.gguf").write_bytes(b"GGUF")
    in_folder = register_custom_model("LLM", _gguf_family("in-folder", f"file://{folder}"),
                                      registry=registry)
    spec = in_folder.model_specs[0]
    assert resolve_model_path(in_folder, spec, "Q4_1", tmp_path) == str(folder / "model.Q4_1.gguf")
    direct = _gguf_family("direct", str(folder / "model.Q4_1.gguf"))
    direct["model_specs"][0].pop("model_file_name_template")
    family = register_custom_model("LLM", direct, registry=registry)
    path = resolve_model_path(family, family.model_specs[0], "Q4_1", tmp_path)
    assert Path(path) == folder / "model.Q4_1.gguf"
    missing = register_custom_model("LLM", _gguf_family("gone", str(tmp_path / "nope")),
                                    registry=registry)
    with pytest.raises(ModelLaunchError) as exc:
        resolve_model_path(missing, missing.model_specs[0], "Q4_1", tmp_path)
    assert exc.value.param == "model_uri" and "nope" in exc.value.message
