"""A real ``xinference-local`` in its own process, shared by the end-to-end tests.

It binds a free port on 127.0.0.1, uses a temporary XINFERENCE_HOME, launches the
embedded default model (SmolLM2 on llama.cpp) and is stopped with Ctrl-C (SIGINT)
at the end of the session, killed if it does not stop within 30 s.
"""

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import httpx
import pytest
from helpers import free_port, wait_until

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass
class LocalServer:
    base_url: str
    home: str
    process: subprocess.Popen
    log_path: str

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()


def model_ready(base_url: str, uid: str) -> bool:
    resp = httpx.get(f"{base_url}/v1/models/{uid}", timeout=5)
    return resp.status_code == 200 and resp.json()["status"] == "READY"


def run_cli(base_url: str, *args: str) -> subprocess.CompletedProcess:
    """``xinference ARGS -e base_url`` in a subprocess (XINFERENCE_ENDPOINT unset)."""
    env = {k: v for k, v in os.environ.items() if k != "XINFERENCE_ENDPOINT"}
    return subprocess.run([sys.executable, "-m", "xinference.deploy.cmdline", *args,
                           "-e", base_url], capture_output=True, text=True, timeout=120, env=env)


@contextlib.contextmanager
def running_server(home, env=None, args=("--no-default-model",)):
    """Start ``xinference-local`` on a free port with ``home`` as XINFERENCE_HOME; wait for
    its API; stop it with SIGINT at the end (killed if it has not stopped within 30 s)."""
    port = free_port()
    log_path = str(home / "server.out")
    env = dict(os.environ if env is None else env, XINFERENCE_HOME=str(home),
               OMP_NUM_THREADS="1")
    env.pop("XINFERENCE_ENDPOINT", None)
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "xinference.deploy.local", "-p", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    server = LocalServer(f"http://127.0.0.1:{port}", str(home), process, log_path)
    try:
        wait_until(lambda: httpx.get(f"{server.base_url}/status", timeout=2).status_code == 200,
                   60, "the API", server)
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    """A running xinference-local with the default model READY; yields LocalServer."""
    with running_server(tmp_path_factory.mktemp("xinference_home"), args=()) as server:
        wait_until(lambda: model_ready(server.base_url, DEFAULT_MODEL), 120,
                   "the default model", server)
        yield server


@pytest.fixture(scope="module")
def api(local_server):
    """An httpx client on the shared server's REST API."""
    with httpx.Client(base_url=local_server.base_url, timeout=300) as client:
        yield client


TF_MODEL = "smollm2-tf-dialects"


@pytest.fixture(scope="session")
def smollm2_tf(local_server):
    """SmolLM2 on the Transformers engine, launched once for the session; yields its uid."""
    body = {"model_name": DEFAULT_MODEL, "model_engine": "Transformers", "model_uid": TF_MODEL}
    resp = httpx.post(f"{local_server.base_url}/v1/models", json=body, timeout=300)
    assert resp.status_code == 200, resp.text
    try:
        wait_until(lambda: model_ready(local_server.base_url, TF_MODEL), 240, TF_MODEL,
                   local_server)
        yield TF_MODEL
    finally:
        httpx.delete(f"{local_server.base_url}/v1/models/{TF_MODEL}", timeout=60)


@pytest.fixture(params=["llama.cpp", "transformers"])
def cpu_llm(request):
    """The uid of SmolLM2 on each CPU engine in turn."""
    if request.param == "llama.cpp":
        request.getfixturevalue("local_server")
        return DEFAULT_MODEL
    return request.getfixturevalue("smollm2_tf")
