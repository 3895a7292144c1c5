"""SupervisorActor: the cluster's record of workers, models and replicas.

It is on the launch path (plan, place, ask workers, record states) and never on
the request path: the gateway asks it for a model's replica addresses and then
talks to the replicas directly. The actor is thin: it records intent and
delegates to :class:`ClusterController` (placement, recovery, rejoin), and runs
the monitor that marks silent workers lost and re-launches their replicas.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, Dict, List, Optional, Sequence

import xoscar as xo

from ..errors import InvalidRequestError
from ..model.registry import get_registry, normalize_model_type
from ..settings import get_settings
from .cluster_state import ClusterState
from .controller import ClusterController
from .launch_plan import engine_table, launch_request_from_body, plan_launch
from .messages import ReplicaReport
from .resources import WorkerResources

logger = logging.getLogger(__name__)


def _resources(data: Optional[Dict[str, Any]]) -> Optional[WorkerResources]:
    return None if not data else WorkerResources.from_dict(data)


def monitor_period(heartbeat_interval: float, lost_timeout: float) -> float:
    """How often to look for silent workers (a worker is lost within timeout + this)."""
    return max(0.05, min(heartbeat_interval, lost_timeout / 4))


class SupervisorActor(xo.StatelessActor):
    """Records models and their replicas; launches, scales and recovers them through workers.

    ``rejoin_window``: seconds after start during which workers may bring back
    replicas of models this supervisor does not know (a restarted supervisor);
    0 for ``xinference-local``, whose only worker lives in the same process.
    """

    def __init__(self, rejoin_window: float = 0.0, lost_timeout: Optional[float] = None,
                 heartbeat_interval: Optional[float] = None, strategy: Optional[str] = None,
                 allow_multi_replica_per_gpu: Optional[bool] = None):
        super().__init__()
        settings = get_settings()
        self._lost_timeout = lost_timeout or settings.worker_lost_timeout
        self._heartbeat_interval = heartbeat_interval or settings.heartbeat_interval
        self._rejoin_window = rejoin_window
        self._strategy = strategy
        self._allow_multi = allow_multi_replica_per_gpu
        self._restart_limit = settings.model_actor_auto_recover_limit
        self._controller: Optional[ClusterController] = None
        self._monitor: Optional[asyncio.Task] = None

    @classmethod
    def default_uid(cls) -> str:
        return "supervisor"

    async def __post_create__(self):
        state = ClusterState(self._lost_timeout, self._strategy, self._allow_multi,
                             startup_grace=self._rejoin_window)
        wait = min(self._rejoin_window, 2 * self._heartbeat_interval + 1)
        self._controller = ClusterController(state, self._worker_ref,
                                             rejoin_window=self._rejoin_window, rejoin_wait=wait,
                                             local_address=self.address,
                                             restart_limit=self._restart_limit)
        self._monitor = asyncio.create_task(self._watch())
        logger.info("Supervisor at %s: heartbeat every %.1f s, workers lost after %.1f s",
                    self.address, self._heartbeat_interval, self._lost_timeout)

    async def __pre_destroy__(self):
        if self._monitor is not None:
            self._monitor.cancel()
        if self._controller is not None:
            await self._controller.close()

    async def _watch(self) -> None:
        period = monitor_period(self._heartbeat_interval, self._lost_timeout)
        while True:
            await asyncio.sleep(period)
            try:
                await self._controller.check()
            except Exception:  # noqa: BLE001 - the monitor must outlive any one bad round
                logger.exception("The cluster monitor failed one round")

    @staticmethod
    async def _worker_ref(address: str):
        from .worker import WorkerActor

        return await xo.actor_ref(address=address, uid=WorkerActor.default_uid())

    # --- workers -----------------------------------------------------------------------------

    async def register_worker(self, address: str, resources: Optional[Dict[str, Any]] = None,
                              replicas: Sequence[ReplicaReport] = ()) -> Dict[str, Any]:
        """A worker (re-)joins; answers the replicas it must stop and the heartbeat period."""
        stop = self._controller.register_worker(address, _resources(resources), list(replicas))
        return {"terminate": stop, "heartbeat_interval": self._heartbeat_interval}

    async def heartbeat(self, address: str, resources: Optional[Dict[str, Any]] = None,
                        replicas: Optional[Sequence[ReplicaReport]] = None) -> bool:
        """False means "unknown or lost worker: register again with your replicas"."""
        return self._controller.heartbeat(address, _resources(resources), replicas)

    async def unregister_worker(self, address: str) -> None:
        self._controller.unregister_worker(address)

    async def list_workers(self) -> List[Dict[str, Any]]:
        return self._controller.workers()

    async def report_replica_failed(self, model_uid: str, replica_uid: str, reason: str) -> None:
        """A replica's process died: start it again now if its restart budget allows."""
        if self._controller.report_replica_failed(model_uid, replica_uid, reason):
            await self._controller.check()

    async def cluster_info(self) -> Dict[str, Any]:
        workers = self._controller.workers()
        alive = [w for w in workers if w["status"] == "ALIVE"]
        return {
            "supervisor_address": self.address,
            "workers": workers,
            "alive_workers": len(alive),
            "lost_workers": len(workers) - len(alive),
            "models": len(self._controller.models),
            "replicas": sum(w["replicas"] for w in workers),
            "launch_strategy": self._controller.state.strategy or get_settings().launch_strategy,
            "heartbeat_interval": self._heartbeat_interval,
            "worker_lost_timeout": self._lost_timeout,
            "uptime": self._controller.uptime(),
            "cpu_count": sum((w["resources"] or {}).get("cpu_count", 0) for w in alive),
            "gpu_count": sum(len((w["resources"] or {}).get("gpus", [])) for w in alive),
        }

    # --- models ------------------------------------------------------------------------------

    async def launch_model(self, body: Dict[str, Any], wait_ready: bool = True) -> Dict[str, Any]:
        """Launch from a POST /v1/models body; returns uid and chosen engine."""
        request = launch_request_from_body(body)
        family, config = plan_launch(request, get_registry())
        return await self._controller.launch_model(request, family.to_dict(), config, wait_ready)

    async def add_replicas(self, model_uid: str, count: int = 1,
                           wait_ready: bool = True) -> List[Dict[str, Any]]:
        """Start ``count`` more replicas of a running model (placed like a launch)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidRequestError(f"replica must be a positive integer, not {count!r}",
                                      param="replica")
        return await self._controller.add_replicas(model_uid, count, wait_ready)

    async def remove_replica(self, model_uid: str, replica_id: int) -> Dict[str, Any]:
        """Stop one replica for good; the answer says how many remain."""
        remaining = await self._controller.remove_replica(model_uid, int(replica_id))
        return {"model_uid": model_uid, "remaining_replicas": remaining}

    async def terminate_model(self, model_uid: str) -> None:
        await self._controller.terminate_model(model_uid)

    async def terminate_all(self) -> None:
        await self._controller.terminate_all()

    async def stop_cluster(self, exit_delay: float = 0.5) -> Dict[str, Any]:
        """Terminate every model, stop every worker, then end this process (SIGTERM to itself)."""
        models = len(self._controller.models)
        await self._controller.terminate_all()
        workers = [a for a in self._controller.alive_workers() if a != self.address]
        await self._controller.stop_workers()
        logger.warning("Cluster stop requested: %d model(s) and %d worker(s) stopped", models,
                       len(workers))
        asyncio.get_running_loop().call_later(exit_delay, os.kill, os.getpid(), signal.SIGTERM)
        return {"models": models, "workers": len(workers)}

    async def list_models(self) -> List[Dict[str, Any]]:
        return self._controller.list_models()

    async def describe_model(self, model_uid: str) -> Dict[str, Any]:
        return self._controller.describe_model(model_uid)

    async def get_replicas(self, model_uid: str) -> Dict[str, Any]:
        """The model's type and its replicas (the gateway routes to the READY ones)."""
        return await self._controller.get_replicas(model_uid)

    # --- registrations and engines -----------------------------------------------------------

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
