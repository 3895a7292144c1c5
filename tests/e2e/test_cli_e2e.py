"""The ``xinference`` command, run as a real process against a real server."""

import os
import subprocess
import sys

import httpx
import pytest

from helpers import wait_until

from .conftest import DEFAULT_MODEL, model_ready


def xinference(*args, endpoint=None, stdin=None, timeout=180):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if endpoint is not None:
        env["XINFERENCE_ENDPOINT"] = endpoint
    return subprocess.run([sys.executable, "-m", "xinference.deploy.cmdline", *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def endpoint(local_server):
    wait_until(lambda: model_ready(local_server.base_url, DEFAULT_MODEL), 120,
               "the default model", local_server)
    return local_server.base_url


def _row(stdout: str, first: str):
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] == [first]]
    return rows[0] if rows else None


def test_list_shows_the_default_model_using_the_environment_endpoint(endpoint):
    out = xinference("list", endpoint=endpoint)
    assert out.returncode == 0, out.stderr
    row = _row(out.stdout, DEFAULT_MODEL)
    assert row is not None, out.stdout
    assert row[1:4] == ["LLM", DEFAULT_MODEL, "llama.cpp"] and row[-1] == "READY"


def test_registrations_and_engine_tables(endpoint):
    regs = xinference("registrations", "-t", "LLM", "-e", endpoint)
    assert regs.returncode == 0, regs.stderr
    assert ["LLM", DEFAULT_MODEL, "yes"] in [line.split() for line in regs.stdout.splitlines()]
    engines = xinference("engine", "-n", DEFAULT_MODEL, "-e", endpoint)
    assert engines.returncode == 0, engines.stderr
    assert "yes" in _row(engines.stdout, "llama.cpp")
    assert any(" no " in line for line in engines.stdout.splitlines()[2:]), engines.stdout


def test_chat_and_generate_answer_each_line(endpoint):
    chat = xinference("chat", "--model-uid", DEFAULT_MODEL, "--max_tokens", "16", "-e", endpoint,
                      stdin="Hello!\nWhat is 2+2?\nexit\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip() and chat.stderr == ""
    gen = xinference("generate", "--model-uid", DEFAULT_MODEL, "--max_tokens", "8", "--no-stream",
                     "-e", endpoint, stdin="Once upon a time\n")
    assert gen.returncode == 0 and gen.stdout.strip(), gen.stderr


def test_launch_with_engine_options_then_terminate(endpoint):
    uid = "cli-e2e-llm"
    out = xinference("launch", "-n", DEFAULT_MODEL, "--model-engine", "llama.cpp", "-u", uid,
                     "--env", "OMP_NUM_THREADS", "1", "--n_ctx", "512", "-e", endpoint)
    try:
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [f"Model uid: {uid}", "Engine: llama.cpp"]
        desc = httpx.get(f"{endpoint}/v1/models/{uid}", timeout=10).json()
        assert desc["status"] == "READY"
    finally:
        stop = xinference("terminate", "--model-uid", uid, "-e", endpoint)
    assert stop.returncode == 0 and stop.stdout == f"Model {uid} terminated.\n", stop.stderr
    assert _row(xinference("list", "-e", endpoint).stdout, uid) is None


@pytest.mark.parametrize("args, needle", [
    (["terminate", "--model-uid", "no-such-uid"], "no-such-uid"),
    (["launch", "-n", "no-such-family"], "no-such-family"),
    (["chat", "--model-uid", "no-such-uid"], "no-such-uid"),
])
def test_errors_are_one_line_on_stderr_with_exit_status_1(endpoint, args, needle):
    out = xinference(*args, "-e", endpoint, stdin="hi\n")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0]
