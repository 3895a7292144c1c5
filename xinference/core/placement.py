"""Placement: which worker and which devices each replica of a model goes to.

:func:`place` is a pure function of a :class:`PlacementRequest` and a
:class:`ClusterSnapshot` (every live worker's resources plus the replicas
already placed). Memory is counted in bytes: a GPU's usable free memory is
``min(measured free - memory of replicas still loading, total - memory of all
replicas placed on it)``, so a loaded replica is not counted twice and one
still loading is not forgotten. A replica's memory is split evenly over its GPUs.

Strategies (``XINFERENCE_LAUNCH_STRATEGY``):

* ``IDLE_FIRST_LAUNCH_STRATEGY`` (default): the least-used device first, where a
  device's load is its replica count plus the fraction of its memory in use;
  ties go to the worker holding fewer replicas of this model, so idle clusters
  spread.
* ``SPREAD_LAUNCH_STRATEGY``: the worker with the fewest replicas of this
  model first, then the least-loaded worker, then the least-used device.
* ``PACK_LAUNCH_STRATEGY``: fill one worker (most replicas of this model,
  then most replicas) before the next; the least-used device within it.

Ties end on worker address and GPU index, so the same input gives the same answer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import InvalidRequestError, ResourceExhaustedError
from .resources import GpuInfo, WorkerResources, format_bytes, host_of

IDLE_FIRST = "IDLE_FIRST_LAUNCH_STRATEGY"
SPREAD = "SPREAD_LAUNCH_STRATEGY"
PACK = "PACK_LAUNCH_STRATEGY"
STRATEGIES = (IDLE_FIRST, SPREAD, PACK)

NGpu = Union[str, int, None]


def resolve_strategy(name: Optional[str] = None) -> str:
    """The full strategy name for ``name`` (``"spread"`` works too); ``None`` reads the settings."""
    if name is None:
        from ..settings import get_settings

        name = get_settings().launch_strategy
    key = str(name).strip().upper()
    for strategy in STRATEGIES:
        if key in (strategy, strategy.replace("_LAUNCH_STRATEGY", "")):
            return strategy
    raise InvalidRequestError(
        f"unknown launch strategy {name!r}; use one of {', '.join(STRATEGIES)}",
        param="launch_strategy",
    )


def _normalize_n_gpu(value: Any) -> NGpu:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text in ("none", "cpu", ""):
            return None
        value = int(text) if text.isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(
            f"n_gpu={value!r} is not valid; use 'auto', a GPU count per replica, or None for CPU",
            param="n_gpu",
        )
    return value or None


def _normalize_gpu_idx(value: Any) -> Optional[Tuple[int, ...]]:
    if value is None:
        return None
    items = [value] if isinstance(value, (int, str)) else list(value)
    try:
        indexes = tuple(int(i) for i in items)
    except (TypeError, ValueError):
        indexes = (-1,)
    if any(i < 0 for i in indexes) or len(set(indexes)) != len(indexes):
        raise InvalidRequestError(
            f"gpu_idx={value!r} is not valid; give distinct GPU indexes such as [0, 1]",
            param="gpu_idx",
        )
    return indexes or None


def _normalize_memory(value: Any) -> int:
    try:
        memory = -1 if isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        memory = -1
    if memory < 0:
        raise InvalidRequestError(
            f"memory_per_replica={value!r} is not valid; give bytes (>= 0) or None",
            param="memory_per_replica",
        )
    return memory


@dataclass(frozen=True)
class PlacementRequest:
    """What placement needs from a launch request; normalized and checked on construction.

    ``n_gpu``: ``"auto"`` (one GPU per replica when the eligible workers have
    GPUs, else CPU; with ``gpu_idx``, ``len(gpu_idx) // replica`` GPUs each), a
    GPU count per replica, or ``None``/``0`` for CPU. ``gpu_idx`` restricts the
    GPUs used; ``worker_ip`` restricts workers (matches host or address).
    ``memory_per_replica`` is the estimated bytes one replica needs, if known.
    """

    model_uid: str = ""
    replica: int = 1
    n_gpu: NGpu = "auto"
    gpu_idx: Optional[Tuple[int, ...]] = None
    worker_ip: Optional[str] = None
    memory_per_replica: Optional[int] = None

    def __post_init__(self) -> None:
        if isinstance(self.replica, bool) or not isinstance(self.replica, int) or self.replica < 1:
            raise InvalidRequestError(
                f"replica={self.replica!r} is not valid; use a whole number of at least 1",
                param="replica",
            )
        object.__setattr__(self, "n_gpu", _normalize_n_gpu(self.n_gpu))
        object.__setattr__(self, "gpu_idx", _normalize_gpu_idx(self.gpu_idx))
        object.__setattr__(self, "worker_ip", (self.worker_ip or "").strip() or None)
        if self.memory_per_replica is not None:
            object.__setattr__(self, "memory_per_replica",
                               _normalize_memory(self.memory_per_replica))
        if self.gpu_idx and self.n_gpu is None:
            raise InvalidRequestError(
                "gpu_idx pins GPUs but n_gpu is None (CPU); drop gpu_idx or set n_gpu",
                param="gpu_idx",
            )
        if self.gpu_idx and isinstance(self.n_gpu, int) and self.n_gpu > len(self.gpu_idx):
            raise InvalidRequestError(
                f"n_gpu={self.n_gpu} needs at least {self.n_gpu} GPUs but gpu_idx lists "
                f"{len(self.gpu_idx)}; pin more GPUs or lower n_gpu",
                param="gpu_idx",
            )


    def with_replicas(self, count: int) -> "PlacementRequest":
        """The same per-replica demand for ``count`` replicas (re-launches, scaling)."""
        n_gpu = self.n_gpu
        if n_gpu == "auto" and self.gpu_idx:
            n_gpu = max(1, len(self.gpu_idx) // self.replica)
        return replace(self, replica=count, n_gpu=n_gpu)


@dataclass(frozen=True)
class PlacedReplica:
    """A replica already on a worker: its GPUs (``()`` for CPU) and memory, if known.

    ``loaded`` is False while the replica is still loading, so its memory is
    not yet visible in the worker's measured free memory.
    """

    model_uid: str
    worker_address: str
    gpu_idx: Tuple[int, ...] = ()
    memory: Optional[int] = None
    loaded: bool = True


@dataclass
class ClusterSnapshot:
    """Input of placement: the live workers' resources and the replicas placed on them."""

    workers: List[WorkerResources] = field(default_factory=list)
    replicas: List[PlacedReplica] = field(default_factory=list)


@dataclass(frozen=True)
class Assignment:
    """Where one replica goes: a worker and its GPU indexes (``()`` means CPU)."""

    worker_address: str
    gpu_idx: Tuple[int, ...] = ()
    memory: Optional[int] = None

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpu_idx)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "worker_address": self.worker_address,
            "gpu_idx": list(self.gpu_idx) if self.gpu_idx else None,
            "memory": self.memory,
        }

    def as_placed(self, model_uid: str, loaded: bool = False) -> PlacedReplica:
        """This assignment as a :class:`PlacedReplica` (still loading, by default)."""
        return PlacedReplica(model_uid, self.worker_address, self.gpu_idx, self.memory, loaded)


def _share(memory: Optional[int], parts: int) -> int:
    if not memory:
        return 0
    return -(-memory // max(parts, 1))


class _Ledger:
    """Free memory and replica counts per worker and per GPU, updated as replicas are placed."""

    def __init__(self, snapshot: ClusterSnapshot, model_uid: str):
        self.workers = {w.address: w for w in snapshot.workers}
        self.model_uid = model_uid
        self.gpu_count: Dict[Tuple[str, int], int] = defaultdict(int)
        self.worker_count: Dict[str, int] = defaultdict(int)
        self.model_count: Dict[str, int] = defaultdict(int)
        pending: Dict[Any, int] = defaultdict(int)
        reserved: Dict[Any, int] = defaultdict(int)
        for replica in snapshot.replicas:
            address = replica.worker_address
            if address not in self.workers:
                continue
            self._count(address, replica.model_uid, replica.gpu_idx)
            share = _share(replica.memory, len(replica.gpu_idx))
            for key in [(address, i) for i in replica.gpu_idx] or [address]:
                reserved[key] += share
                if not replica.loaded:
                    pending[key] += share
        self.gpu_free: Dict[Tuple[str, int], int] = {}
        self.host_free: Dict[str, int] = {}
        for address, worker in self.workers.items():
            self.host_free[address] = max(0, min(worker.memory_available - pending[address],
                                                  worker.memory_total - reserved[address]))
            for gpu in worker.gpus:
                key = (address, gpu.index)
                self.gpu_free[key] = max(0, min(
                    gpu.memory_free - pending[key], gpu.memory_total - reserved[key]))

    def _count(self, address: str, model_uid: str, gpu_idx: Sequence[int]) -> None:
        self.worker_count[address] += 1
        if model_uid == self.model_uid:
            self.model_count[address] += 1
        for index in gpu_idx:
            self.gpu_count[(address, index)] += 1

    def gpu_load(self, address: str, gpu: GpuInfo) -> float:
        used = 1 - self.gpu_free[(address, gpu.index)] / gpu.memory_total if gpu.memory_total else 0
        return self.gpu_count[(address, gpu.index)] + used

    def worker_load(self, address: str) -> float:
        total = self.workers[address].memory_total
        used = 1 - self.host_free[address] / total if total else 0
        return self.worker_count[address] + used

    def usable(self, address: str, gpu: GpuInfo, pinned: Optional[Tuple[int, ...]],
               allow: bool) -> bool:
        if pinned is not None and gpu.index not in pinned:
            return False
        return allow or self.gpu_count[(address, gpu.index)] == 0

    def commit(self, assignment: Assignment) -> None:
        address = assignment.worker_address
        self._count(address, self.model_uid, assignment.gpu_idx)
        share = _share(assignment.memory, len(assignment.gpu_idx))
        for index in assignment.gpu_idx:
            self.gpu_free[(address, index)] -= share
        if not assignment.gpu_idx:
            self.host_free[address] -= share


def _eligible(request: PlacementRequest, snapshot: ClusterSnapshot) -> List[WorkerResources]:
    workers = sorted(snapshot.workers, key=lambda w: w.address)
    if not workers:
        raise ResourceExhaustedError("no worker is available; start an xinference-worker first")
    ip = request.worker_ip
    if ip is None:
        return workers
    matched = [w for w in workers if ip in (w.host, w.address, host_of(w.address))]
    if not matched:
        known = ", ".join(w.address for w in workers)
        raise InvalidRequestError(f"no worker matches worker_ip={ip!r}; workers: {known}",
                                  param="worker_ip")
    return matched


def _gpus_per_replica(request: PlacementRequest, eligible: Sequence[WorkerResources]) -> int:
    if request.n_gpu is None:
        return 0
    if request.n_gpu == "auto":
        if request.gpu_idx:
            return max(1, len(request.gpu_idx) // request.replica)
        return 1 if any(w.gpus for w in eligible) else 0
    return int(request.n_gpu)


def _check_pins(request: PlacementRequest, eligible: Sequence[WorkerResources]) -> None:
    pinned = request.gpu_idx
    if not pinned or any(w.gpu(i) for w in eligible for i in pinned):
        return
    where = f"worker {request.worker_ip}" if request.worker_ip else "any worker"
    found = "; ".join(f"{w.address}: {[g.index for g in w.gpus]}" for w in eligible)
    raise InvalidRequestError(
        f"gpu_idx={list(pinned)} is not on {where}; GPUs there: {found}", param="gpu_idx"
    )


def _strategy_key(strategy: str, ledger: _Ledger, address: str, load: float) -> tuple:
    same_model = ledger.model_count[address]
    if strategy == SPREAD:
        return (same_model, ledger.worker_count[address], load, address)
    if strategy == PACK:
        return (-same_model, -ledger.worker_count[address], address, load)
    return (load, same_model, ledger.worker_load(address), address)


def _gpu_choice(ledger: _Ledger, worker: WorkerResources, k: int, need: Optional[int],
                pinned: Optional[Tuple[int, ...]],
                allow: bool) -> Optional[Tuple[float, Tuple[int, ...]]]:
    address = worker.address
    fits = [g for g in worker.gpus if ledger.usable(address, g, pinned, allow)
            and (need is None or ledger.gpu_free[(address, g.index)] >= need)]
    if len(fits) < k:
        return None
    fits.sort(key=lambda g: (ledger.gpu_load(address, g), g.utilization, g.index))
    chosen = fits[:k]
    load = sum(ledger.gpu_load(address, g) for g in chosen) / k
    return load, tuple(sorted(g.index for g in chosen))


def _choose(strategy: str, ledger: _Ledger, eligible: Sequence[WorkerResources], k: int,
            need: Optional[int], request: PlacementRequest, allow: bool) -> Optional[Assignment]:
    best: Optional[tuple] = None
    for worker in eligible:
        if k:
            choice = _gpu_choice(ledger, worker, k, need, request.gpu_idx, allow)
            if choice is None:
                continue
            load, gpus = choice
        else:
            if need is not None and ledger.host_free[worker.address] < need:
                continue
            load, gpus = ledger.worker_load(worker.address), ()
        key = _strategy_key(strategy, ledger, worker.address, load)
        if best is None or key < best[0]:
            best = (key, Assignment(worker.address, gpus, request.memory_per_replica))
    return None if best is None else best[1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _gpu_shortage(ledger: _Ledger, eligible: Sequence[WorkerResources], k: int,
                  need: Optional[int], request: PlacementRequest, allow: bool) -> str:
    best: Optional[tuple] = None
    for worker in eligible:
        free = [ledger.gpu_free[(worker.address, g.index)] for g in worker.gpus
                if ledger.usable(worker.address, g, request.gpu_idx, allow)]
        fit = sum(1 for f in free if need is None or f >= need)
        key = (min(fit, k), len(free), max(free, default=0))
        if best is None or key > best[0]:
            best = (key, worker.address, fit, len(free), max(free, default=0))
    _, address, fit, usable, freest = best
    needs = f"needs {_plural(k, 'GPU')}"
    if need is not None:
        needs += f" with {format_bytes(need)} free" + (" each" if k > 1 else "")
    if not allow:
        needs += " not shared with another replica (XINFERENCE_ALLOW_MULTI_REPLICA_PER_GPU=0)"
    if request.gpu_idx:
        needs += f" among gpu_idx {list(request.gpu_idx)}"
    has = f"best worker {address} has " + (_plural(usable, "usable GPU") if usable
                                           else "no usable GPU")
    if need is not None and usable == 1:
        has += f" with {format_bytes(freest)} free"
    elif need is not None and usable > 1:
        has += f", {fit} with {format_bytes(need)} free, the freest with {format_bytes(freest)}"
    return f"{needs}; {has}"


def _cpu_shortage(ledger: _Ledger, eligible: Sequence[WorkerResources], need: int) -> str:
    worker = eligible[0]
    for other in eligible[1:]:
        if ledger.host_free[other.address] > ledger.host_free[worker.address]:
            worker = other
    return (f"needs {format_bytes(need)} of free memory on one worker; best worker "
            f"{worker.address} has {format_bytes(ledger.host_free[worker.address])} free")


def place(request: PlacementRequest, snapshot: ClusterSnapshot, strategy: Optional[str] = None,
          allow_multi_replica_per_gpu: Optional[bool] = None) -> List[Assignment]:
    """One :class:`Assignment` per replica of ``request`` over ``snapshot``, all or nothing.

    ``strategy`` and ``allow_multi_replica_per_gpu`` default to the settings
    (``XINFERENCE_LAUNCH_STRATEGY``, ``XINFERENCE_ALLOW_MULTI_REPLICA_PER_GPU``).
    With multi-replica off, a GPU holding any replica takes no other.
    Raises ResourceExhaustedError saying what is short when the replicas do not
    fit, and InvalidRequestError when a pin names no worker or GPU.
    """
    strategy = resolve_strategy(strategy)
    if allow_multi_replica_per_gpu is None:
        from ..settings import get_settings

        allow_multi_replica_per_gpu = get_settings().allow_multi_replica_per_gpu
    allow = bool(allow_multi_replica_per_gpu)
    eligible = _eligible(request, snapshot)
    _check_pins(request, eligible)
    k = _gpus_per_replica(request, eligible)
    memory = request.memory_per_replica
    need = None if memory is None else (_share(memory, k) if k else memory)
    ledger = _Ledger(snapshot, request.model_uid)
    assignments: List[Assignment] = []
    for number in range(1, request.replica + 1):
        choice = _choose(strategy, ledger, eligible, k, need, request, allow)
        if choice is None:
            short = (_gpu_shortage(ledger, eligible, k, need, request, allow) if k
                     else _cpu_shortage(ledger, eligible, need or 0))
            name = f" of model {request.model_uid!r}" if request.model_uid else ""
            raise ResourceExhaustedError(
                f"cannot place replica {number} of {request.replica}{name}: {short}")
        ledger.commit(choice)
        assignments.append(choice)
    return assignments
