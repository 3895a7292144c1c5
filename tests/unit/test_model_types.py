"""The model-type registry: every type's parts exist, fit together, and are found through it."""

import importlib.util
import json
import subprocess
import sys

import pytest
from fastapi import APIRouter, FastAPI

from xinference.api.app import create_app, type_routers
from xinference.client.handles import (ChatModelHandle, GenerateModelHandle, ModelHandle,
                                       handle_for)
from xinference.errors import EngineUnavailableError, InvalidRequestError
from xinference.model import registry as family_registry
from xinference.model.engines.base import Engine
from xinference.model.engines.registry import ENGINES, load_engine_class
from xinference.model.family_checks import check_llm
from xinference.model_types import MODEL_TYPES, find_model_type, load_target, type_names
from xinference.settings import Settings

TYPES = {t.name: t for t in MODEL_TYPES}
ENGINE_TYPES = [(e, t) for e in ENGINES for t in e.model_types]


def test_names_are_unique_and_found_in_any_case():
    assert len(TYPES) == len(MODEL_TYPES) == len({t.folder for t in MODEL_TYPES})
    assert type_names() == tuple(TYPES)
    assert find_model_type("llm") is TYPES["LLM"] and find_model_type(" Embedding ")
    assert find_model_type("image2") is None and find_model_type(None) is None


@pytest.mark.parametrize("name", TYPES)
def test_every_part_is_what_it_claims(name):
    model_type = TYPES[name]
    interface = model_type.load("engine_interface")
    assert issubclass(interface, Engine) and interface.model_type == name
    assert interface.capabilities <= model_type.operations
    serving = model_type.load("serving")
    assert callable(serving.answer) and callable(serving.stream)
    assert isinstance(model_type.load("routes"), APIRouter)
    assert issubclass(model_type.load("client_handle"), ModelHandle)
    check = model_type.load("family_check")
    assert callable(check)
    check({"model_name": "fine", "model_ability": []})
    with pytest.raises(InvalidRequestError) as exc:
        check({"model_name": "bad", "model_ability": ["no-such-ability"]})
    assert exc.value.param == "model_ability" and "no-such-ability" in exc.value.message


def test_load_target_reads_module_and_attribute():
    assert load_target("xinference.model_types:type_names") is type_names
    assert load_target("xinference.model_types").MODEL_TYPES is MODEL_TYPES


@pytest.mark.parametrize("entry, type_name", ENGINE_TYPES,
                         ids=[f"{e.name}-{t}" for e, t in ENGINE_TYPES])
def test_every_engine_implements_its_types_interface(entry, type_name):
    model_type = find_model_type(type_name)
    assert model_type is not None and model_type.name == type_name
    try:
        cls = load_engine_class(entry)
    except EngineUnavailableError:
        if all(importlib.util.find_spec(m) for m in entry.requires):
            raise
        pytest.skip(f"{entry.name}: {', '.join(entry.requires)} not installed")
    assert issubclass(cls, model_type.load("engine_interface"))


def test_every_type_has_an_engine_and_the_fake_serves_the_first_three():
    fake = [e for e in ENGINES if e.name == "fake"]
    assert len(fake) == 1 and {"LLM", "embedding", "rerank"} <= set(fake[0].model_types)
    for name in TYPES:
        assert any(e.auto_select for e in ENGINES if name in e.model_types)


def _families_on_disk():
    for path in sorted(family_registry.FAMILIES_DIR.glob("*/*.json")):
        yield pytest.param(path, id=f"{path.parent.name}/{path.stem}")


def test_family_folders_belong_to_types():
    folders = {p.name for p in family_registry.FAMILIES_DIR.iterdir() if p.is_dir()}
    assert folders <= {t.folder for t in MODEL_TYPES}


@pytest.mark.parametrize("path", _families_on_disk())
def test_families_on_disk_pass_their_types_check(path):
    family = json.loads(path.read_text())
    model_type = find_model_type(family["model_type"])
    assert model_type is not None and model_type.folder == path.parent.name
    model_type.load("family_check")(family)


@pytest.mark.parametrize("changes, field", [
    ({"model_ability": "chat"}, "model_ability"),
    ({"context_length": 0}, "context_length"),
    ({"context_length": 4096.0}, "context_length"),
    ({"stop": ["</s>", 3]}, "stop"),
    ({"tool_call_format": "pythonic"}, "tool_call_format"),
    ({"reasoning_start_tag": None}, "reasoning_start_tag"),
    ({"reasoning_start_tag": "", "reasoning_end_tag": "</think>"}, "reasoning_start_tag"),
    ({"chat_template": ["{{ messages }}"]}, "chat_template"),
])
def test_llm_check_names_the_bad_field(changes, field):
    good = {"model_ability": ["chat", "tools", "reasoning"], "context_length": 4096,
            "stop": ["<|im_end|>"], "tool_call_format": "hermes",
            "reasoning_start_tag": "<think>", "reasoning_end_tag": "</think>"}
    check_llm(good)
    with pytest.raises(InvalidRequestError) as exc:
        check_llm(dict(good, **changes))
    assert exc.value.param == field and exc.value.status_code == 400


def test_the_family_registry_takes_its_types_from_here():
    assert family_registry.MODEL_TYPES == type_names()
    assert family_registry._TYPE_DIRS == {t.name: t.folder for t in MODEL_TYPES}
    assert family_registry.normalize_model_type("RERANK") == "rerank"
    assert family_registry.normalize_model_type(None) == "LLM"
    with pytest.raises(InvalidRequestError) as exc:
        family_registry.normalize_model_type("image2")
    assert exc.value.param == "model_type" and ", ".join(type_names()) in exc.value.message


def test_the_client_finds_handles_through_the_registry():
    for model_type in MODEL_TYPES:
        handle = handle_for(None, "u", {"model_type": model_type.name.upper(),
                                        "model_ability": ["chat"]})
        assert isinstance(handle, model_type.load("client_handle"))
    llm = {"model_type": "LLM", "model_ability": ["generate"]}
    assert type(handle_for(None, "u", llm)) is GenerateModelHandle
    assert type(handle_for(None, "u", dict(llm, model_ability=["chat"]))) is ChatModelHandle


def test_the_app_includes_each_types_router_once(monkeypatch):
    included = []
    original = FastAPI.include_router
    monkeypatch.setattr(FastAPI, "include_router",
                        lambda app, router, **kw: included.append(router) or original(
                            app, router, **kw))
    create_app("127.0.0.1:1", Settings(disable_metrics=True))
    routers = type_routers()
    assert len(routers) == len({t.routes for t in MODEL_TYPES})
    assert all(included.count(router) == 1 for router in routers)


_IMPORTS = """
import json, sys
import xinference.model_types
after_types = sorted(m for m in sys.modules if m.startswith("xinference"))
import xinference.client
print(json.dumps([after_types, sorted(sys.modules)]))
"""


def test_importing_the_registry_and_the_client_pulls_in_no_server():
    out = subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    after_types, modules = json.loads(out.stdout)
    assert after_types == ["xinference", "xinference._version", "xinference.model",
                           "xinference.model.operations", "xinference.model_types"]
    banned = ("xinference.api", "xinference.core", "xinference.model.engines", "fastapi",
              "xoscar", "torch")
    assert [m for m in modules if m in banned or m.startswith(tuple(f"{b}." for b in banned))] \
        == []
