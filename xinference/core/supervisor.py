"""SupervisorActor: the cluster's record of workers and models.

It is on the launch path (plan, place, ask workers, record states) and never on
the request path: the gateway asks it once for a model's replica addresses and
then talks to the replicas directly.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any, Dict, List, Optional

import xoscar as xo

from ..errors import DuplicateModelError, ModelNotFoundError, XinferenceError
from ..model.registry import get_registry, normalize_model_type
from .launch_plan import engine_table, launch_request_from_body, plan_launch
from .messages import ModelRecord, ReplicaInfo, ReplicaSpec, ReplicaStatus

logger = logging.getLogger(__name__)


class SupervisorActor(xo.StatelessActor):
    """Records models and their replicas; launches through workers."""

    def __init__(self):
        super().__init__()
        self._workers: Dict[str, float] = {}
        self._models: Dict[str, ModelRecord] = {}
        self._started = time.time()

    @classmethod
    def default_uid(cls) -> str:
        return "supervisor"

    async def add_worker(self, worker_address: str) -> None:
        self._workers[worker_address] = time.time()
        logger.info("Worker %s registered", worker_address)

    async def list_workers(self) -> List[str]:
        return list(self._workers)

    async def _worker_ref(self, address: str):
        from .worker import WorkerActor

        return await xo.actor_ref(address=address, uid=WorkerActor.default_uid())

    def _choose_workers(self, count: int) -> List[str]:
        if not self._workers:
            raise XinferenceError("no worker is registered with the supervisor")
        load = {w: 0 for w in self._workers}
        for record in self._models.values():
            for replica in record.replicas:
                if replica.worker_address in load:
                    load[replica.worker_address] += 1
        chosen = []
        for _ in range(count):
            worker = min(load, key=lambda w: load[w])
            chosen.append(worker)
            load[worker] += 1
        return chosen

    async def launch_model(self, body: Dict[str, Any], wait_ready: bool = True) -> Dict[str, Any]:
        """Launch from a POST /v1/models body; returns uid and chosen engine."""
        request = launch_request_from_body(body)
        family, config = plan_launch(request, get_registry())
        uid = config.model_uid
        if uid in self._models:
            raise DuplicateModelError(f"A model with uid {uid!r} is already running; "
                                      "choose another --model-uid or terminate it first",
                                      param="model_uid")
        record = ModelRecord(model_uid=uid, request=request, engine_config=config,
                             family=family.to_dict())
        self._models[uid] = record
        logger.info("Launching %s as %r on engine %s (%d replica(s))", family.model_name, uid,
                    config.engine, request.replica)
        workers = self._choose_workers(request.replica)
        tasks = [self._launch_replica(record, i, w) for i, w in enumerate(workers)]
        if wait_ready:
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures and len(failures) == len(results):
                self._models.pop(uid, None)
                raise failures[0]
        else:
            for task in tasks:
                asyncio.create_task(task)
        return {"model_uid": uid, "model_engine": config.engine,
                "model_format": config.model_format, "quantization": config.quantization}

    async def _launch_replica(self, record: ModelRecord, index: int, worker: str) -> None:
        replica_uid = f"{record.model_uid}-{index}"
        info = ReplicaInfo(replica_uid=replica_uid, replica_id=index, worker_address=worker)
        record.replicas.append(info)
        config = copy.deepcopy(record.engine_config)
        config.replica_id = str(index)
        spec = ReplicaSpec(replica_uid=replica_uid, engine_config=config,
                           envs=dict(record.request.envs), gpu_idx=record.request.gpu_idx)
        try:
            ref = await self._worker_ref(worker)
            result = await ref.launch_replica(spec)
        except BaseException as exc:
            info.status, info.error = ReplicaStatus.FAILED, _reason(exc)
            info.updated_at = time.time()
            logger.error("Replica %s failed to launch: %s", replica_uid, info.error)
            raise
        info.address, info.pid = result["address"], result.get("pid")
        if record.model_uid not in self._models or info.status != ReplicaStatus.LAUNCHING:
            await ref.terminate_replica(replica_uid)
            return
        info.status, info.updated_at = ReplicaStatus.READY, time.time()

    async def report_replica_failed(self, model_uid: str, replica_uid: str, reason: str) -> None:
        record = self._models.get(model_uid)
        if record is None:
            return
        for info in record.replicas:
            if info.replica_uid == replica_uid and info.status != ReplicaStatus.TERMINATING:
                info.status, info.error, info.updated_at = ReplicaStatus.FAILED, reason, time.time()
                logger.error("Replica %s of %s failed: %s", replica_uid, model_uid, reason)

    def _record(self, model_uid: str) -> ModelRecord:
        record = self._models.get(model_uid)
        if record is None:
            raise ModelNotFoundError(f"No running model with uid {model_uid!r}; "
                                     "`xinference list` shows the running ones", param="model")
        return record

    async def terminate_model(self, model_uid: str) -> None:
        record = self._record(model_uid)
        for info in record.replicas:
            info.status = ReplicaStatus.TERMINATING
        await asyncio.gather(*(self._stop_replica(info) for info in record.replicas),
                             return_exceptions=True)
        self._models.pop(model_uid, None)
        logger.info("Terminated %s", model_uid)

    async def _stop_replica(self, info: ReplicaInfo) -> None:
        ref = await self._worker_ref(info.worker_address)
        await ref.terminate_replica(info.replica_uid)

    async def terminate_all(self) -> None:
        await asyncio.gather(*(self.terminate_model(uid) for uid in list(self._models)),
                             return_exceptions=True)

    async def list_models(self) -> List[Dict[str, Any]]:
        return [record.list_entry() for record in self._models.values()]

    async def describe_model(self, model_uid: str) -> Dict[str, Any]:
        return self._record(model_uid).describe()

    async def get_replicas(self, model_uid: str) -> Dict[str, Any]:
        """The model's type and its replicas (the gateway routes to the READY ones)."""
        record = self._record(model_uid)
        return {"model_type": record.engine_config.model_type, "status": record.status,
                "replicas": [r.to_dict() for r in record.replicas]}

    async def list_registrations(self, model_type: str, detailed: bool = False) -> List[Dict]:
        out = []
        for family in get_registry().list(model_type):
            entry = {"model_name": family.model_name, "is_builtin": family.built_in}
            if detailed:
                entry.update(family.to_dict())
            out.append(entry)
        return out

    async def get_registration(self, model_type: str, model_name: str) -> Dict[str, Any]:
        return get_registry().get(model_type, model_name).to_dict()

    async def query_engines(self, model_name: str, model_type: Optional[str] = None,
                            include_unavailable: bool = False) -> Dict[str, List[Dict]]:
        registry = get_registry()
        if model_type:
            family = registry.get(normalize_model_type(model_type), model_name)
        else:
            family = registry.find_any_type(model_name)
        return engine_table(family, include_unavailable)

    async def cluster_info(self) -> Dict[str, Any]:
        return {"workers": list(self._workers), "models": len(self._models),
                "uptime": time.time() - self._started}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, XinferenceError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
