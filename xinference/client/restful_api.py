"""The client's calls, written once: each method describes a REST call as data.

:class:`ClientAPI` holds every method; :class:`~xinference.client.Client` and
:class:`~xinference.client.AsyncClient` only choose the runner that executes
the calls (the sync one returns results, the async one awaitables).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from .calls import Call, bool_param, drop_none, seg, size_to_wire
from .handles import handle_for


def _models_by_uid(data: Any) -> Dict[str, Dict[str, Any]]:
    items = data.get("data", []) if isinstance(data, dict) else (data or [])
    return {item["id"]: item for item in items}


def _field(name: str, default: Any = None):
    def parse(data: Any) -> Any:
        return data.get(name, default) if isinstance(data, dict) else data
    return parse


def launch_call(model_name: str, model_type: str = "LLM", model_engine: Optional[str] = None,
                model_uid: Optional[str] = None,
                model_size_in_billions: Union[int, float, str, None] = None,
                model_format: Optional[str] = None, quantization: Optional[str] = None,
                replica: int = 1, n_gpu: Union[int, str, None] = "auto",
                request_limits: Optional[int] = None, worker_ip: Optional[str] = None,
                gpu_idx: Union[int, List[int], None] = None, **kwargs: Any) -> Call:
    """The ``POST /v1/models`` call; its answer is the server's dict (uid, engine, ...).

    Extra keyword arguments go into the body as engine options, except
    ``wait_ready`` (a query parameter; ``False`` returns before the model loads).
    ``n_gpu`` is always sent, since ``None`` means "CPU only".
    """
    wait_ready = kwargs.pop("wait_ready", True)
    body = drop_none({
        "model_uid": model_uid, "model_engine": model_engine,
        "model_size_in_billions": size_to_wire(model_size_in_billions),
        "model_format": model_format, "quantization": quantization,
        "request_limits": request_limits, "worker_ip": worker_ip, "gpu_idx": gpu_idx})
    body.update({"model_name": model_name, "model_type": model_type, "replica": replica,
                 "n_gpu": n_gpu})
    body.update(drop_none(kwargs))
    params = None if wait_ready else {"wait_ready": "false"}
    return Call("POST", "/v1/models", f"launch model {model_name!r}", json=body, params=params)


class ClientAPI:
    """Every call of the Xinference REST client, shared by the sync and async clients."""

    _runner: Any

    @property
    def base_url(self) -> str:
        """The server's address, e.g. ``http://127.0.0.1:9997``."""
        return self._runner.base_url

    def execute(self, call: Call) -> Any:
        """Run a described call with this client's connection and credentials."""
        return self._runner.run(call)

    def list_models(self) -> Any:
        """Running models: ``{uid: description}``."""
        return self.execute(Call("GET", "/v1/models", "list models", parse=_models_by_uid))

    def launch_model(self, model_name: str, model_type: str = "LLM",
                     model_engine: Optional[str] = None, model_uid: Optional[str] = None,
                     model_size_in_billions: Union[int, float, str, None] = None,
                     model_format: Optional[str] = None, quantization: Optional[str] = None,
                     replica: int = 1, n_gpu: Union[int, str, None] = "auto",
                     request_limits: Optional[int] = None, worker_ip: Optional[str] = None,
                     gpu_idx: Union[int, List[int], None] = None,
                     enable_thinking: Optional[bool] = None,
                     enable_virtual_env: Optional[bool] = None,
                     virtual_env_packages: Optional[List[str]] = None,
                     envs: Optional[Dict[str, str]] = None, **kwargs: Any) -> Any:
        """Launch a model and return its uid.

        Unknown keyword arguments are engine options (e.g. ``n_ctx=2048``);
        ``wait_ready=False`` returns as soon as the launch is accepted.
        """
        call = launch_call(
            model_name, model_type, model_engine, model_uid, model_size_in_billions,
            model_format, quantization, replica, n_gpu, request_limits, worker_ip, gpu_idx,
            enable_thinking=enable_thinking, enable_virtual_env=enable_virtual_env,
            virtual_env_packages=virtual_env_packages, envs=envs, **kwargs)
        return self.execute(call.with_parse(_field("model_uid")))

    def describe_model(self, model_uid: str) -> Any:
        """A running model's description: type, name, engine, abilities, replicas, status."""
        return self.execute(Call("GET", f"/v1/models/{seg(model_uid)}",
                                 f"describe model {model_uid!r}"))

    def get_model(self, model_uid: str) -> Any:
        """A handle to call the model: chat/generate, embedding, rerank, image or audio."""
        return self.execute(Call(
            "GET", f"/v1/models/{seg(model_uid)}", f"get model {model_uid!r}",
            parse=lambda desc: handle_for(self._runner, model_uid, desc)))

    def terminate_model(self, model_uid: str) -> Any:
        """Stop every replica of a model and forget it."""
        return self.execute(Call("DELETE", f"/v1/models/{seg(model_uid)}",
                                 f"terminate model {model_uid!r}", parse=lambda _: None))

    def add_model_replica(self, model_uid: str, replica: int = 1,
                          model_engine: Optional[str] = None,
                          n_gpu: Union[int, str, None] = None, **kwargs: Any) -> Any:
        """Start ``replica`` more replicas of a running model."""
        body = drop_none({"replica": replica, "model_engine": model_engine, "n_gpu": n_gpu,
                          **kwargs})
        return self.execute(Call("POST", f"/v1/models/{seg(model_uid)}/replicas",
                                 f"add a replica to model {model_uid!r}", json=body))

    def terminate_model_replica(self, model_uid: str, replica_id: Union[int, str]) -> Any:
        """Stop one replica; returns how many replicas remain when the server says."""
        return self.execute(Call(
            "DELETE", f"/v1/models/{seg(model_uid)}/replicas/{seg(replica_id)}",
            f"terminate replica {replica_id} of model {model_uid!r}",
            parse=_field("remaining_replicas")))

    def list_model_registrations(self, model_type: str, detailed: bool = False) -> Any:
        """Models that can be launched: ``[{"model_name", "is_builtin", ...}]``."""
        return self.execute(Call("GET", f"/v1/model_registrations/{seg(model_type)}",
                                 f"list {model_type} registrations",
                                 params={"detailed": bool_param(detailed)}))

    def get_model_registration(self, model_type: str, model_name: str) -> Any:
        """One registered family, with its specs."""
        return self.execute(Call(
            "GET", f"/v1/model_registrations/{seg(model_type)}/{seg(model_name)}",
            f"get the registration of {model_name!r}"))

    def register_model(self, model_type: str, model: str, persist: bool,
                       worker_ip: Optional[str] = None) -> Any:
        """Register a custom model; ``model`` is the family definition as a JSON string."""
        body = drop_none({"model": model, "persist": persist, "worker_ip": worker_ip})
        return self.execute(Call("POST", f"/v1/model_registrations/{seg(model_type)}",
                                 f"register a {model_type} model", json=body))

    def unregister_model(self, model_type: str, model_name: str) -> Any:
        """Remove a custom model's registration."""
        return self.execute(Call(
            "DELETE", f"/v1/model_registrations/{seg(model_type)}/{seg(model_name)}",
            f"unregister model {model_name!r}"))

    def query_engine_by_model_name(self, model_name: str, model_type: Optional[str] = "LLM",
                                   enable_virtual_env: Optional[bool] = None,
                                   include_unavailable: bool = False) -> Any:
        """Engines that can run a model: ``{engine: [{"model_format", "quantizations", ...}]}``.

        ``include_unavailable=True`` adds engines that cannot run here, each entry
        with ``"available": False`` and the ``"reason"``.
        """
        path = (f"/v1/engines/{seg(model_type)}/{seg(model_name)}" if model_type
                else f"/v1/engines/{seg(model_name)}")
        params = drop_none({"enable_virtual_env": bool_param(enable_virtual_env),
                            "all": "true" if include_unavailable else None})
        return self.execute(Call("GET", path, f"query the engines of {model_name!r}",
                                 params=params))

    def abort_request(self, model_uid: str, request_id: str, block_duration: int = 30) -> Any:
        """Stop a running request (one sent with ``request_id`` in its body)."""
        return self.execute(Call(
            "POST", f"/v1/models/{seg(model_uid)}/requests/{seg(request_id)}/abort",
            f"abort request {request_id!r}", json={"block_duration": block_duration}))

    def get_workers_info(self) -> Any:
        """Every worker with its resources and state."""
        return self.execute(Call("GET", "/v1/workers", "get the workers"))

    def get_cluster_info(self) -> Any:
        """The cluster's summary (workers, models, resources)."""
        return self.execute(Call("GET", "/v1/cluster/info", "get the cluster info"))

    def get_supervisor_info(self) -> Any:
        """The supervisor's address and version."""
        return self.execute(Call("GET", "/v1/supervisor", "get the supervisor info"))

    def get_status(self) -> Any:
        """The server's health answer (``GET /status``)."""
        return self.execute(Call("GET", "/status", "get the server status"))

    def list_cached_models(self, model_name: Optional[str] = None,
                           worker_ip: Optional[str] = None) -> Any:
        """Model files already downloaded, per worker."""
        params = drop_none({"model_name": model_name, "worker_ip": worker_ip})
        return self.execute(Call("GET", "/v1/cache/models", "list cached models",
                                 params=params, parse=_field("list")))

    def list_deletable_models(self, model_version: str, worker_ip: Optional[str] = None) -> Any:
        """The files that removing a cached model version would delete."""
        params = drop_none({"model_version": model_version, "worker_ip": worker_ip})
        return self.execute(Call("GET", "/v1/cache/models/files",
                                 f"list the files of {model_version!r}", params=params))

    def confirm_and_remove_model(self, model_version: str,
                                 worker_ip: Optional[str] = None) -> Any:
        """Delete a cached model version's files; returns whether it did."""
        params = drop_none({"model_version": model_version, "worker_ip": worker_ip})
        return self.execute(Call("DELETE", "/v1/cache/models",
                                 f"remove cached model {model_version!r}", params=params,
                                 parse=_field("result", False)))

    def vllm_models(self) -> Any:
        """Model names the vLLM engine supports on the server."""
        return self.execute(Call("GET", "/v1/models/vllm-supported", "list vLLM models"))

    def cluster_requires_auth(self) -> Any:
        """Whether the server asks for a login (``False`` for servers with no auth)."""
        return self.execute(Call("GET", "/v1/cluster/auth", "check authentication",
                                 parse=lambda data: bool((data or {}).get("auth"))))

    def login(self, username: str, password: str) -> Any:
        """Get a token and send it with every later call; returns the token answer."""
        def keep_token(data: Any) -> Any:
            self._runner.set_token(data["access_token"])
            return data
        return self.execute(Call("POST", "/token", f"log in as {username!r}",
                                 json={"username": username, "password": password},
                                 parse=keep_token))

    def stop_cluster(self) -> Any:
        """Stop every model, worker and the supervisor."""
        return self.execute(Call("POST", "/v1/clusters/stop", "stop the cluster"))

    abort_cluster = stop_cluster
