"""Model downloads against a stand-in Hugging Face hub on 127.0.0.1, and the cache.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when it is imported, and this
test process runs with HF_HUB_OFFLINE=1 (tests/conftest.py), so every download runs
in a fresh interpreter (``_download``) whose environment points at the fake hub and
at a temporary XINFERENCE_HOME. What must never reach a hub runs in-process.
"""

import json
import os
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
from fake_hf_hub import FakeHub, FakeRepo
from fastapi.testclient import TestClient

from xinference.errors import ModelLaunchError, ModelNotFoundError
from xinference.model import cache
from xinference.model.download import ensure_model_files
from xinference.model.registry import ModelFamily, get_registry
from xinference.settings import Settings

REPO = "tiny-org/tiny-GGUF"
SMALL = os.urandom(64 * 1024)
MID = os.urandom(512 * 1024)

_RUNNER = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
from xinference.errors import ModelLaunchError
from xinference.model import download
from xinference.model.registry import ModelFamily
from xinference.settings import get_settings
download.RETRY_BASE_DELAY = 0.1
family = ModelFamily.from_dict(json.loads(sys.argv[1]), built_in=False)
try:
    path = download.ensure_model_files(family, family.model_specs[0], sys.argv[2] or None,
                                       get_settings().cache_dir,
                                       progress_interval=float(sys.argv[3]))
    print(json.dumps({"path": path}))
except ModelLaunchError as exc:
    print(json.dumps({"error": exc.message, "param": exc.param}))
"""


def _family(model_id: str = REPO, fmt: str = "ggufv2", name: str = "tiny") -> dict:
    spec = {"model_format": fmt, "model_size_in_billions": "0_1", "model_id": model_id,
            "quantizations": ["Q4_0", "Q5_0"] if fmt == "ggufv2" else ["none"]}
    if fmt == "ggufv2":
        spec["model_file_name_template"] = "tiny.{quantization}.gguf"
    return {"model_type": "LLM", "model_name": name, "model_specs": [spec]}


def _start(endpoint: str, home: Path, family: dict, quantization: str = "Q4_0",
           attempts: int = 3, interval: float = 5.0) -> subprocess.Popen:
    """A fresh interpreter that downloads ``family``'s first spec from the hub at ``endpoint``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "XINFERENCE_MODEL_SRC", "HF_TOKEN")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(home / "hf"), XINFERENCE_HOME=str(home),
               XINFERENCE_DOWNLOAD_MAX_ATTEMPTS=str(attempts), HF_HUB_DISABLE_TELEMETRY="1")
    return subprocess.Popen([sys.executable, "-c", _RUNNER, json.dumps(family), quantization,
                             str(interval)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def _download(endpoint: str, home: Path, family: dict, quantization: str = "Q4_0",
              attempts: int = 3, interval: float = 5.0) -> tuple:
    return _finish(_start(endpoint, home, family, quantization, attempts, interval))


@pytest.fixture
def hub():
    repo = FakeRepo({"tiny.Q4_0.gguf": MID, "tiny.Q8_0.gguf": SMALL, "README.md": b"# tiny\n"})
    with FakeHub({REPO: repo}) as server:
        yield server


def _folder(home: Path, name: str = "tiny", suffix: str = "ggufv2-0_1b-Q4_0") -> Path:
    return home / "cache" / "llm" / f"{name}-{suffix}"


def test_gguf_download_lands_in_the_cache_with_a_marker(hub, tmp_path):
    result, log = _download(hub.url, tmp_path, _family())
    folder = _folder(tmp_path)
    assert result == {"path": str(folder / "tiny.Q4_0.gguf")}
    assert (folder / "tiny.Q4_0.gguf").read_bytes() == MID
    assert hub.count("GET", "Q8_0") == 0 and not (folder / "tiny.Q8_0.gguf").exists()
    marker = cache.read_marker(folder)
    assert marker["complete"] is True
    assert marker["commit"] == hub.repos[REPO].sha and marker["files"] == ["tiny.Q4_0.gguf"]
    assert marker["model_version"] == "tiny--0_1B--ggufv2--Q4_0"
    assert "Downloading tiny from huggingface: tiny-org/tiny-GGUF (revision main)" in log
    assert re.search(r"Downloaded tiny \(512\.\d KiB\) from huggingface", log), log


def test_progress_is_logged_while_downloading(tmp_path):
    # huggingface_hub writes in 10 MiB blocks: a 24 MiB file, sent slowly, shows progress.
    big = os.urandom(24 * 1024 * 1024)
    with FakeHub({REPO: FakeRepo({"tiny.Q4_0.gguf": big})}, chunk_delay=0.01) as server:
        result, log = _download(server.url, tmp_path, _family(), interval=0.1)
    assert Path(result["path"]).stat().st_size == len(big)
    assert re.search(r"Downloading tiny: [1-9]\d?% \([\d.]+ MiB of 24\.0 MiB\)", log), log
    assert "so far" not in log


def test_a_second_launch_does_not_ask_the_hub(hub, tmp_path):
    first, _ = _download(hub.url, tmp_path, _family())
    seen = len(hub.requests)
    assert seen >= 2
    second, _ = _download(hub.url, tmp_path, _family())
    assert second == first
    assert len(hub.requests) == seen


def test_two_launches_at_once_download_once(hub, tmp_path):
    hub.chunk_delay = 0.1
    procs = [_start(hub.url, tmp_path, _family()) for _ in range(2)]
    results = [_finish(proc)[0] for proc in procs]
    assert results[0] == results[1] and Path(results[0]["path"]).read_bytes() == MID
    assert hub.count("GET", "/resolve/") == 1


def test_a_transient_500_is_retried(hub, tmp_path):
    hub.fail("GET", "/tiny.Q4_0.gguf", status=500, times=1)
    result, log = _download(hub.url, tmp_path, _family())
    assert result["path"].endswith("tiny.Q4_0.gguf")
    assert Path(result["path"]).read_bytes() == MID
    assert hub.count("GET", "/resolve/") == 2
    assert "HTTP 500" in log and "attempt 1 of 3" in log


def test_retries_stop_after_max_attempts(hub, tmp_path):
    hub.fail("GET", "/tiny.Q4_0.gguf", status=503, times=10)
    result, _ = _download(hub.url, tmp_path, _family(), attempts=2)
    assert hub.count("GET", "/resolve/") == 2
    assert REPO in result["error"] and "HTTP 503" in result["error"]
    assert "gave up after 2 attempts" in result["error"]
    assert not _folder(tmp_path).exists()


def test_a_missing_repo_is_a_clear_404(hub, tmp_path):
    result, _ = _download(hub.url, tmp_path, _family("tiny-org/missing"))
    message = result["error"]
    assert "tiny-org/missing" in message and "huggingface" in message and hub.url in message
    assert "not found (HTTP 404)" in message and result["param"] == "model_id"
    assert hub.count(contains="missing") == 1  # not retried
    assert not _folder(tmp_path).exists()  # nothing arrived: no cache entry left behind


def test_a_missing_quantization_file_names_the_file(hub, tmp_path):
    result, _ = _download(hub.url, tmp_path, _family(), quantization="Q5_0")
    assert "tiny.Q5_0.gguf" in result["error"] and "tiny.Q8_0.gguf" in result["error"]
    assert result["param"] == "model_file_name_template"


def test_an_unreachable_hub_is_named(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result, _ = _download(closed, tmp_path, _family(), attempts=2)
    assert "unreachable" in result["error"] and REPO in result["error"]
    assert closed in result["error"] and "gave up after 2 attempts" in result["error"]


def test_a_half_finished_download_is_downloaded_again(hub, tmp_path):
    folder = _folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "tiny.Q4_0.gguf").write_bytes(MID[:1000])
    cache.write_marker(folder, {"model_name": "tiny", "complete": False,
                                "file_name": "tiny.Q4_0.gguf"})
    result, _ = _download(hub.url, tmp_path, _family())
    assert Path(result["path"]).read_bytes() == MID
    assert hub.count("GET", "/resolve/") == 1
    assert cache.read_marker(folder)["complete"] is True


def test_a_pytorch_spec_downloads_the_repo_without_other_formats(tmp_path):
    repo = FakeRepo({"config.json": b'{"model_type": "llama"}', "model.safetensors": SMALL,
                     "pytorch_model.bin": SMALL, "tiny.Q4_0.gguf": SMALL,
                     "onnx/model.onnx": SMALL, "tokenizer/vocab.txt": b"a\nb\n"})
    with FakeHub({"tiny-org/tiny": repo}) as server:
        result, _ = _download(server.url, tmp_path, _family("tiny-org/tiny", "pytorch"), "none")
    folder = Path(result["path"])
    assert folder == _folder(tmp_path, suffix="pytorch-0_1b")
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and not str(p.relative_to(folder)).startswith("."))
    assert names == ["config.json", "model.safetensors", "tokenizer/vocab.txt"]
    assert sorted(cache.read_marker(folder)["files"]) == names


# --- no hub: these must never download (HF_HUB_OFFLINE=1 in this process) ---------------


def test_offline_package_and_explicit_paths_win(tmp_path, smollm2_gguf):
    family = get_registry().get("LLM", "smollm2-135m-instruct")
    spec = family.model_specs[0]
    assert spec.model_id  # it could be downloaded, but the package is there
    assert ensure_model_files(family, spec, "Q4_1", tmp_path) == smollm2_gguf
    other = tmp_path / "elsewhere.gguf"
    other.write_bytes(b"x")
    assert ensure_model_files(family, spec, "Q4_1", tmp_path, model_path=str(other)) == str(other)
    custom = ModelFamily.from_dict(dict(_family(), model_specs=[dict(
        _family()["model_specs"][0], model_uri=f"file://{Path(smollm2_gguf).parent}",
        model_file_name_template="SmolLM2-135M-Instruct.{quantization}.gguf")]), built_in=False)
    assert ensure_model_files(custom, custom.model_specs[0], "Q4_1", tmp_path) == smollm2_gguf
    assert not (tmp_path / "llm").exists()


def test_files_put_in_the_cache_by_hand_are_used(tmp_path):
    family = ModelFamily.from_dict(_family(), built_in=False)
    folder = _folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "tiny.Q4_0.gguf").write_bytes(b"gguf")
    path = ensure_model_files(family, family.model_specs[0], "Q4_0", tmp_path / "cache")
    assert path == str(folder / "tiny.Q4_0.gguf")


def test_offline_mode_and_csghub_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    family = ModelFamily.from_dict(_family(), built_in=False)
    spec = family.model_specs[0]
    with pytest.raises(ModelLaunchError, match="HF_HUB_OFFLINE is set") as err:
        ensure_model_files(family, spec, "Q4_0", tmp_path, settings=Settings(home=tmp_path))
    assert REPO in err.value.message
    with pytest.raises(ModelLaunchError, match="CSGHub are not supported yet") as err:
        ensure_model_files(family, spec, "Q4_0", tmp_path,
                           settings=Settings(home=tmp_path, model_src="csghub"))
    assert err.value.param == "model_hub" and REPO in err.value.message
    assert cache.list_cached_models(tmp_path) == []


def _fake_modelscope(monkeypatch, calls: list, fail: Exception = None):
    def model_file_download(model_id, file_path, revision=None, *, local_dir=None, **_):
        calls.append((model_id, file_path, revision, local_dir))
        if fail is not None:
            raise fail
        target = Path(local_dir) / file_path
        target.write_bytes(SMALL)
        return str(target)

    modules = {name: types.ModuleType(name) for name in
               ("modelscope", "modelscope.hub", "modelscope.hub.file_download",
                "modelscope.hub.snapshot_download")}
    modules["modelscope.hub.file_download"].model_file_download = model_file_download
    modules["modelscope.hub.snapshot_download"].snapshot_download = None
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def test_modelscope_is_used_when_chosen(tmp_path, monkeypatch):
    calls: list = []
    _fake_modelscope(monkeypatch, calls)
    family = ModelFamily.from_dict(_family("tiny-ms/tiny-GGUF"), built_in=False)
    settings = Settings(home=tmp_path, model_src="modelscope")
    path = ensure_model_files(family, family.model_specs[0], "Q4_0", tmp_path / "cache",
                              settings=settings)
    folder = _folder(tmp_path)
    assert path == str(folder / "tiny.Q4_0.gguf")
    assert calls == [("tiny-ms/tiny-GGUF", "tiny.Q4_0.gguf", None, str(folder))]
    assert cache.read_marker(folder)["model_hub"] == "modelscope"


def test_modelscope_not_found_is_not_retried(tmp_path, monkeypatch):
    calls: list = []
    not_exist = type("NotExistError", (Exception,), {})
    _fake_modelscope(monkeypatch, calls, fail=not_exist("model tiny-ms/nope not found"))
    family = ModelFamily.from_dict(_family("tiny-ms/nope"), built_in=False)
    with pytest.raises(ModelLaunchError, match="does not exist on the hub") as err:
        ensure_model_files(family, family.model_specs[0], "Q4_0", tmp_path,
                           settings=Settings(home=tmp_path, model_src="modelscope"))
    assert "tiny-ms/nope" in err.value.message and "modelscope" in err.value.message
    assert len(calls) == 1


# --- the cache listing and removal ------------------------------------------------------


def _cached(tmp_path: Path, version_quant: str = "Q4_0", complete: bool = True) -> Path:
    folder = _folder(tmp_path, suffix=f"ggufv2-0_1b-{version_quant}")
    folder.mkdir(parents=True)
    (folder / f"tiny.{version_quant}.gguf").write_bytes(SMALL)
    cache.write_marker(folder, {
        "model_name": "tiny", "model_type": "LLM", "model_format": "ggufv2",
        "model_size_in_billions": "0_1", "quantization": version_quant,
        "model_version": f"tiny--0_1B--ggufv2--{version_quant}", "model_hub": "huggingface",
        "model_id": REPO, "file_name": f"tiny.{version_quant}.gguf", "complete": complete})
    return folder


def test_cache_listing_and_removal(tmp_path):
    done, partial = _cached(tmp_path), _cached(tmp_path, "Q8_0", complete=False)
    items = {i["model_version"]: i for i in cache.list_cached_models(tmp_path / "cache", "TINY")}
    assert set(items) == {"tiny--0_1B--ggufv2--Q4_0", "tiny--0_1B--ggufv2--Q8_0"}
    item = items["tiny--0_1B--ggufv2--Q4_0"]
    assert item["cache_status"] is True
    assert items["tiny--0_1B--ggufv2--Q8_0"]["cache_status"] is False
    assert item["path"] == str(done) and item["real_path"] == str(done / "tiny.Q4_0.gguf")
    assert item["actual_size"] >= len(SMALL) and item["quantization"] == "Q4_0"
    assert cache.list_cached_models(tmp_path / "cache", "other") == []
    with cache.folder_lock(partial):
        with pytest.raises(cache.CacheBusyError, match="being downloaded"):
            cache.remove_cached_version(tmp_path / "cache", "tiny--0_1B--ggufv2--Q8_0")
    removed = cache.remove_cached_version(tmp_path / "cache", "tiny--0_1B--ggufv2--Q4_0")
    assert removed == [str(done)]
    assert not done.exists() and partial.exists()
    with pytest.raises(ModelNotFoundError, match="xinference cached"):
        cache.cached_version_paths(tmp_path / "cache", "tiny--0_1B--ggufv2--Q4_0")


def test_cache_routes(tmp_path):
    from xinference.api.app import create_app

    done = _cached(tmp_path)
    app = create_app("127.0.0.1:1", Settings(home=tmp_path, disable_metrics=True))
    with TestClient(app) as client:
        listing = client.get("/v1/cache/models", params={"model_name": "tiny"}).json()["list"]
        assert [i["model_version"] for i in listing] == ["tiny--0_1B--ggufv2--Q4_0"]
        assert listing[0]["worker_ip"] == "127.0.0.1"
        version = {"model_version": "tiny--0_1B--ggufv2--Q4_0"}
        assert client.get("/v1/cache/models/files", params=version).json()["paths"] == [str(done)]
        assert client.delete("/v1/cache/models", params=version).json()["result"] is True
        assert not done.exists()
        missing = client.get("/v1/cache/models/files", params=version)
        assert missing.status_code == 404
        assert "xinference cached" in missing.json()["error"]["message"]
        assert client.get("/v1/cache/models").json() == {"list": []}
