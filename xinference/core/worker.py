"""WorkerActor: starts and stops model replicas on this host, one sub-process each.

For each replica it resolves the model's files (downloading them into the cache
first when they are not on this host), starts a sub-pool with the
model's environment variables (and only that replica's process gets them),
creates the :class:`ModelActor` there and loads it. When a replica's process
dies, it tells the supervisor why. A :class:`HeartbeatLoop` keeps the worker
registered with its supervisor, reporting its resources and its replicas.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import xoscar as xo

from ..errors import ModelLaunchError, XinferenceError
from ..model.download import ensure_model_files
from ..model.registry import ModelFamily
from ..settings import get_settings
from . import pool as pool_hooks
from . import pool_setup
from .heartbeat import HeartbeatLoop
from .messages import ModelManifest, ReplicaReport, ReplicaSpec
from .model_actor import ModelActor
from .resources import collect_local_resources, host_of

logger = logging.getLogger(__name__)

# Model processes must not fight over the 2 cores of a small box: engines set their own threads.
_DEFAULT_MODEL_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                      "HF_HUB_OFFLINE": "1"}

# Read by the worker's metrics exporter (xinference-worker --metrics-exporter-port).
WORKER_METRICS: Dict[str, float] = {"replicas": 0, "heartbeats": 0, "registrations": 0,
                                    "supervisor_failures": 0}


@dataclass
class _Replica:
    spec: ReplicaSpec
    address: Optional[str] = None
    pid: Optional[int] = None
    ready: bool = False
    cancelled: bool = False

    def report(self) -> ReplicaReport:
        cfg = self.spec.engine_config
        return ReplicaReport(self.spec.replica_uid, cfg.model_uid, self.spec.index,
                             list(self.spec.gpu_idx or []), self.ready, self.address, self.pid,
                             self.spec)


def model_env(spec: ReplicaSpec) -> Dict[str, str]:
    """The environment added to a replica's process: defaults, its GPUs, then the user's envs."""
    env = dict(_DEFAULT_MODEL_ENV)
    if spec.gpu_idx:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpu_idx)
    env.update(spec.envs)
    return env


class WorkerActor(xo.StatelessActor):
    """One per host. Holds the replicas it started (or is starting), keyed by replica uid.

    With ``supervisor_address`` or ``endpoint`` (the supervisor's REST URL, where
    ``/v1/address`` names its actor address) it registers and heartbeats.
    """

    def __init__(self, supervisor_address: Optional[str] = None,
                 log_file: Optional[str] = None, log_level: str = "INFO",
                 endpoint: Optional[str] = None, host: Optional[str] = None,
                 heartbeat_interval: Optional[float] = None):
        super().__init__()
        self._supervisor_address = supervisor_address
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._host = host
        self._replicas: Dict[str, _Replica] = {}
        self._log_file = log_file
        self._log_level = log_level
        self._interval = heartbeat_interval or get_settings().heartbeat_interval
        self._link: Optional[HeartbeatLoop] = None
        self._link_task: Optional[asyncio.Task] = None

    @classmethod
    def default_uid(cls) -> str:
        return "worker"

    async def __post_create__(self):
        if self._supervisor_address or self._endpoint:
            self._link = HeartbeatLoop(self.address, self._supervisor, self._reports,
                                       self._resources, self._stop_replicas, self._interval,
                                       reset=self._forget_supervisor)
            self._link_task = asyncio.create_task(self._link.run())

    async def __pre_destroy__(self):
        if self._link_task is not None:
            self._link_task.cancel()

    # --- the supervisor ------------------------------------------------------------------------

    async def _supervisor(self):
        from .supervisor import SupervisorActor

        if self._supervisor_address is None:
            self._supervisor_address = await resolve_supervisor(self._endpoint, timeout=5)
        return await xo.actor_ref(address=self._supervisor_address,
                                  uid=SupervisorActor.default_uid())

    async def _forget_supervisor(self) -> None:
        WORKER_METRICS["supervisor_failures"] += 1
        if self._endpoint:
            self._supervisor_address = None

    def _reports(self) -> List[ReplicaReport]:
        return [r.report() for r in self._replicas.values()]

    async def _resources(self) -> Dict[str, Any]:
        if self._link is not None:
            WORKER_METRICS["heartbeats"] = self._link.heartbeats
            WORKER_METRICS["registrations"] = self._link.registrations
        WORKER_METRICS["replicas"] = len(self._replicas)
        host = self._host or host_of(self.address)
        return (await asyncio.to_thread(collect_local_resources, self.address, host)).to_dict()

    async def _stop_replicas(self, replica_uids: List[str]) -> None:
        await asyncio.gather(*(self.terminate_replica(uid) for uid in replica_uids))

    async def link_status(self) -> Dict[str, Any]:
        """How the link to the supervisor is doing (for tests and diagnostics)."""
        link = self._link
        return {"supervisor_address": self._supervisor_address,
                "registered": bool(link and link.registered),
                "registrations": link.registrations if link else 0,
                "heartbeats": link.heartbeats if link else 0}

    # --- replicas ----------------------------------------------------------------------------

    async def launch_replica(self, spec: ReplicaSpec) -> Dict[str, Any]:
        """Start the replica's process and load its engine; returns its address and pid."""
        current = self._replicas.get(spec.replica_uid)
        if current is not None:
            if current.ready:
                return {"address": current.address, "pid": current.pid}
            raise ModelLaunchError(f"replica {spec.replica_uid} is already loading on this worker")
        replica = self._replicas[spec.replica_uid] = _Replica(spec)
        try:
            return await self._start(replica)
        except BaseException:
            if self._replicas.get(spec.replica_uid) is replica:
                self._replicas.pop(spec.replica_uid)
            raise

    async def _start(self, replica: _Replica) -> Dict[str, Any]:
        spec = copy.deepcopy(replica.spec)
        cfg = spec.engine_config
        if not cfg.model_path:
            family = ModelFamily.from_dict(cfg.family, built_in=cfg.family.get("built_in", True))
            spec_match = family.find_specs(cfg.model_format, cfg.model_size_in_billions,
                                           cfg.quantization)[0]
            # Files not on this host yet are downloaded into the cache, in a thread.
            cfg.model_path = await asyncio.to_thread(
                ensure_model_files, family, spec_match, cfg.quantization, get_settings().cache_dir)
            if replica.cancelled:
                raise ModelLaunchError("the replica was stopped while its files were downloading")
        pool = pool_hooks.get_main_pool()
        address = replica.address = await pool.append_sub_pool(env=model_env(spec),
                                                              modules=[pool_setup.MODULE])
        try:
            ref = await xo.create_actor(ModelActor, spec, self._log_file, self._log_level,
                                        address=address, uid=spec.replica_uid)
            info = await ref.load()
        except BaseException as exc:
            await self._remove_pool(address)
            if replica.cancelled:
                raise ModelLaunchError("the replica was stopped while it was loading") from None
            if isinstance(exc, XinferenceError) or not isinstance(exc, Exception):
                raise
            raise ModelLaunchError(f"could not start the model process: {exc}") from None
        if replica.cancelled:
            await self._remove_pool(address)
            raise ModelLaunchError("the replica was stopped while it was loading")
        replica.pid, replica.ready = info.get("pid"), True
        pool_hooks.watch_sub_pool(address, self._make_down_handler(replica))
        logger.info("Replica %s running at %s (pid %s)", spec.replica_uid, address, replica.pid)
        return {"address": address, "pid": replica.pid, "engine": info}

    def _make_down_handler(self, replica: _Replica):
        spec = replica.spec

        def handler(address: str, reason: str) -> None:
            if self._replicas.get(spec.replica_uid) is replica:
                self._replicas.pop(spec.replica_uid)
            asyncio.get_event_loop().create_task(self._report_down(spec, reason))
        return handler

    async def _report_down(self, spec: ReplicaSpec, reason: str) -> None:
        try:
            supervisor = await self._supervisor()
            await supervisor.report_replica_failed(spec.engine_config.model_uid,
                                                   spec.replica_uid, reason)
        except Exception:  # noqa: BLE001 - the supervisor may itself be gone
            logger.warning("Could not report the loss of %s", spec.replica_uid)

    async def terminate_replica(self, replica_uid: str) -> None:
        """Stop a replica (one still loading is cancelled: its process is removed at once)."""
        replica = self._replicas.pop(replica_uid, None)
        if replica is None:
            return
        if not replica.ready:
            replica.cancelled = True
            if replica.address:
                await self._remove_pool(replica.address)
            return
        pool_hooks.unwatch_sub_pool(replica.address)
        try:
            ref = await xo.actor_ref(address=replica.address, uid=replica_uid)
            await asyncio.wait_for(xo.destroy_actor(ref), timeout=10)
        except Exception:  # noqa: BLE001 - the process is removed below either way
            logger.warning("Replica %s did not stop cleanly", replica_uid)
        await self._remove_pool(replica.address)

    async def _remove_pool(self, address: str) -> None:
        pool = pool_hooks.get_main_pool()
        pool_hooks.unwatch_sub_pool(address)
        if address in pool.sub_processes:
            try:
                await pool.remove_sub_pool(address, timeout=5, force=True)
            except Exception:  # noqa: BLE001
                logger.warning("Sub-pool %s did not stop cleanly", address)

    async def update_manifest(self, model_uid: str, manifest: ModelManifest) -> None:
        """The supervisor changed the model's replica set: keep it for a supervisor restart."""
        for replica in self._replicas.values():
            if replica.spec.engine_config.model_uid == model_uid:
                replica.spec.manifest = manifest

    async def list_replicas(self) -> List[Dict[str, Any]]:
        return [{"replica_uid": uid, "model_uid": r.spec.engine_config.model_uid,
                 "address": r.address, "pid": r.pid, "ready": r.ready}
                for uid, r in self._replicas.items()]

    async def terminate_all(self) -> None:
        await asyncio.gather(*(self.terminate_replica(uid) for uid in list(self._replicas)))

    async def leave(self) -> None:
        """Stop every replica, stop heartbeating and tell the supervisor this worker is gone."""
        if self._link_task is not None:
            self._link_task.cancel()
        await self.terminate_all()
        if self._link is None:
            return
        try:
            supervisor = await asyncio.wait_for(self._supervisor(), 3)
            await asyncio.wait_for(supervisor.unregister_worker(self.address), 3)
        except Exception:  # noqa: BLE001 - the supervisor may be stopping too
            pass

    async def shutdown(self, exit_delay: float = 0.3) -> None:
        """Leave the cluster and end this worker's process (``xinference stop-cluster``)."""
        await self.leave()
        logger.warning("Worker %s stopping on the supervisor's request", self.address)
        asyncio.get_running_loop().call_later(exit_delay, os.kill, os.getpid(), signal.SIGTERM)


async def resolve_supervisor(endpoint: str, timeout: float) -> str:
    """The supervisor's actor address, from ``GET {endpoint}/v1/address``."""
    import httpx

    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        resp = await client.get(f"{endpoint}/v1/address")
        resp.raise_for_status()
        address = resp.json()
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"{endpoint}/v1/address answered {address!r}, not an actor address")
    return address
