"""The ``xinference`` CLI: option parsing, output, errors, and how little it imports."""

import json
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner
from helpers import free_port, imported_by

from xinference.client import Client
from xinference.deploy import cmdline
from xinference.deploy.cmdline import cli, parse_extra_options

LLM_DESC = {"model_uid": "c", "model_type": "LLM", "model_name": "smollm2",
            "model_ability": ["generate", "chat"]}


class FakeServer:
    """Answers (method, path) from ``routes`` and records what the CLI sent."""

    def __init__(self, routes):
        self.routes = routes
        self.requests = []

    def __call__(self, request):
        body = json.loads(request.content) if request.content else None
        self.requests.append({"method": request.method, "path": request.url.path,
                              "params": dict(request.url.params), "json": body,
                              "auth": request.headers.get("authorization")})
        key = (request.method, request.url.path)
        if key not in self.routes:
            return httpx.Response(404, json={"detail": f"no route {request.url.path}"})
        route = self.routes[key]
        return route(request) if callable(route) else httpx.Response(200, json=route)


@pytest.fixture
def fake(monkeypatch):
    """Point the CLI's client at a FakeServer; returns a function that installs routes."""
    state = {}

    def install(routes):
        state["server"] = FakeServer(routes)
        return state["server"]

    def make_client(endpoint, api_key):
        state["endpoint"], state["api_key"] = endpoint, api_key
        return Client(endpoint, api_key=api_key,
                      transport=httpx.MockTransport(state["server"]))

    monkeypatch.setattr(cmdline, "_make_client", make_client)
    install.state = state
    return install


def run(args, **kwargs):
    return CliRunner().invoke(cli, args, **kwargs)


def test_importing_the_cli_pulls_in_no_server_engine_or_http_code():
    heavy = ("torch", "xoscar", "fastapi", "transformers", "xllamacpp", "sentence_transformers",
             "uvicorn", "pydantic", "numpy", "httpx", "xinference.core", "xinference.api")
    loaded = imported_by("import xinference.deploy.cmdline")
    assert [m for m in heavy if m in loaded] == []
    assert [m for m in loaded if m.startswith("xinference.model.")
            and m != "xinference.model.operations"] == []


def test_parse_extra_options_converts_values():
    assert parse_extra_options(["--gpu_memory_utilization", "0.9", "--n_ctx=2048",
                                "--flash-attn", "--seed", "-1", "--stop", '["a"]',
                                "--name", "x", "--cache", "none", "--reuse", "False"]) == {
        "gpu_memory_utilization": 0.9, "n_ctx": 2048, "flash_attn": True, "seed": -1,
        "stop": ["a"], "name": "x", "cache": None, "reuse": False}


def test_launch_sends_every_option_and_prints_uid_and_engine(fake):
    server = fake({("POST", "/v1/models"): {"model_uid": "my-llm", "model_engine": "llama.cpp"}})
    result = run(["launch", "-n", "smollm2", "-u", "my-llm", "-s", "0_135", "-f", "ggufv2",
                  "-q", "Q4_1", "--model-engine", "llama.cpp", "--context-length", "4096",
                  "-r", "2", "--n-gpu", "none", "--gpu-idx", "0,1", "--trust-remote-code",
                  "--enable-thinking", "false", "--disable-virtual-env", "-vp", "numpy",
                  "-vp", "uv==0.5", "--env", "OMP_NUM_THREADS", "1", "--env", "A", "b c",
                  "--gpu_memory_utilization", "0.9", "--n_batch=64", "-e", "http://h:1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Model uid: my-llm", "Engine: llama.cpp"]
    assert fake.state["endpoint"] == "http://h:1"
    assert server.requests[0]["json"] == {
        "model_name": "smollm2", "model_type": "LLM", "model_uid": "my-llm",
        "model_size_in_billions": "0_135", "model_format": "ggufv2", "quantization": "Q4_1",
        "model_engine": "llama.cpp", "context_length": 4096, "replica": 2, "n_gpu": None,
        "gpu_idx": [0, 1], "trust_remote_code": True, "enable_thinking": False,
        "enable_virtual_env": False, "virtual_env_packages": ["numpy", "uv==0.5"],
        "envs": {"OMP_NUM_THREADS": "1", "A": "b c"}, "gpu_memory_utilization": 0.9,
        "n_batch": 64}


def test_launch_minimal_body_and_bad_values(fake):
    server = fake({("POST", "/v1/models"): {"model_uid": "x"}})
    assert run(["launch", "-n", "m", "-t", "embedding"]).exit_code == 0
    assert server.requests[0]["json"] == {"model_name": "m", "model_type": "embedding",
                                          "replica": 1, "n_gpu": "auto"}
    stray = run(["launch", "-n", "m", "oops"])
    assert stray.exit_code == 2 and "unexpected argument 'oops'" in stray.output
    bad_gpu = run(["launch", "-n", "m", "--n-gpu", "many"])
    assert bad_gpu.exit_code == 2 and "--n-gpu" in bad_gpu.output
    assert len(server.requests) == 1


def test_endpoint_comes_from_option_then_environment_then_default(fake):
    fake({("GET", "/v1/models"): {"object": "list", "data": []}})
    assert run(["list"], env={"XINFERENCE_ENDPOINT": "10.0.0.5:9000"}).exit_code == 0
    assert fake.state["endpoint"] == "http://10.0.0.5:9000"
    assert run(["list"], env={"XINFERENCE_ENDPOINT": None}).exit_code == 0
    assert fake.state["endpoint"] == "http://127.0.0.1:9997"


def test_list_prints_a_table(fake):
    fake({("GET", "/v1/models"): {"object": "list", "data": [
        {"id": "chat-1", "model_type": "LLM", "model_name": "smollm2",
         "model_engine": "llama.cpp", "model_format": "ggufv2", "quantization": "Q4_1",
         "replica": 1, "status": "READY"},
        {"id": "emb", "model_type": "embedding", "model_name": "all-MiniLM-L6-v2",
         "model_engine": "sentence_transformers", "model_format": "pytorch",
         "quantization": None, "replica": 2, "status": "LAUNCHING"}]}})
    lines = run(["list"]).stdout.splitlines()
    assert lines[0].split() == ["UID", "Type", "Name", "Engine", "Format", "Quantization",
                                "Replicas", "Status"]
    assert lines[2].split() == ["chat-1", "LLM", "smollm2", "llama.cpp", "ggufv2", "Q4_1",
                                "1", "READY"]
    assert lines[3].split() == ["emb", "embedding", "all-MiniLM-L6-v2",
                                "sentence_transformers", "pytorch", "-", "2", "LAUNCHING"]
    fake({("GET", "/v1/models"): {"object": "list", "data": []}})
    assert run(["list"]).stdout.strip() == "No model is running."


def test_engine_table_shows_unusable_engines_with_reason(fake):
    server = fake({("GET", "/v1/engines/LLM/smollm2"): {
        "llama.cpp": [{"model_format": "ggufv2", "model_size_in_billions": "0_135",
                       "quantizations": ["Q4_1", "Q8_0"]}],
        "vLLM": [{"model_format": "ggufv2", "model_size_in_billions": "0_135",
                  "quantizations": ["Q4_1"], "available": False,
                  "reason": "vllm is not installed"}]}})
    result = run(["engine", "-n", "smollm2", "-q", "Q4_1"])
    assert result.exit_code == 0, result.output
    assert server.requests[0]["params"] == {"all": "true"}
    lines = result.stdout.splitlines()
    assert lines[2].split() == ["llama.cpp", "ggufv2", "0_135", "Q4_1", "yes", "-"]
    assert lines[3].split()[:5] == ["vLLM", "ggufv2", "0_135", "Q4_1", "no"]
    assert lines[3].endswith("vllm is not installed")
    only = run(["engine", "-n", "smollm2", "--model-engine", "llama.cpp"]).stdout
    assert "vLLM" not in only and "Q4_1, Q8_0" in only


def chunk(text):
    return f'data: {json.dumps({"choices": [{"delta": {"content": text}}]})}\n\n'


def test_chat_repl_streams_and_keeps_the_conversation(fake):
    answers = iter([["Hel", "lo"], ["Fine"]])

    def reply(request):
        body = "".join(chunk(t) for t in next(answers)) + ": ping\n\ndata: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    server = fake({("GET", "/v1/models/c"): LLM_DESC, ("POST", "/v1/chat/completions"): reply})
    result = run(["chat", "--model-uid", "c", "--max_tokens", "16"],
                 input="hi\n\nhow are you?\nexit\nnever sent\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello\nFine\n"
    posts = [r["json"] for r in server.requests if r["method"] == "POST"]
    assert len(posts) == 2
    assert posts[1]["max_tokens"] == 16 and posts[1]["stream"] is True
    assert posts[1]["messages"] == [{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "Hello"},
                                    {"role": "user", "content": "how are you?"}]


class _ChatServer:
    """A real HTTP server whose chat answer names how many user turns it received."""

    def __init__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, payload: bytes, kind: str):
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._send(json.dumps(LLM_DESC).encode(), "application/json")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                turns = sum(m["role"] == "user" for m in body["messages"])
                events = chunk("turn ") + ": ping\n\n" + chunk(str(turns)) + "data: [DONE]\n\n"
                self._send(events.encode(), "text/event-stream")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_chat_repl_reads_every_line_in_a_real_process():
    server = _ChatServer()
    try:
        out = subprocess.run([sys.executable, "-m", "xinference.deploy.cmdline", "chat", "-u", "c",
                              "-e", server.url], input="one\ntwo\nthree\n",
                             capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "turn 1\nturn 2\nturn 3\n"


def test_generate_without_stream_and_chat_on_an_embedding_model(fake):
    server = fake({("GET", "/v1/models/c"): LLM_DESC,
                   ("GET", "/v1/models/e"): {"model_type": "embedding"},
                   ("POST", "/v1/completions"): {"choices": [{"text": " upon a time"}]}})
    result = run(["generate", "-u", "c", "--no-stream"], input="Once\n")
    assert result.exit_code == 0 and result.stdout == " upon a time\n"
    assert server.requests[-1]["json"] == {"model": "c", "prompt": "Once", "max_tokens": 512,
                                           "stream": False}
    wrong = run(["chat", "-u", "e"], input="hi\n")
    assert wrong.exit_code == 1
    assert wrong.stderr == "Error: model e is not a chat model (type embedding, abilities: -)\n"


def test_server_errors_print_one_line_and_exit_1(fake):
    fake({("DELETE", "/v1/models/nope"): lambda r: httpx.Response(
        404, json={"detail": "No model 'nope' is running",
                   "error": {"message": "No model 'nope' is running"}})})
    result = run(["terminate", "--model-uid", "nope"])
    assert result.exit_code == 1
    assert result.stderr == ("Error: Failed to terminate model 'nope' (HTTP 404): "
                             "No model 'nope' is running\n")
    assert result.stdout == ""


def test_server_down_is_one_error_line_in_a_real_process():
    endpoint = f"http://127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, "-m", "xinference.deploy.cmdline", "list",
                          "-e", endpoint], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and endpoint in lines[0]
    assert "Traceback" not in out.stderr


def test_server_down_through_the_environment_variable():
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = run(["registrations", "-t", "LLM"], env={"XINFERENCE_ENDPOINT": endpoint})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Failed to list LLM registrations: cannot reach")
    assert endpoint in result.stderr


def test_register_unregister_and_bad_file(fake, tmp_path):
    server = fake({("POST", "/v1/model_registrations/LLM"): None,
                   ("DELETE", "/v1/model_registrations/LLM/mine"): None})
    spec = tmp_path / "mine.json"
    spec.write_text(json.dumps({"model_name": "mine", "model_specs": []}))
    assert run(["register", "-t", "LLM", "-f", str(spec), "--persist"]).stdout == \
        "Model mine registered.\n"
    assert server.requests[0]["json"] == {"model": spec.read_text(), "persist": True}
    assert run(["unregister", "-t", "LLM", "-n", "mine"]).exit_code == 0
    spec.write_text("{not json")
    bad = run(["register", "-f", str(spec)])
    assert bad.exit_code == 1 and "is not a JSON object" in bad.stderr
    missing = run(["register", "-f", str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "No such file" in missing.stderr
    assert len(server.requests) == 2


def test_login_stores_a_token_used_by_later_commands(fake, tmp_path):
    server = fake({("GET", "/v1/cluster/auth"): {"auth": True},
                   ("POST", "/token"): {"access_token": "tok"},
                   ("GET", "/v1/models"): {"object": "list", "data": []}})
    env = {"XINFERENCE_HOME": str(tmp_path), "XINFERENCE_ENDPOINT": "http://h:1"}
    result = run(["login", "--username", "u", "--password", "p"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "auth" / "tokens.json").stat().st_mode & 0o077 == 0
    run(["list"], env=env)
    assert server.requests[-1]["auth"] == "Bearer tok"
    run(["list", "-ak", "explicit"], env=env)
    assert server.requests[-1]["auth"] == "Bearer explicit"
    fake({("GET", "/v1/cluster/auth"): {"auth": False}})
    assert "needs no login" in run(["login", "--username", "u", "--password", "p"],
                                   env=env).stdout


def test_stop_cluster_asks_first_and_unsupported_verbs_say_so(fake):
    server = fake({("POST", "/v1/clusters/stop"): {}})
    assert run(["stop-cluster"], input="n\n").stdout.endswith("Nothing stopped.\n")
    assert server.requests == []
    assert run(["stop-cluster", "-y"]).stdout == "Cluster stopped.\n"
    assert server.requests[0]["method"] == "POST"
    unsupported = run(["cal-model-mem", "-n", "x", "-s", "7", "-f", "pytorch", "-q", "none",
                       "-c", "4096"])
    assert unsupported.exit_code == 1
    assert unsupported.stderr == "Error: cal-model-mem is not supported yet\n"


def test_no_verb_starts_the_local_server(monkeypatch):
    import xinference.deploy.local as local

    calls = []
    monkeypatch.setattr(local, "run_local", lambda *args: calls.append(args))
    assert run(["-H", "0.0.0.0", "-p", "9000", "--log-level", "debug"]).exit_code == 0
    assert calls == [("0.0.0.0", 9000, "DEBUG")]
    assert run(["-v"]).stdout.startswith("xinference, version ")
