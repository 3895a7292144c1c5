"""The Python client against httpx.MockTransport: request shapes, errors, SSE, sync/async parity."""

import asyncio
import json

import httpx
import pytest
from helpers import free_port, imported_by

from xinference.client import (
    AsyncClient,
    ChatModelHandle,
    Client,
    EmbeddingModelHandle,
    GenerateModelHandle,
    RerankModelHandle,
    RESTfulClient,
    XinferenceClientError,
    XinferenceConnectionError,
)
from xinference.client.sse import SSEDecoder

BASE = "http://xinf.test:9997"
LLM_DESC = {"model_uid": "chat-1", "model_type": "LLM", "model_name": "smollm2",
            "model_ability": ["generate", "chat"], "model_engine": "llama.cpp"}


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in the given byte pieces (to split lines across reads)."""

    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        yield from self.parts

    async def __aiter__(self):
        for part in self.parts:
            yield part


def sse(*parts: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          stream=Chunks(list(parts)))


class FakeServer:
    """Routes (method, path) to answer factories and records every request."""

    def __init__(self, routes):
        self.routes = routes
        self.requests = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        is_json = request.headers.get("content-type", "").startswith("application/json")
        self.requests.append({
            "method": request.method, "path": request.url.raw_path.decode().split("?")[0],
            "params": dict(request.url.params),
            "json": json.loads(body) if body and is_json else None,
            "auth": request.headers.get("authorization")})
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"detail": f"no route {request.url.path}"})
        return route(request)


def ok(payload):
    return lambda request: httpx.Response(200, json=payload)


def make_sync(server, **kwargs):
    return Client(BASE, transport=httpx.MockTransport(server), **kwargs)


def make_async(server, **kwargs):
    return AsyncClient(BASE, transport=httpx.MockTransport(server), **kwargs)


def test_client_is_restful_client_and_errors_are_runtime_errors():
    assert Client is RESTfulClient
    assert issubclass(XinferenceClientError, RuntimeError)


def test_launch_model_body_drops_unset_fields_and_passes_engine_options():
    server = FakeServer({("POST", "/v1/models"): ok({"model_uid": "m-1",
                                                      "model_engine": "llama.cpp"})})
    client = make_sync(server)
    uid = client.launch_model("smollm2", model_engine="llama.cpp", model_size_in_billions=1.0,
                              n_ctx=2048, envs={"A": "1"}, wait_ready=False)
    assert uid == "m-1"
    sent = server.requests[0]
    assert sent["json"] == {"model_name": "smollm2", "model_type": "LLM", "replica": 1,
                            "n_gpu": "auto", "model_engine": "llama.cpp",
                            "model_size_in_billions": 1, "n_ctx": 2048, "envs": {"A": "1"}}
    assert sent["params"] == {"wait_ready": "false"}
    client.launch_model("x", model_size_in_billions=1.5, n_gpu=None, gpu_idx=[0, 1])
    second = server.requests[1]
    assert second["params"] == {}
    assert second["json"]["n_gpu"] is None and "n_gpu" in second["json"]
    assert second["json"]["model_size_in_billions"] == "1.5"
    assert second["json"]["gpu_idx"] == [0, 1]


def test_list_describe_terminate_and_uid_quoting():
    listing = {"object": "list", "data": [{"id": "a", "model_type": "LLM"},
                                          {"id": "b", "model_type": "embedding"}]}
    server = FakeServer({
        ("GET", "/v1/models"): ok(listing),
        ("GET", "/v1/models/my model/x"): ok({"model_uid": "my model/x"}),
        ("DELETE", "/v1/models/a"): lambda r: httpx.Response(200, json=None)})
    client = make_sync(server)
    assert client.list_models() == {"a": listing["data"][0], "b": listing["data"][1]}
    assert client.describe_model("my model/x") == {"model_uid": "my model/x"}
    assert server.requests[1]["path"] == "/v1/models/my%20model%2Fx"
    assert client.terminate_model("a") is None
    assert server.requests[2]["method"] == "DELETE"


@pytest.mark.parametrize("desc, cls", [
    (LLM_DESC, ChatModelHandle),
    ({**LLM_DESC, "model_ability": ["generate"]}, GenerateModelHandle),
    ({"model_type": "embedding"}, EmbeddingModelHandle),
    ({"model_type": "rerank"}, RerankModelHandle),
])
def test_get_model_picks_the_handle_from_type_and_ability(desc, cls):
    client = make_sync(FakeServer({("GET", "/v1/models/u"): ok(desc)}))
    handle = client.get_model("u")
    assert type(handle) is cls and handle.model_uid == "u"


def test_get_model_of_an_unknown_type_is_a_clear_error():
    client = make_sync(FakeServer({("GET", "/v1/models/u"): ok({"model_type": "world"})}))
    with pytest.raises(XinferenceClientError, match="'world'"):
        client.get_model("u")


def test_handle_request_shapes():
    server = FakeServer({
        ("GET", "/v1/models/c"): ok(LLM_DESC),
        ("GET", "/v1/models/e"): ok({"model_type": "embedding"}),
        ("GET", "/v1/models/r"): ok({"model_type": "rerank"}),
        ("POST", "/v1/chat/completions"): ok({"choices": []}),
        ("POST", "/v1/completions"): ok({"choices": []}),
        ("POST", "/v1/embeddings"): ok({"data": []}),
        ("POST", "/v1/rerank"): ok({"results": []})})
    client = make_sync(server)
    messages = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "f"}}]
    client.get_model("c").chat(messages, tools, {"max_tokens": 8}, enable_thinking=False)
    client.get_model("c").generate("Once", {"temperature": 0})
    client.get_model("e").create_embedding(["a", "b"], dimensions=4)
    client.get_model("r").rerank(["d1", "d2"], "q", top_n=1, return_documents=True)
    bodies = [r["json"] for r in server.requests if r["method"] == "POST"]
    assert bodies[0] == {"model": "c", "messages": messages, "tools": tools, "max_tokens": 8,
                         "chat_template_kwargs": {"enable_thinking": False}}
    assert bodies[1] == {"model": "c", "prompt": "Once", "temperature": 0}
    assert bodies[2] == {"model": "e", "input": ["a", "b"], "dimensions": 4}
    assert bodies[3] == {"model": "r", "documents": ["d1", "d2"], "query": "q", "top_n": 1,
                         "return_documents": True}


def test_admin_call_shapes():
    server = FakeServer({
        ("GET", "/v1/model_registrations/LLM"): ok([{"model_name": "a", "is_builtin": True}]),
        ("POST", "/v1/model_registrations/LLM"): ok(None),
        ("DELETE", "/v1/model_registrations/LLM/mine"): ok(None),
        ("GET", "/v1/engines/LLM/a"): ok({"llama.cpp": []}),
        ("GET", "/v1/engines/a"): ok({}),
        ("POST", "/v1/models/u/requests/r1/abort"): ok({"aborted": True}),
        ("DELETE", "/v1/models/u/replicas/1"): ok({"remaining_replicas": 2}),
        ("GET", "/v1/cache/models"): ok({"list": [{"model_name": "a"}]})})
    client = make_sync(server)
    assert client.list_model_registrations("LLM", detailed=True)[0]["model_name"] == "a"
    client.register_model("LLM", '{"model_name": "mine"}', persist=True)
    client.unregister_model("LLM", "mine")
    client.query_engine_by_model_name("a", include_unavailable=True)
    client.query_engine_by_model_name("a", model_type=None)
    assert client.abort_request("u", "r1") == {"aborted": True}
    assert client.terminate_model_replica("u", 1) == 2
    assert client.list_cached_models("a") == [{"model_name": "a"}]
    reqs = server.requests
    assert reqs[0]["params"] == {"detailed": "true"}
    assert reqs[1]["json"] == {"model": '{"model_name": "mine"}', "persist": True}
    assert reqs[3]["params"] == {"all": "true"} and reqs[4]["params"] == {}
    assert reqs[5]["json"] == {"block_duration": 30}
    assert reqs[7]["params"] == {"model_name": "a"}


def test_error_body_is_mapped_to_a_runtime_error_with_status_and_message():
    body = {"detail": "No model 'zz' is running",
            "error": {"message": "No model 'zz' is running", "type": "not_found_error",
                      "param": "model_uid", "code": None}}
    client = make_sync(FakeServer({("GET", "/v1/models/zz"):
                                   lambda r: httpx.Response(404, json=body)}))
    with pytest.raises(RuntimeError) as info:
        client.describe_model("zz")
    err = info.value
    assert isinstance(err, XinferenceClientError)
    assert err.status_code == 404 and err.message == "No model 'zz' is running"
    assert err.error_type == "not_found_error" and err.param == "model_uid"
    assert str(err) == "Failed to describe model 'zz' (HTTP 404): No model 'zz' is running"


def test_validation_and_plain_text_errors_are_readable():
    detail = [{"loc": ["body", "model_name"], "msg": "Field required", "type": "missing"}]
    server = FakeServer({
        ("POST", "/v1/models"): lambda r: httpx.Response(422, json={"detail": detail}),
        ("GET", "/v1/workers"): lambda r: httpx.Response(502, text="<h1>Bad gateway</h1>\n"),
        ("GET", "/v1/cluster/info"): lambda r: httpx.Response(200, text="not json")})
    client = make_sync(server)
    with pytest.raises(XinferenceClientError, match="model_name: Field required"):
        client.launch_model("")
    with pytest.raises(XinferenceClientError, match="HTTP 502.*Bad gateway"):
        client.get_workers_info()
    with pytest.raises(XinferenceClientError, match="not JSON"):
        client.get_cluster_info()


def test_sse_decoder_handles_comments_multiline_data_crlf_and_done():
    decoder = SSEDecoder()
    lines = [": ping", "data:{\"a\":", "data: 1}", "", "event: x", "data: [DONE]", ""]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert events == [{"a": 1}] and decoder.done


STREAM_BODY = [
    b": keep-alive\n\n",
    b'data: {"choices": [{"delta": {"content": "Hel"}}]}\n',
    b'\ndata: {"choices": [{"delta": {"con',
    b'tent": "lo"}}]}\r\n\r\n: ping\n\n',
    b"data: [DONE]\n\n",
    b'data: {"after": "done"}\n\n',
]


def chat_stream_server(*parts):
    return FakeServer({("GET", "/v1/models/c"): ok(LLM_DESC),
                       ("POST", "/v1/chat/completions"): lambda r: sse(*parts)})


def test_stream_yields_chunks_across_split_reads_and_stops_at_done():
    server = chat_stream_server(*STREAM_BODY)
    chunks = list(make_sync(server).get_model("c").chat("hi", generate_config={"stream": True}))
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["Hel", "lo"]
    assert server.requests[-1]["json"]["stream"] is True
    assert server.requests[-1]["json"]["messages"] == [{"role": "user", "content": "hi"}]


def test_error_in_the_middle_of_a_stream_raises_after_the_chunks_before_it():
    error = {"error": {"message": "engine crashed", "type": "server_error"}}
    server = chat_stream_server(STREAM_BODY[1], b"\n", f"data: {json.dumps(error)}\n\n".encode())
    stream = make_sync(server).get_model("c").chat("hi", generate_config={"stream": True})
    assert next(stream)["choices"][0]["delta"]["content"] == "Hel"
    with pytest.raises(XinferenceClientError, match="engine crashed") as info:
        next(stream)
    assert info.value.error_type == "server_error"


def test_a_rejected_stream_request_raises_at_call_time():
    server = FakeServer({("POST", "/v1/completions"): lambda r: httpx.Response(
        400, json={"detail": "max_tokens must be at least 1"})})
    handle = GenerateModelHandle("g", make_sync(server)._runner)
    with pytest.raises(XinferenceClientError, match="max_tokens must be at least 1"):
        handle.generate("x", {"stream": True, "max_tokens": 0})


def test_api_key_and_login_token_are_sent():
    server = FakeServer({("GET", "/v1/workers"): ok([]),
                         ("POST", "/token"): ok({"access_token": "tok-2"})})
    client = make_sync(server, api_key="key-1")
    client.get_workers_info()
    client.login("alice", "pw")
    client.get_workers_info()
    assert [r["auth"] for r in server.requests] == ["Bearer key-1", "Bearer key-1",
                                                   "Bearer tok-2"]
    assert server.requests[1]["json"] == {"username": "alice", "password": "pw"}


def routes_for_parity():
    return {
        ("POST", "/v1/models"): ok({"model_uid": "c", "model_engine": "llama.cpp"}),
        ("GET", "/v1/models"): ok({"object": "list", "data": [{"id": "c"}]}),
        ("GET", "/v1/models/c"): ok(LLM_DESC),
        ("GET", "/v1/models/e"): ok({"model_type": "embedding"}),
        ("DELETE", "/v1/models/c"): ok(None),
        ("GET", "/v1/models/missing"): lambda r: httpx.Response(404, json={"detail": "gone"}),
        ("POST", "/v1/chat/completions"): lambda r: (
            sse(*STREAM_BODY) if json.loads(r.content).get("stream")
            else httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})),
        ("POST", "/v1/embeddings"): ok({"data": [{"embedding": [0.1]}]}),
    }


def sync_scenario(client):
    out = [client.launch_model("smollm2", n_ctx=512), client.list_models(),
           client.describe_model("c")]
    chat = client.get_model("c")
    out.append(chat.chat([{"role": "user", "content": "q"}], generate_config={"max_tokens": 4}))
    out.append(list(chat.chat("q", generate_config={"stream": True})))
    out.append(client.get_model("e").create_embedding("x"))
    out.append(client.terminate_model("c"))
    try:
        client.describe_model("missing")
    except XinferenceClientError as exc:
        out.append((exc.status_code, str(exc)))
    return out


async def async_scenario(client):
    out = [await client.launch_model("smollm2", n_ctx=512), await client.list_models(),
           await client.describe_model("c")]
    chat = await client.get_model("c")
    out.append(await chat.chat([{"role": "user", "content": "q"}],
                               generate_config={"max_tokens": 4}))
    out.append([c async for c in await chat.chat("q", generate_config={"stream": True})])
    out.append(await (await client.get_model("e")).create_embedding("x"))
    out.append(await client.terminate_model("c"))
    try:
        await client.describe_model("missing")
    except XinferenceClientError as exc:
        out.append((exc.status_code, str(exc)))
    await client.close()
    return out


def test_async_client_sends_the_same_requests_and_returns_the_same_results():
    sync_server, async_server = FakeServer(routes_for_parity()), FakeServer(routes_for_parity())
    with make_sync(sync_server) as client:
        sync_out = sync_scenario(client)
    async_out = asyncio.run(async_scenario(make_async(async_server)))
    assert sync_out == async_out
    assert sync_server.requests == async_server.requests
    assert len(sync_server.requests) == 10
    assert sync_out[-1] == (404, "Failed to describe model 'missing' (HTTP 404): gone")


def test_async_mid_stream_error_matches_sync():
    error = b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'

    async def run():
        client = make_async(chat_stream_server(STREAM_BODY[1], b"\n", error))
        stream = await (await client.get_model("c")).chat("q", generate_config={"stream": True})
        got = []
        with pytest.raises(XinferenceClientError, match="boom"):
            async for chunk in stream:
                got.append(chunk)
        await client.close()
        return got

    assert len(asyncio.run(run())) == 1


def test_server_down_names_the_endpoint_sync_and_async():
    endpoint = f"http://127.0.0.1:{free_port()}"
    with Client(endpoint) as client:
        with pytest.raises(XinferenceConnectionError) as info:
            client.list_models()
    assert endpoint in str(info.value) and "GET /v1/models" in str(info.value)
    assert info.value.status_code is None

    async def run():
        async with AsyncClient(endpoint) as client:
            await client.get_workers_info()

    with pytest.raises(XinferenceConnectionError, match=endpoint):
        asyncio.run(run())


def test_endpoint_without_scheme_gets_http():
    assert Client("127.0.0.1:9997/").base_url == "http://127.0.0.1:9997"


def test_importing_the_client_imports_nothing_of_the_server():
    shared = {"xinference.model", "xinference.model.operations"}
    server = ("xinference.core", "xinference.api", "xinference.model.", "xoscar", "fastapi",
              "torch", "pydantic")
    loaded = imported_by("import xinference.client")
    assert [m for m in loaded if m.startswith(server) and m not in shared] == []


class _Recorder:
    """A real HTTP server on 127.0.0.1 that records requests and answers from ``routes``."""

    def __init__(self, routes):
        import http.server
        import threading

        recorder = self
        self.records = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                recorder.records.append((self.command, self.path, json.loads(raw) if raw else None))
                payload = json.dumps(routes.get((self.command, path), {})).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _drive(client):
    client.launch_model("smollm2", model_engine="llama.cpp", quantization="Q4_1",
                        model_size_in_billions=0.5, n_ctx=1024)
    client.list_models()
    chat = client.get_model("c")
    chat.chat([{"role": "user", "content": "hi"}], generate_config={"max_tokens": 3})
    chat.generate("Once", generate_config={"max_tokens": 3})
    client.get_model("e").create_embedding(["a"])
    client.list_model_registrations("LLM")
    client.query_engine_by_model_name("smollm2")
    client.terminate_model("c")


def test_requests_match_the_official_xinference_client():
    official = pytest.importorskip("xinference_client")
    routes = {("POST", "/v1/models"): {"model_uid": "c"},
              ("GET", "/v1/models"): {"object": "list", "data": []},
              ("GET", "/v1/models/c"): LLM_DESC,
              ("GET", "/v1/models/e"): {"model_type": "embedding"},
              ("GET", "/v1/cluster/auth"): {"auth": False}}
    ours, theirs = _Recorder(routes), _Recorder(routes)
    try:
        with Client(ours.url) as client:
            _drive(client)
        _drive(official.RESTfulClient(theirs.url))
    finally:
        ours.stop()
        theirs.stop()
    reference = [r for r in theirs.records if r[1] != "/v1/cluster/auth"]
    assert [r[:2] for r in ours.records] == [r[:2] for r in reference]
    for (_, path, mine), (_, _, ref) in zip(ours.records, reference):
        ref = {k: v for k, v in (ref or {}).items() if v is not None}
        if path == "/v1/models" and mine:
            assert {k: v for k, v in ref.items() if k != "n_worker"} == mine
        else:
            assert (mine or {}) == ref
