"""The supervisor's view of the cluster, as plain classes: workers, replicas, recovery.

Actors record events here (a worker registers or heartbeats, a replica is
ready or failed, a model is launched or scaled) and carry out what comes back
(replicas to launch and where, replicas to terminate). Nothing here talks to
another process, so every rule is tested without xoscar.

Replica states: ``LAUNCHING -> READY -> FAILED | LOST -> TERMINATING -> removed``.
A LOST replica (its worker stopped heartbeating) is re-launched elsewhere, or
adopted back (``LOST -> READY``) when its worker returns still running it.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import (Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple,
                    Union)

from ..errors import DuplicateModelError, InvalidRequestError, ModelNotFoundError, XinferenceError
from . import replica_names
from .messages import ReplicaState
from .placement import Assignment, ClusterSnapshot, PlacedReplica, PlacementRequest, place
from .resources import WorkerResources
from .worker_table import Clock, WorkerEntry, WorkerStatus, WorkerTable  # noqa: F401 (re-export)

Wanted = Union[int, Collection[int]]


class InvalidTransitionError(XinferenceError):
    """A replica was asked to move to a state its current state cannot reach (HTTP 409)."""

    status_code = 409
    error_type = "conflict"


S = ReplicaState
TRANSITIONS: Dict[ReplicaState, Tuple[ReplicaState, ...]] = {
    S.LAUNCHING: (S.READY, S.FAILED, S.LOST, S.TERMINATING),
    S.READY: (S.FAILED, S.LOST, S.TERMINATING),
    S.FAILED: (S.TERMINATING,),
    S.LOST: (S.READY, S.TERMINATING),
    S.TERMINATING: (),
}
ACTIVE = (S.LAUNCHING, S.READY)
HOLDS_RESOURCES = (S.LAUNCHING, S.READY, S.TERMINATING)


@dataclass
class ReplicaRecord:
    """One replica of a model: where it runs and in what state (``error`` says why it failed)."""

    model_uid: str
    index: int
    worker_address: str
    gpu_idx: Tuple[int, ...] = ()
    memory: Optional[int] = None
    state: ReplicaState = ReplicaState.LAUNCHING
    error: Optional[str] = None
    updated_at: float = field(default_factory=time.time)
    address: Optional[str] = None
    pid: Optional[int] = None

    @property
    def replica_uid(self) -> str:
        return replica_names.replica_uid(self.model_uid, self.index)

    def to_dict(self) -> dict:
        """The REST shape (``status``/``replica_id``: Xinference's names for state/index)."""
        out = dataclasses.asdict(self)
        out.update(replica_uid=self.replica_uid, replica_id=self.index, state=self.state.value,
                   status=self.state.value, gpu_idx=list(self.gpu_idx))
        return out


def wanted_indexes(count: int, removed: Collection[int] = ()) -> List[int]:
    """The first ``count`` replica indexes not in ``removed`` (removed ones are not reused)."""
    out: List[int] = []
    index = 0
    while len(out) < count:
        if index not in removed:
            out.append(index)
        index += 1
    return out


@dataclass
class ModelEntry:
    """A launched model: its placement request (``request.replica`` is the desired count).

    ``removed`` holds the indexes of replicas removed one by one; the model
    wants the first ``request.replica`` indexes not among them.
    """

    request: PlacementRequest
    replicas: Dict[int, ReplicaRecord] = field(default_factory=dict)
    removed: Set[int] = field(default_factory=set)

    def wanted(self) -> List[int]:
        return wanted_indexes(self.request.replica, self.removed)


class ReplicaTable:
    """Models by uid and their replicas by index, with the replica state machine enforced."""

    def __init__(self) -> None:
        self._models: Dict[str, ModelEntry] = {}

    def check_new(self, model_uid: str) -> None:
        """Raise DuplicateModelError if ``model_uid`` is taken (ValueError if empty)."""
        if not model_uid:
            raise ValueError("a model in the replica table needs a model_uid")
        if model_uid in self._models:
            raise DuplicateModelError(f"model uid {model_uid!r} is already running; "
                                      "pick another uid or terminate it first", param="model_uid")

    def add_model(self, request: PlacementRequest) -> ModelEntry:
        """Add a model with no replica yet; ``request.replica`` is its desired count."""
        self.check_new(request.model_uid)
        self._models[request.model_uid] = ModelEntry(request)
        return self._models[request.model_uid]

    def model(self, model_uid: str) -> ModelEntry:
        entry = self._models.get(model_uid)
        if entry is None:
            raise ModelNotFoundError(f"model {model_uid!r} is not running", param="model_uid")
        return entry

    def has_model(self, model_uid: str) -> bool:
        return model_uid in self._models

    def remove_model(self, model_uid: str) -> List[ReplicaRecord]:
        """Forget a model; returns its remaining records (the caller stops them)."""
        entry = self._models.pop(model_uid, None)
        return [] if entry is None else [entry.replicas[i] for i in sorted(entry.replicas)]

    def models(self) -> List[ModelEntry]:
        return [self._models[uid] for uid in sorted(self._models)]

    def desired(self) -> Dict[str, List[int]]:
        """The wanted replica indexes of each model."""
        return {uid: entry.wanted() for uid, entry in self._models.items()}

    def set_desired(self, model_uid: str, replica: int,
                    removed: Optional[Iterable[int]] = None) -> None:
        entry = self.model(model_uid)
        entry.request = entry.request.with_replicas(replica)
        if removed is not None:
            entry.removed = set(removed)

    def get(self, model_uid: str, index: int) -> Optional[ReplicaRecord]:
        return self.model(model_uid).replicas.get(index)

    def records(self, model_uid: Optional[str] = None) -> List[ReplicaRecord]:
        entries = [self.model(model_uid)] if model_uid else self.models()
        return [e.replicas[i] for e in entries for i in sorted(e.replicas)]

    def launch(self, model_uid: str, index: int, assignment: Assignment) -> ReplicaRecord:
        """Record a new LAUNCHING replica; an old LOST/FAILED record at ``index`` is replaced."""
        self._drop_dead(model_uid, index)
        record = ReplicaRecord(model_uid, index, assignment.worker_address,
                               tuple(assignment.gpu_idx), assignment.memory)
        self.model(model_uid).replicas[index] = record
        return record

    def adopt(self, model_uid: str, index: int, address: str, gpu_idx: Sequence[int] = (),
              memory: Optional[int] = None, ready: bool = True) -> ReplicaRecord:
        """Record a replica found on ``address`` (READY, or LAUNCHING if still loading).

        The record already there for ``address`` is kept (LOST -> READY); a LOST or
        FAILED record elsewhere is replaced; no duplicate is ever created.
        """
        current = self.get(model_uid, index)
        if current is not None and current.worker_address == address:
            if ready and current.state in (ReplicaState.LAUNCHING, ReplicaState.LOST):
                self.transition(model_uid, index, ReplicaState.READY)
            if current.state in ACTIVE:
                return current
        self._drop_dead(model_uid, index)
        state = ReplicaState.READY if ready else ReplicaState.LAUNCHING
        record = self.model(model_uid).replicas[index] = ReplicaRecord(
            model_uid, index, address, tuple(gpu_idx), memory, state)
        return record

    def _drop_dead(self, model_uid: str, index: int) -> None:
        current = self.get(model_uid, index)
        if current is None:
            return
        if current.state not in (ReplicaState.LOST, ReplicaState.FAILED):
            raise InvalidTransitionError(
                f"replica {current.replica_uid} is {current.state.value} on "
                f"{current.worker_address}; it cannot be replaced")
        self.transition(model_uid, index, ReplicaState.TERMINATING)
        self.remove(model_uid, index)

    def transition(self, model_uid: str, index: int, state: ReplicaState,
                   error: Optional[str] = None) -> ReplicaRecord:
        """Move a replica to ``state``; raises InvalidTransitionError if the machine forbids it."""
        record = self.get(model_uid, index)
        if record is None:
            raise ModelNotFoundError(f"model {model_uid!r} has no replica {index}", param="replica")
        state = ReplicaState(state)
        if state not in TRANSITIONS[record.state]:
            raise InvalidTransitionError(
                f"replica {record.replica_uid} cannot go from {record.state.value} "
                f"to {state.value}")
        if state is ReplicaState.READY:
            error = None
        else:
            error = error or record.error
        record.state, record.updated_at, record.error = state, time.time(), error
        return record

    def remove(self, model_uid: str, index: int) -> None:
        """Forget a TERMINATING replica (the last step of the machine)."""
        record = self.get(model_uid, index)
        if record is not None and record.state is not ReplicaState.TERMINATING:
            raise InvalidTransitionError(
                f"replica {record.replica_uid} is {record.state.value}; "
                "terminate it before removing")
        self.model(model_uid).replicas.pop(index, None)

    def mark_worker_lost(self, address: str) -> List[ReplicaRecord]:
        """LAUNCHING/READY replicas on ``address`` become LOST (returned); TERMINATING ones go."""
        lost = []
        for record in [r for r in self.records() if r.worker_address == address]:
            if record.state in ACTIVE:
                lost.append(self.transition(record.model_uid, record.index, ReplicaState.LOST,
                                            f"worker {address} stopped sending heartbeats"))
            elif record.state is ReplicaState.TERMINATING:
                self.remove(record.model_uid, record.index)
        return lost

    def missing(self) -> List[Tuple[str, int]]:
        """(model uid, index) below each desired count with no record or a LOST one."""
        out = []
        for entry in self.models():
            for index in entry.wanted():
                record = entry.replicas.get(index)
                if record is None or record.state is ReplicaState.LOST:
                    out.append((entry.request.model_uid, index))
        return out

    def placed(self, alive: Iterable[str]) -> List[PlacedReplica]:
        """Replicas holding resources on the ``alive`` workers, as placement input."""
        alive = set(alive)
        return [PlacedReplica(r.model_uid, r.worker_address, r.gpu_idx, r.memory,
                              loaded=r.state is not ReplicaState.LAUNCHING)
                for r in self.records() if r.state in HOLDS_RESOURCES and r.worker_address in alive]


class ActionKind(str, enum.Enum):
    LAUNCH = "launch"
    ADOPT = "adopt"
    TERMINATE = "terminate"


@dataclass(frozen=True)
class Observed:
    """A running copy of replica ``index`` of a model; ``tracked`` if the table counts it."""

    model_uid: str
    index: int
    worker_address: str
    ready: bool = True
    tracked: bool = False


@dataclass(frozen=True)
class Action:
    """One step toward the desired state; ``worker_address`` is None for a launch."""

    kind: ActionKind
    model_uid: str
    index: int
    worker_address: Optional[str] = None
    reason: str = ""


def _wanted_set(value: Wanted) -> Set[int]:
    return set(range(value)) if isinstance(value, int) else set(value)


def reconcile(desired: Mapping[str, Wanted], observed: Iterable[Observed]) -> List[Action]:
    """Actions that turn the ``observed`` copies into exactly the ``desired`` replicas per model.

    ``desired[uid]`` is a replica count (indexes ``0..n-1``) or the wanted indexes.

    Each wanted index keeps one copy (tracked first, then ready, then by worker
    address) and adopts it if untracked; other copies and copies of unwanted
    models or indexes are terminated; indexes with no copy are launched.
    """
    copies: Dict[Tuple[str, int], Dict[str, Observed]] = defaultdict(dict)
    for obs in observed:
        seen = copies[(obs.model_uid, obs.index)].get(obs.worker_address)
        if seen is None or (obs.tracked and not seen.tracked):
            copies[(obs.model_uid, obs.index)][obs.worker_address] = obs
    actions = []
    wanted = {uid: _wanted_set(value) for uid, value in desired.items()}
    for (uid, index), by_worker in sorted(copies.items()):
        group = sorted(by_worker.values(),
                       key=lambda o: (not o.tracked, not o.ready, o.worker_address))
        if index not in wanted.get(uid, ()):
            why = (f"model {uid!r} wants {len(wanted[uid])} replicas" if uid in wanted
                   else "not running")
            actions += [Action(ActionKind.TERMINATE, uid, index, o.worker_address, why)
                        for o in group]
            continue
        if not group[0].tracked:
            actions.append(Action(ActionKind.ADOPT, uid, index, group[0].worker_address, "running"))
        actions += [Action(ActionKind.TERMINATE, uid, index, o.worker_address,
                           f"duplicate of the copy on {group[0].worker_address}")
                    for o in group[1:]]
    for uid in sorted(wanted):
        actions += [Action(ActionKind.LAUNCH, uid, i, None, "no running copy")
                    for i in sorted(wanted[uid]) if not copies.get((uid, i))]
    return actions


@dataclass(frozen=True)
class ReportedReplica:
    """A replica a worker says it runs, sent when the worker (re-)registers."""

    model_uid: str
    index: int
    gpu_idx: Tuple[int, ...] = ()
    memory: Optional[int] = None
    ready: bool = True


@dataclass
class RecoveryPlan:
    """Replicas recorded as LAUNCHING (the caller starts them) and those that found no room."""

    launches: List[ReplicaRecord] = field(default_factory=list)
    unplaced: List[Tuple[str, int, str]] = field(default_factory=list)


@dataclass
class Registration:
    """What a worker's (re-)registration changed, and what the caller must do."""

    returning: bool
    adopted: List[ReplicaRecord] = field(default_factory=list)
    terminate: List[Action] = field(default_factory=list)
    lost: List[ReplicaRecord] = field(default_factory=list)


class ClusterState:
    """Workers, replicas and the placement settings: the supervisor's whole bookkeeping.

    ``startup_grace`` (seconds) holds back re-launches after a supervisor restart
    so workers still running replicas can re-register first.
    """

    def __init__(self, lost_timeout: Optional[float] = None, strategy: Optional[str] = None,
                 allow_multi_replica_per_gpu: Optional[bool] = None,
                 clock: Clock = time.monotonic, startup_grace: float = 0.0):
        self.workers = WorkerTable(lost_timeout, clock)
        self.replicas = ReplicaTable()
        self.strategy = strategy
        self.allow_multi_replica_per_gpu = allow_multi_replica_per_gpu
        self._clock = clock
        self._grace_until = clock() + startup_grace

    def snapshot(self) -> ClusterSnapshot:
        workers = self.workers.alive_resources()
        return ClusterSnapshot(workers, self.replicas.placed(w.address for w in workers))

    def place(self, request: PlacementRequest) -> List[Assignment]:
        return place(request, self.snapshot(), self.strategy, self.allow_multi_replica_per_gpu)

    def launch_model(self, request: PlacementRequest) -> List[ReplicaRecord]:
        """Place every replica (all or nothing) and record them LAUNCHING."""
        self.replicas.check_new(request.model_uid)
        assignments = self.place(request)
        self.replicas.add_model(request)
        return [self.replicas.launch(request.model_uid, i, a) for i, a in enumerate(assignments)]

    def scale(self, model_uid: str,
              replica: int) -> Tuple[List[ReplicaRecord], List[ReplicaRecord]]:
        """Change a model's replica count: (new LAUNCHING records, records now TERMINATING)."""
        if isinstance(replica, bool) or not isinstance(replica, int) or replica < 1:
            raise InvalidRequestError(f"a model needs at least one replica, not {replica!r}; "
                                      "terminate the model to stop it", param="replica")
        entry = self.replicas.model(model_uid)
        old = entry.wanted()
        new = [i for i in wanted_indexes(replica, entry.removed) if i not in old]
        extra = self.place(entry.request.with_replicas(len(new))) if new else []
        self.replicas.set_desired(model_uid, replica)
        launched = [self.replicas.launch(model_uid, i, a) for i, a in zip(new, extra)]
        return launched, self._stop_unwanted(model_uid)

    def remove_replica(self, model_uid: str, index: int) -> List[ReplicaRecord]:
        """Remove replica ``index`` for good (the count drops by one); returns it TERMINATING."""
        entry = self.replicas.model(model_uid)
        if index not in entry.wanted():
            raise ModelNotFoundError(f"model {model_uid!r} has no replica {index}; its replicas "
                                     f"are {entry.wanted()}", param="replica_id")
        if entry.request.replica == 1:
            raise InvalidRequestError(f"replica {index} is the last replica of {model_uid!r}; "
                                      "terminate the model instead", param="replica_id")
        self.replicas.set_desired(model_uid, entry.request.replica - 1, entry.removed | {index})
        return self._stop_unwanted(model_uid)

    def _stop_unwanted(self, model_uid: str) -> List[ReplicaRecord]:
        wanted = set(self.replicas.model(model_uid).wanted())
        return [self.replicas.transition(model_uid, r.index, ReplicaState.TERMINATING)
                for r in self.replicas.records(model_uid)
                if r.index not in wanted and r.state is not ReplicaState.TERMINATING]

    def heartbeat(self, address: str, resources: Optional[WorkerResources] = None) -> bool:
        return self.workers.heartbeat(address, resources)

    def register_worker(self, address: str, resources: Optional[WorkerResources] = None,
                        reported: Sequence[ReportedReplica] = (),
                        pending: Collection[Tuple[str, int]] = ()) -> Registration:
        """(Re-)register a worker and reconcile the replicas it reports with the table.

        ``pending``: (model uid, index) of replicas whose launch on this worker is
        under way, so not being reported yet does not make them LOST.
        """
        result = Registration(self.workers.register(address, resources))
        reported = {(r.model_uid, r.index): r for r in reported}
        observed = [Observed(r.model_uid, r.index, r.worker_address, tracked=True)
                    for r in self.replicas.records() if r.state in ACTIVE
                    and r.worker_address != address and self.workers.is_alive(r.worker_address)]
        for (uid, index), rep in sorted(reported.items()):
            record = self.replicas.get(uid, index) if self.replicas.has_model(uid) else None
            here = record is not None and record.worker_address == address
            if here and record.state is ReplicaState.TERMINATING:
                result.terminate.append(Action(ActionKind.TERMINATE, uid, index, address,
                                               "replica is being terminated"))
                continue
            tracked = here and record.state in ACTIVE + (ReplicaState.LOST,)
            observed.append(Observed(uid, index, address, rep.ready, tracked))
        actions = reconcile(self.replicas.desired(), observed)
        result.terminate += [a for a in actions
                             if a.kind is ActionKind.TERMINATE and a.worker_address == address]
        dropped = {(a.model_uid, a.index) for a in result.terminate}
        for key, rep in sorted(reported.items()):
            if key not in dropped:
                result.adopted.append(self.replicas.adopt(
                    rep.model_uid, rep.index, address, rep.gpu_idx, rep.memory, rep.ready))
        for record in self.replicas.records():
            key = (record.model_uid, record.index)
            if (record.worker_address == address and record.state in ACTIVE
                    and key not in reported and key not in pending):
                result.lost.append(self.replicas.transition(
                    *key, ReplicaState.LOST, f"worker {address} came back without it"))
        return result

    def tick(self) -> Tuple[List[str], RecoveryPlan]:
        """Mark silent workers lost, their replicas LOST, and re-place what is missing."""
        lost_workers = self.workers.check()
        for address in lost_workers:
            self.replicas.mark_worker_lost(address)
        return lost_workers, self.recover()

    def recover(self) -> RecoveryPlan:
        """Record a LAUNCHING replica for every missing one that fits (none during the grace)."""
        plan = RecoveryPlan()
        if self._clock() < self._grace_until:
            return plan
        for uid, index in self.replicas.missing():
            request = self.replicas.model(uid).request.with_replicas(1)
            try:
                assignment = self.place(request)[0]
            except XinferenceError as exc:
                plan.unplaced.append((uid, index, exc.message))
                continue
            plan.launches.append(self.replicas.launch(uid, index, assignment))
        return plan
