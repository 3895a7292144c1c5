"""The in-process API tier's cluster: fake models behind the real app, no process, no xoscar.

:class:`LocalCluster` stands where the supervisor actor stands for the gateway
(``get_replicas``, ``list_models``, ``launch_model`` ...). Each replica is a
:class:`LocalReplica`: the model actor's methods over a real
:class:`~xinference.core.replica_service.ReplicaService` on the fake engine (a
:class:`LocalEngine`, which keeps the chat requests it is given). Calls
are pickled on their way in, as they are on their way to a model's process.
:func:`make_app` puts both behind :func:`~xinference.api.app.create_app`, and
:class:`Api` holds the HTTP and SDK clients that talk to it over an ASGI transport.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional

import anthropic
import httpx
import httpx2
import openai
from fastapi import FastAPI

from xinference.api.app import create_app
from xinference.api.gateway import Gateway
from xinference.core import replica_names
from xinference.core.replica_service import ReplicaService
from xinference.errors import DuplicateModelError, ModelNotFoundError
from xinference.model.engines.base import EngineConfig
from xinference.model.engines.fake import FakeEngine
from xinference.model.llm.deltas import Generation
from xinference.model.operations import InferenceCall
from xinference.settings import Settings

ADDRESS = "in-process:0"
BASE_URL = "http://testserver"


class LocalEngine(FakeEngine):
    """The fake engine, keeping each chat request as the serving layer hands it over
    (``requests``). ``refusal``: ``start_chat`` raises it, before anything is generated;
    ``failure``: each generation raises it after its first delta."""

    def __init__(self, config: EngineConfig):
        super().__init__(config)
        self.requests: List[Dict[str, Any]] = []
        self.refusal: Optional[Exception] = None
        self.failure: Optional[Exception] = None

    def start_chat(self, request: Dict[str, Any]) -> Generation:
        self.requests.append(request)
        if self.refusal is not None:
            raise self.refusal
        generation = super().start_chat(request)
        if self.failure is not None:
            generation.deltas = _failing(generation.deltas, self.failure)
        return generation


async def _failing(deltas: AsyncIterator[Any], failure: Exception) -> AsyncIterator[Any]:
    try:
        yield await deltas.__anext__()
    finally:
        await deltas.aclose()
    raise failure


class LocalStream:
    """What ``serve_stream`` returns: the replica's SSE batches, stopped by ``destroy``."""

    def __init__(self, frames: AsyncIterator[bytes], fail_after: Optional[int]):
        self._frames = frames
        self._fail_after = fail_after
        self.sent = 0
        self.destroyed = False

    def __aiter__(self) -> "LocalStream":
        return self

    async def __anext__(self) -> bytes:
        if self._fail_after is not None and self.sent >= self._fail_after:
            raise ConnectionResetError("the model's process went away")
        batch = await self._frames.__anext__()
        self.sent += 1
        return batch

    async def destroy(self) -> None:
        self.destroyed = True
        await self._frames.aclose()


class LocalReplica:
    """One replica's model-actor methods, served in this process by a ReplicaService.

    ``status`` and ``error`` are what the supervisor lists for it; ``dead`` makes every
    call fail as a killed process does; ``fail_streams_after``: each stream breaks after
    that many batches with the connection error a dead process gives.
    """

    def __init__(self, engine: LocalEngine):
        self.engine = engine
        self.service = ReplicaService(engine)
        self.calls: List[InferenceCall] = []
        self.streams: List[LocalStream] = []
        self.status = "READY"
        self.error: Optional[str] = None
        self.dead = False
        self.fail_streams_after: Optional[int] = None

    def _arrive(self, call: InferenceCall) -> InferenceCall:
        if self.dead:
            raise ConnectionRefusedError("[Errno 111] Connect call failed")
        call = pickle.loads(pickle.dumps(call))
        self.calls.append(call)
        return call

    async def data_plane_address(self) -> None:
        return None

    async def serve(self, call: InferenceCall) -> bytes:
        return await self.service.answer(self._arrive(call))

    async def serve_stream(self, call: InferenceCall) -> LocalStream:
        stream = LocalStream(self.service.stream(self._arrive(call)), self.fail_streams_after)
        self.streams.append(stream)
        return stream

    async def abort(self, request_id: str) -> bool:
        return await self.service.abort(request_id)


@dataclass
class LocalModel:
    """A launched model: its uid, type, name and replicas (``created`` and
    ``context_length`` are listed as the supervisor lists them)."""

    uid: str
    model_type: str
    model_name: str
    replicas: List[LocalReplica]
    created: int = field(default_factory=lambda: int(time.time()))
    context_length: Optional[int] = None

    @property
    def requests(self) -> List[Dict[str, Any]]:
        """The chat requests its engines were given, replica by replica."""
        return [request for replica in self.replicas for request in replica.engine.requests]

    def replica_dicts(self) -> List[Dict[str, Any]]:
        return [{"replica_uid": replica_names.replica_uid(self.uid, index), "replica_id": index,
                 "address": ADDRESS, "status": replica.status, "error": replica.error}
                for index, replica in enumerate(self.replicas)]

    @property
    def status(self) -> str:
        states = [replica.status for replica in self.replicas]
        return "READY" if "READY" in states else states[0]

    def describe(self) -> Dict[str, Any]:
        return {"model_uid": self.uid, "model_type": self.model_type,
                "model_name": self.model_name, "model_engine": "fake",
                "replica": len(self.replicas), "status": self.status,
                "replicas": self.replica_dicts(), "created": self.created,
                "context_length": self.context_length}


class LocalCluster:
    """The supervisor as the gateway sees it, holding fake models launched in-process."""

    address = ADDRESS

    def __init__(self):
        self.models: Dict[str, LocalModel] = {}

    def launch(self, uid: str, model_type: str = "LLM", replicas: int = 1,
               model_name: str = "fake", **options: Any) -> LocalModel:
        """Start ``replicas`` fake engines as model ``uid`` (options go to the engine)."""
        if uid in self.models:
            raise DuplicateModelError(f"Model {uid!r} is already running", param="model_uid")
        engines = []
        for index in range(replicas):
            engine = LocalEngine(EngineConfig(
                model_uid=uid, model_type=model_type, model_name=model_name, engine="fake",
                model_format="fake", model_path="", options=dict(options),
                replica_id=str(index)))
            engine.load()
            engines.append(LocalReplica(engine))
        model = self.models[uid] = LocalModel(uid, model_type, model_name, engines)
        return model

    def host(self, engine: Any) -> LocalModel:
        """Serve an engine the test built and loaded (a real one, e.g. an image engine) as
        model ``engine.config.model_uid``, with one replica."""
        cfg = engine.config
        if cfg.model_uid in self.models:
            raise DuplicateModelError(f"Model {cfg.model_uid!r} is already running",
                                      param="model_uid")
        model = LocalModel(cfg.model_uid, cfg.model_type, cfg.model_name,
                           [LocalReplica(engine)])
        self.models[cfg.model_uid] = model
        return model

    def model(self, uid: str) -> LocalModel:
        if uid not in self.models:
            raise ModelNotFoundError(f"No running model with uid {uid!r}", param="model")
        return self.models[uid]

    async def make_ref(self, address: str, replica_uid: str) -> LocalReplica:
        """The gateway's ref maker: the replica named ``replica_uid``."""
        model_uid, index = replica_names.split_replica_uid(replica_uid)
        return self.model(model_uid).replicas[index]

    async def get_replicas(self, model_uid: str) -> Dict[str, Any]:
        model = self.model(model_uid)
        return {"model_type": model.model_type, "status": model.status,
                "replicas": model.replica_dicts()}

    async def launch_model(self, body: Dict[str, Any], wait_ready: bool = True) -> Dict[str, Any]:
        known = ("model_name", "model_type", "model_uid", "model_engine", "replica")
        options = {k: v for k, v in body.items() if k not in known}
        uid = body.get("model_uid") or body["model_name"]
        self.launch(uid, body.get("model_type", "LLM"), body.get("replica", 1),
                    body["model_name"], **options)
        return {"model_uid": uid, "model_engine": "fake"}

    async def list_models(self) -> List[Dict[str, Any]]:
        out = []
        for uid in sorted(self.models):
            entry = self.models[uid].describe()
            entry.pop("replicas")
            out.append({"id": uid, "object": "model", "owned_by": "xinference", **entry})
        return out

    async def describe_model(self, model_uid: str) -> Dict[str, Any]:
        return self.model(model_uid).describe()

    async def terminate_model(self, model_uid: str) -> None:
        model = self.models.pop(self.model(model_uid).uid)
        for replica in model.replicas:
            replica.engine.close()

    async def list_workers(self) -> List[Dict[str, Any]]:
        return [{"address": ADDRESS, "status": "ALIVE"}]


def make_app(cluster: LocalCluster, **settings: Any) -> FastAPI:
    """The real app, its gateway routed to ``cluster`` (``settings``: Settings fields)."""
    config = Settings(**settings)
    gateway = Gateway(cluster.address, config, supervisor=cluster, make_ref=cluster.make_ref)
    return create_app(cluster.address, config, gateway)


@dataclass
class Api:
    """An app over a LocalCluster, with an httpx client and an ``openai`` client on it."""

    cluster: LocalCluster
    app: FastAPI
    http: httpx.AsyncClient
    openai: openai.AsyncOpenAI
    extra_clients: List[Any] = field(default_factory=list)

    @classmethod
    def open(cls, cluster: LocalCluster, **settings: Any) -> "Api":
        app = make_app(cluster, **settings)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        client = openai.AsyncOpenAI(base_url=f"{BASE_URL}/v1", api_key="none", max_retries=0,
                                    http_client=http)
        return cls(cluster, app, http, client)

    def anthropic(self, prefix: str = "") -> anthropic.AsyncAnthropic:
        """An ``anthropic`` SDK client on the same app (``prefix``: e.g. ``/anthropic``).
        That SDK takes only an ``httpx2`` client."""
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app))
        self.extra_clients.append(http)
        return anthropic.AsyncAnthropic(base_url=BASE_URL + prefix, api_key="x", max_retries=0,
                                        http_client=http)

    async def __aenter__(self) -> "Api":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        for client in [self.http, *self.extra_clients]:
            await client.aclose()


def sse_data(body: str) -> List[str]:
    """The ``data:`` payloads of an SSE body, in order (pings and event names left out)."""
    return [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]
