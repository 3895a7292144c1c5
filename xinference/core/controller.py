"""The supervisor's logic as a plain class: launches, scaling, recovery, worker rejoin.

:class:`ClusterController` owns the :class:`ClusterState` (workers, replica
records, placement) and the model records. It reaches workers through an
injected ``connect(address)`` coroutine that returns an object with the
:class:`WorkerActor` methods, so the unit tests drive it with fake workers and
a fake clock, and :class:`SupervisorActor` only forwards calls to it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import ModelNotFoundError, XinferenceError
from ..model.engines.base import EngineConfig
from . import replica_names
from .cluster_state import ClusterState, RecoveryPlan, ReplicaRecord, ReportedReplica
from .messages import LaunchRequest, ModelRecord, ReplicaReport, ReplicaSpec, ReplicaState
from .placement import PlacementRequest
from .resources import WorkerResources

logger = logging.getLogger(__name__)

Connect = Callable[[str], Awaitable[Any]]
S = ReplicaState


def describe_error(exc: BaseException) -> str:
    """A one-line cause for a replica's ``error`` field."""
    if isinstance(exc, XinferenceError):
        return exc.message
    text = str(exc)
    if text.startswith("[address="):
        text = text.split("] ", 1)[-1]
    return f"{type(exc).__name__}: {text}"


def worker_unreachable(exc: BaseException) -> bool:
    """The call failed because the worker's process could not be reached (not a model error)."""
    return not isinstance(exc, XinferenceError) and (
        isinstance(exc, ConnectionError)
        or type(exc).__name__ in ("ServerClosed", "ActorNotExist", "TimeoutError"))


def _bits_per_weight(model_format: str, quantization: Optional[str]) -> float:
    quant = (quantization or "none").lower()
    match = re.match(r"i?q(\d+)", quant) if model_format.lower().startswith("gguf") else None
    if match:
        return int(match.group(1)) * 1.1  # k-quant scales and the odd larger tensor
    match = re.search(r"(\d+)[-_ ]?bit|int(\d+)|^b?f(\d+)", quant)
    if match:
        return float(next(g for g in match.groups() if g))
    return 16.0


def estimate_memory(config: EngineConfig) -> Optional[int]:
    """Rough bytes one replica needs: its weights (size x bits per weight) plus 20 %.

    None when the spec's size is unknown (``model_size_in_billions`` such as
    ``"0_5"`` or ``"7"``); placement then counts replicas and measured memory only.
    """
    try:
        params = float(str(config.model_size_in_billions).replace("_", ".")) * 1e9
    except (TypeError, ValueError):
        return None
    return int(params * _bits_per_weight(config.model_format, config.quantization) / 8 * 1.2)


def placement_request(request: LaunchRequest, model_uid: str,
                      config: Optional[EngineConfig] = None) -> PlacementRequest:
    """The placement part of a launch request (validated: bad values name their field).

    A replica's memory is the ``memory_per_replica`` option (bytes) if given,
    else :func:`estimate_memory` of ``config``.
    """
    gpu_idx = tuple(request.gpu_idx) if request.gpu_idx else None
    memory = request.options.get("memory_per_replica")
    if memory is None and config is not None:
        memory = estimate_memory(config)
    return PlacementRequest(model_uid, request.replica, request.n_gpu, gpu_idx, request.worker_ip,
                            memory)


class ClusterController:
    """Models, replicas and workers of one supervisor.

    ``rejoin_window`` (seconds from start): workers that register within it may
    report replicas of models this supervisor does not know (it restarted); the
    models are rebuilt from the specs those replicas carry. Requests for an
    unknown model wait up to ``rejoin_wait`` seconds within that window.
    """

    def __init__(self, state: ClusterState, connect: Connect, *, rejoin_window: float = 0.0,
                 rejoin_wait: float = 0.0, call_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, local_address: Optional[str] = None,
                 restart_limit: int = 0):
        self.state = state
        self.restart_limit = max(0, restart_limit)
        self._restarts: Dict[Tuple[str, int], Tuple[int, str]] = {}  # (count, last reason)
        self.models: Dict[str, ModelRecord] = {}
        self._connect = connect
        self._clock = clock
        self._started = clock()
        self._rejoin_until = self._started + rejoin_window
        self._rejoin_wait = rejoin_wait
        self.call_timeout = call_timeout
        self.local_address = local_address
        self._tasks: Set[asyncio.Task] = set()
        self._unplaced: Set[Tuple[str, int]] = set()
        self._launching: Set[Tuple[str, int, str]] = set()

    # --- helpers -----------------------------------------------------------------------------

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("Background task failed: %s", describe_error(task.exception()))

    async def close(self) -> None:
        """Cancel the background launches and stops (the supervisor is going away)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def model(self, model_uid: str) -> ModelRecord:
        record = self.models.get(model_uid)
        if record is None:
            raise ModelNotFoundError(f"No running model with uid {model_uid!r}; "
                                     "`xinference list` shows the running ones", param="model")
        return record

    def _spec(self, model: ModelRecord, record: ReplicaRecord) -> ReplicaSpec:
        config: EngineConfig = copy.deepcopy(model.engine_config)
        config.replica_id = str(record.index)
        config.gpu_idx = list(record.gpu_idx) or None
        entry = self.state.replicas.model(model.model_uid)
        return ReplicaSpec(record.replica_uid, config, dict(model.request.envs),
                           list(record.gpu_idx) or None, record.index,
                           model.manifest(entry.request.replica, entry.removed))

    def _live_record(self, record: ReplicaRecord) -> Optional[ReplicaRecord]:
        """The table's record for this replica if it still means the copy on that worker."""
        if not self.state.replicas.has_model(record.model_uid):
            return None
        current = self.state.replicas.get(record.model_uid, record.index)
        if current is None or current.worker_address != record.worker_address:
            return None
        return current if current.state in (S.LAUNCHING, S.READY, S.LOST) else None

    # --- launching and stopping replicas -----------------------------------------------------

    def _start(self, record: ReplicaRecord) -> Awaitable[ReplicaRecord]:
        """The launch of one LAUNCHING replica, counted as this supervisor's from now on."""
        key = (record.model_uid, record.index, record.worker_address)
        self._launching.add(key)
        return self._launch(record, key)

    async def _launch(self, record: ReplicaRecord, key: Tuple[str, int, str]) -> ReplicaRecord:
        """Start the replica on its worker; it ends READY, FAILED, LOST or stopped."""
        try:
            return await self._launch_on_worker(record)
        finally:
            self._launching.discard(key)

    async def _launch_on_worker(self, record: ReplicaRecord) -> ReplicaRecord:
        model = self.model(record.model_uid)
        spec = self._spec(model, record)
        try:
            worker = await self._connect(record.worker_address)
            result = await worker.launch_replica(spec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the cause goes into the record
            reason = describe_error(exc)
            current = self._live_record(record)
            if current is not None and current.state is S.LAUNCHING:
                # An unreachable worker is not the model's fault: LOST is placed again.
                state = S.LOST if worker_unreachable(exc) else S.FAILED
                self.state.replicas.transition(record.model_uid, record.index, state, reason)
            logger.error("Replica %s failed to launch on %s: %s", record.replica_uid,
                         record.worker_address, reason)
            raise
        current = self._live_record(record)
        if current is None:
            logger.info("Replica %s on %s is no longer wanted; stopping it", record.replica_uid,
                        record.worker_address)
            self._spawn(self._stop_on_worker(record.worker_address, record.replica_uid))
            return record
        current.address, current.pid = result["address"], result.get("pid")
        if current.state is not S.READY:
            self.state.replicas.transition(current.model_uid, current.index, S.READY)
        logger.info("Replica %s READY on %s (%s)", current.replica_uid, current.worker_address,
                    current.address)
        return current

    async def _stop_on_worker(self, worker_address: str, replica_uid: str) -> None:
        if not self.state.workers.is_alive(worker_address):
            return
        try:
            worker = await self._connect(worker_address)
            await asyncio.wait_for(worker.terminate_replica(replica_uid), self.call_timeout)
        except Exception as exc:  # noqa: BLE001 - a dead worker took the replica with it
            logger.warning("Could not stop %s on %s: %s", replica_uid, worker_address,
                           describe_error(exc))

    async def _stop_record(self, record: ReplicaRecord) -> None:
        """Stop a TERMINATING replica on its worker, then forget it."""
        await self._stop_on_worker(record.worker_address, record.replica_uid)
        if (self.state.replicas.has_model(record.model_uid)
                and self.state.replicas.get(record.model_uid, record.index) is record):
            self.state.replicas.remove(record.model_uid, record.index)

    async def _start_all(self, records: Sequence[ReplicaRecord], wait: bool) -> List[Any]:
        if not wait:
            for record in records:
                self._spawn(self._start(record))
            return []
        return await asyncio.gather(*(self._start(r) for r in records), return_exceptions=True)

    # --- models ------------------------------------------------------------------------------

    async def launch_model(self, request: LaunchRequest, family: Dict[str, Any],
                           config: EngineConfig, wait_ready: bool = True) -> Dict[str, Any]:
        """Place every replica, start them, and record the model; all replicas failing undoes it."""
        uid = config.model_uid
        config.options.pop("memory_per_replica", None)  # placement's, not the engine's
        records = self.state.launch_model(placement_request(request, uid, config))
        self.models[uid] = ModelRecord(uid, request, config, family)
        logger.info("Launching %s as %r on engine %s: %s", config.model_name, uid, config.engine,
                    ", ".join(f"{r.index}->{r.worker_address}" for r in records))
        results = await self._start_all(records, wait_ready)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and len(failures) == len(results):
            self.models.pop(uid, None)
            self.state.replicas.remove_model(uid)
            raise failures[0]
        return {"model_uid": uid, "model_engine": config.engine,
                "model_format": config.model_format, "quantization": config.quantization}

    async def _push_manifest(self, model_uid: str) -> None:
        """Give every worker running the model its new desired state (for a supervisor restart)."""
        model = self.models.get(model_uid)
        if model is None:
            return
        model.revision += 1
        entry = self.state.replicas.model(model_uid)
        manifest = model.manifest(entry.request.replica, entry.removed)
        for address in sorted({r.worker_address for r in self.state.replicas.records(model_uid)}):
            if not self.state.workers.is_alive(address):
                continue
            try:
                worker = await self._connect(address)
                await asyncio.wait_for(worker.update_manifest(model_uid, manifest), 5)
            except Exception as exc:  # noqa: BLE001 - it gets the spec with its next replica
                logger.warning("Could not update %s on %s: %s", model_uid, address,
                               describe_error(exc))

    async def add_replicas(self, model_uid: str, count: int,
                           wait_ready: bool = True) -> List[Dict[str, Any]]:
        """Start ``count`` more replicas of a running model; returns their records."""
        self.model(model_uid)
        current = self.state.replicas.model(model_uid).request.replica
        launched, _ = self.state.scale(model_uid, current + count)
        await self._push_manifest(model_uid)
        results = await self._start_all(launched, wait_ready)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and len(failures) == len(results):
            raise failures[0]
        return [r.to_dict() for r in launched]

    async def remove_replica(self, model_uid: str, index: int) -> int:
        """Stop replica ``index`` for good; returns how many replicas the model keeps."""
        self.model(model_uid)
        stopping = self.state.remove_replica(model_uid, index)
        await self._push_manifest(model_uid)
        await asyncio.gather(*(self._stop_record(r) for r in stopping))
        return self.state.replicas.model(model_uid).request.replica

    async def terminate_model(self, model_uid: str) -> None:
        self.model(model_uid)
        records = self.state.replicas.remove_model(model_uid)
        self.models.pop(model_uid, None)
        for key in [k for k in self._restarts if k[0] == model_uid]:
            del self._restarts[key]
        await asyncio.gather(*(self._stop_on_worker(r.worker_address, r.replica_uid)
                               for r in records))
        logger.info("Terminated %s", model_uid)

    async def terminate_all(self) -> None:
        await asyncio.gather(*(self.terminate_model(uid) for uid in list(self.models)),
                             return_exceptions=True)

    def report_replica_failed(self, model_uid: str, replica_uid: str, reason: str) -> bool:
        """A worker saw a replica's process die; True when it is to be started again.

        While the replica's restart budget (``restart_limit`` for the model's lifetime)
        lasts it becomes LOST, which the next :meth:`check` places and starts again;
        after that it stays FAILED with the reason.
        """
        if not self.state.replicas.has_model(model_uid):
            return False
        for record in self.state.replicas.records(model_uid):
            if record.replica_uid != replica_uid or record.state not in (S.LAUNCHING, S.READY):
                continue
            key = (model_uid, record.index)
            used = self._restarts.get(key, (0, ""))[0]
            if used < self.restart_limit:
                self._restarts[key] = (used + 1, reason)
                self.state.replicas.transition(
                    model_uid, record.index, S.LOST,
                    f"{reason}; restarting it ({used + 1} of {self.restart_limit})")
                logger.warning("Replica %s of %s died (%s); restarting it (%d of %d)",
                               replica_uid, model_uid, reason, used + 1, self.restart_limit)
                return True
            if used:
                reason = f"{reason} (after {used} restart{'s' if used > 1 else ''})"
            self.state.replicas.transition(model_uid, record.index, S.FAILED, reason)
            logger.error("Replica %s of %s failed: %s", replica_uid, model_uid, reason)
        return False

    def replica_dicts(self, model_uid: str) -> List[Dict[str, Any]]:
        out = []
        for record in self.state.replicas.records(model_uid):
            restarts, last = self._restarts.get((model_uid, record.index), (0, None))
            out.append(dict(record.to_dict(), restarts=restarts, last_failure=last))
        return out

    async def get_replicas(self, model_uid: str) -> Dict[str, Any]:
        """The model's type, status and replicas; waits briefly while workers rejoin."""
        deadline = min(self._rejoin_until, self._clock() + self._rejoin_wait)
        while model_uid not in self.models and self._clock() < deadline:
            await asyncio.sleep(0.05)
        model = self.model(model_uid)
        replicas = self.replica_dicts(model_uid)
        return {"model_type": model.engine_config.model_type,
                "status": model.describe(replicas)["status"], "replicas": replicas}

    def describe_model(self, model_uid: str) -> Dict[str, Any]:
        return self.model(model_uid).describe(self.replica_dicts(model_uid))

    def list_models(self) -> List[Dict[str, Any]]:
        return [self.models[uid].list_entry(self.replica_dicts(uid)) for uid in sorted(self.models)]

    # --- workers -----------------------------------------------------------------------------

    def rejoining(self) -> bool:
        return self._clock() < self._rejoin_until

    def _rebuild(self, spec: ReplicaSpec) -> None:
        """Recreate (or update to a newer revision) a model known only from a worker's report."""
        manifest = spec.manifest
        uid = spec.engine_config.model_uid
        model = self.models.get(uid)
        if model is None:
            model = ModelRecord.from_spec(spec)
            request = placement_request(model.request, uid, model.engine_config)
            request = request.with_replicas(manifest.replica)
            self.state.replicas.add_model(request)
            self.models[uid] = model
            logger.info("Rebuilt model %s (%d replicas) from a worker's report", uid,
                        manifest.replica)
        elif manifest.revision <= model.revision:
            return
        model.revision = manifest.revision
        self.state.replicas.set_desired(uid, manifest.replica, manifest.removed)

    def register_worker(self, address: str, resources: Optional[WorkerResources],
                        reports: Sequence[ReplicaReport] = ()) -> List[str]:
        """(Re-)register a worker; returns the uids of the replicas it must stop (duplicates)."""
        if self.rejoining():
            for report in reports:
                if report.spec is not None and report.spec.manifest is not None:
                    self._rebuild(report.spec)
        reported = [ReportedReplica(r.model_uid, r.index, tuple(r.gpu_idx or ()), None, r.ready)
                    for r in reports]
        pending = {(uid, index) for uid, index, worker in self._launching if worker == address}
        result = self.state.register_worker(address, resources, reported, pending)
        by_key = {(r.model_uid, r.index): r for r in reports}
        for record in result.adopted:
            report = by_key[(record.model_uid, record.index)]
            if report.address:
                record.address, record.pid = report.address, report.pid
        stop = [replica_names.replica_uid(a.model_uid, a.index) for a in result.terminate]
        logger.info("Worker %s %s with %d replica(s)%s", address,
                    "re-registered" if result.returning else "registered", len(reports),
                    f"; stopping {', '.join(stop)}" if stop else "")
        for record in result.lost:
            logger.warning("Replica %s is gone from %s", record.replica_uid, address)
        return stop

    def heartbeat(self, address: str, resources: Optional[WorkerResources] = None,
                  reports: Optional[Sequence[ReplicaReport]] = None) -> bool:
        """Record a heartbeat; False tells the worker to register again (with its replicas).

        ``reports`` (the replicas the worker runs or loads) settle the LAUNCHING
        replicas on it that no launch of this supervisor waits for: those of a
        previous supervisor's launches, adopted while still loading.
        """
        known = self.state.heartbeat(address, resources)
        if known and reports is not None:
            self._settle_adopted_launches(address, reports)
        return known

    def _settle_adopted_launches(self, address: str, reports: Sequence[ReplicaReport]) -> None:
        by_uid = {r.replica_uid: r for r in reports}
        for record in self.state.replicas.records():
            key = (record.model_uid, record.index, address)
            if (record.worker_address != address or record.state is not S.LAUNCHING
                    or key in self._launching):
                continue
            report = by_uid.get(record.replica_uid)
            if report is None:
                self.state.replicas.transition(record.model_uid, record.index, S.LOST,
                                               f"worker {address} no longer runs it")
            elif report.ready and report.address:
                record.address, record.pid = report.address, report.pid
                self.state.replicas.transition(record.model_uid, record.index, S.READY)
                logger.info("Replica %s READY on %s (finished loading)", record.replica_uid,
                            address)

    def unregister_worker(self, address: str) -> None:
        """A worker leaving on purpose: lost at once, so its replicas move now."""
        if self.state.workers.mark_lost(address):
            self.state.replicas.mark_worker_lost(address)
            logger.info("Worker %s left the cluster", address)

    async def check(self) -> Tuple[List[str], RecoveryPlan]:
        """One round of the monitor: lose silent workers, re-place and start what is missing."""
        lost = self.state.workers.check()
        for address in lost:
            gone = [r.replica_uid for r in self.state.replicas.mark_worker_lost(address)]
            logger.warning("Worker %s sent no heartbeat for %.1f s: marked lost (replicas: %s)",
                           address, self.state.workers.lost_timeout, ", ".join(gone) or "none")
        plan = self.state.recover()
        for uid, index, reason in plan.unplaced:
            record = self.state.replicas.get(uid, index)
            if record is not None:
                record.error = f"cannot be re-launched: {reason}"
            if (uid, index) not in self._unplaced:
                logger.warning("Replica %s-%d cannot be re-launched yet: %s", uid, index, reason)
            self._unplaced.add((uid, index))
        for record in plan.launches:
            self._unplaced.discard((record.model_uid, record.index))
            logger.info("Re-launching %s on %s", record.replica_uid, record.worker_address)
            self._spawn(self._start(record))
        return lost, plan

    def workers(self) -> List[Dict[str, Any]]:
        """Every known worker with its status, resources, heartbeat age and replica count."""
        now = self._clock()
        counts: Dict[str, int] = {}
        for record in self.state.replicas.records():
            if record.state in (S.LAUNCHING, S.READY):
                counts[record.worker_address] = counts.get(record.worker_address, 0) + 1
        out = []
        for entry in self.state.workers.entries():
            info = entry.to_dict()
            info.update(heartbeat_age=round(now - entry.last_heartbeat, 3),
                        replicas=counts.get(entry.address, 0))
            out.append(info)
        return out

    def alive_workers(self) -> List[str]:
        return [e.address for e in self.state.workers.entries()
                if self.state.workers.is_alive(e.address)]

    async def stop_workers(self) -> None:
        """Ask every live worker except the supervisor's own process to exit."""
        async def stop(address: str) -> None:
            try:
                worker = await self._connect(address)
                await asyncio.wait_for(worker.shutdown(), 10)
            except Exception as exc:  # noqa: BLE001
                logger.warning("Worker %s did not stop cleanly: %s", address, describe_error(exc))
        await asyncio.gather(*(stop(a) for a in self.alive_workers() if a != self.local_address))

    def uptime(self) -> float:
        return self._clock() - self._started
