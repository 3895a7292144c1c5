"""WorkerActor: starts and stops model replicas on this host, one sub-process each.

For each replica it resolves the model's files, starts a sub-pool with the
model's environment variables, creates the :class:`ModelActor` there and loads
it. When a replica's process dies, it tells the supervisor why.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import xoscar as xo

from ..errors import ModelLaunchError, XinferenceError
from ..model.files import resolve_model_path
from ..model.registry import ModelFamily
from ..settings import get_settings
from . import pool as pool_hooks
from .messages import ReplicaSpec
from .model_actor import ModelActor

logger = logging.getLogger(__name__)

# Model processes must not fight over the 2 cores of a small box: engines set their own threads.
_DEFAULT_MODEL_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                      "HF_HUB_OFFLINE": "1"}


@dataclass
class _RunningReplica:
    spec: ReplicaSpec
    address: str
    pid: Optional[int] = None


class WorkerActor(xo.StatelessActor):
    """One per host. Holds the replicas it started, keyed by replica uid."""

    def __init__(self, supervisor_address: Optional[str] = None,
                 log_file: Optional[str] = None, log_level: str = "INFO"):
        super().__init__()
        self._supervisor_address = supervisor_address
        self._replicas: Dict[str, _RunningReplica] = {}
        self._log_file = log_file
        self._log_level = log_level

    @classmethod
    def default_uid(cls) -> str:
        return "worker"

    async def _supervisor(self):
        from .supervisor import SupervisorActor

        return await xo.actor_ref(address=self._supervisor_address or self.address,
                                  uid=SupervisorActor.default_uid())

    async def launch_replica(self, spec: ReplicaSpec) -> Dict[str, Any]:
        """Start the replica's process and load its engine; returns its address and pid."""
        cfg = spec.engine_config
        if not cfg.model_path:
            family = ModelFamily.from_dict(cfg.family, built_in=cfg.family.get("built_in", True))
            spec_match = family.find_specs(cfg.model_format, cfg.model_size_in_billions,
                                           cfg.quantization)[0]
            cfg.model_path = await asyncio.to_thread(
                resolve_model_path, family, spec_match, cfg.quantization, get_settings().cache_dir)
        env = {**_DEFAULT_MODEL_ENV, **spec.envs}
        pool = pool_hooks.get_main_pool()
        address = await pool.append_sub_pool(env=env)
        try:
            ref = await xo.create_actor(ModelActor, spec, self._log_file, self._log_level,
                                        address=address, uid=spec.replica_uid)
            info = await ref.load()
        except BaseException as exc:
            await self._remove_pool(address)
            if isinstance(exc, XinferenceError):
                raise
            raise ModelLaunchError(f"could not start the model process: {exc}") from None
        self._replicas[spec.replica_uid] = _RunningReplica(spec, address, info.get("pid"))
        pool_hooks.watch_sub_pool(address, self._make_down_handler(spec))
        return {"address": address, "pid": info.get("pid"), "engine": info}

    def _make_down_handler(self, spec: ReplicaSpec):
        def handler(address: str, reason: str) -> None:
            self._replicas.pop(spec.replica_uid, None)
            asyncio.get_event_loop().create_task(self._report_down(spec, reason))
        return handler

    async def _report_down(self, spec: ReplicaSpec, reason: str) -> None:
        try:
            supervisor = await self._supervisor()
            await supervisor.report_replica_failed(spec.engine_config.model_uid,
                                                   spec.replica_uid, reason)
        except Exception:  # noqa: BLE001 - the supervisor may itself be gone
            logger.exception("Could not report the loss of %s", spec.replica_uid)

    async def terminate_replica(self, replica_uid: str) -> None:
        replica = self._replicas.pop(replica_uid, None)
        if replica is None:
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

    async def list_replicas(self) -> List[Dict[str, Any]]:
        return [{"replica_uid": uid, "model_uid": r.spec.engine_config.model_uid,
                 "address": r.address, "pid": r.pid} for uid, r in self._replicas.items()]

    async def terminate_all(self) -> None:
        await asyncio.gather(*(self.terminate_replica(uid) for uid in list(self._replicas)))
