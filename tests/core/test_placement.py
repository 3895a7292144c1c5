"""Placement over simulated inventories: the seed's cases, strategies, pins, shortages and
invariants."""

import random
from collections import Counter, defaultdict

import pytest

from xinference import settings as settings_module
from xinference.core.placement import (
    IDLE_FIRST,
    PACK,
    SPREAD,
    ClusterSnapshot,
    PlacedReplica,
    PlacementRequest,
    place,
    resolve_strategy,
)
from xinference.core.resources import GIB, GpuInfo, WorkerResources
from xinference.errors import InvalidRequestError, ResourceExhaustedError


def worker(address, gpus=0, gpu_free=24 * GIB, gpu_total=24 * GIB, mem_free=48 * GIB, host=None):
    """A worker with ``gpus`` identical GPUs (or the free amounts listed in ``gpu_free``)."""
    frees = gpu_free if isinstance(gpu_free, list) else [gpu_free] * gpus
    return WorkerResources(address, host or address.split(":")[0], 8, 64 * GIB, mem_free,
                           [GpuInfo(i, "GPU", gpu_total, f) for i, f in enumerate(frees)])


def run(request, workers, replicas=(), strategy=IDLE_FIRST, allow=True):
    return place(request, ClusterSnapshot(list(workers), list(replicas)), strategy, allow)


def where(assignments):
    return [(a.worker_address, a.gpu_idx) for a in assignments]


# --- the seed's cases ------------------------------------------------------------------------

def test_three_replicas_share_one_gpu_when_allowed():
    out = run(PlacementRequest("m", replica=3), [worker("w1:1", gpus=1)])
    assert where(out) == [("w1:1", (0,))] * 3


def test_three_replicas_on_one_gpu_fail_when_sharing_is_off():
    with pytest.raises(ResourceExhaustedError) as info:
        run(PlacementRequest("m", replica=3), [worker("w1:1", gpus=1)], allow=False)
    msg = info.value.message
    assert "replica 2 of 3" in msg and "XINFERENCE_ALLOW_MULTI_REPLICA_PER_GPU=0" in msg


def test_three_replicas_on_two_gpus_split_two_and_one():
    out = run(PlacementRequest("m", replica=3), [worker("w1:1", gpus=2)])
    assert Counter(a.gpu_idx for a in out) == {(0,): 2, (1,): 1}


def test_four_gpus_four_replicas_one_each():
    out = run(PlacementRequest("m", replica=4), [worker("w1:1", gpus=4)], allow=False)
    assert sorted(a.gpu_idx for a in out) == [(0,), (1,), (2,), (3,)]


# --- idle-first counts memory as well as replicas ----------------------------------------------

def test_idle_first_prefers_the_gpu_with_more_free_memory():
    out = run(PlacementRequest("m"), [worker("w1:1", gpu_free=[4 * GIB, 20 * GIB])])
    assert where(out) == [("w1:1", (1,))]


def test_idle_first_avoids_a_gpu_holding_another_model():
    busy = [PlacedReplica("other", "w1:1", (0,), memory=None)]
    out = run(PlacementRequest("m"), [worker("w1:1", gpus=2)], busy)
    assert where(out) == [("w1:1", (1,))]


def test_memory_estimates_decide_and_never_overcommit():
    workers = [worker("w1:1", gpu_free=[20 * GIB, 10 * GIB])]
    out = run(PlacementRequest("m", replica=3, memory_per_replica=8 * GIB), workers)
    assert [a.gpu_idx for a in out] == [(0,), (1,), (0,)]
    with pytest.raises(ResourceExhaustedError) as info:
        run(PlacementRequest("m", replica=4, memory_per_replica=8 * GIB), workers)
    assert "replica 4 of 4" in info.value.message
    assert "with 8.0 GiB free" in info.value.message


def test_loading_replica_reserves_memory_and_loaded_one_is_not_counted_twice():
    w = worker("w1:1", gpus=1, gpu_free=24 * GIB)
    loading = PlacedReplica("a", "w1:1", (0,), memory=20 * GIB, loaded=False)
    with pytest.raises(ResourceExhaustedError):
        run(PlacementRequest("m", memory_per_replica=8 * GIB), [w], [loading])
    w_after_load = worker("w1:1", gpus=1, gpu_free=4 * GIB)
    loaded = PlacedReplica("a", "w1:1", (0,), memory=20 * GIB, loaded=True)
    out = run(PlacementRequest("m", memory_per_replica=4 * GIB), [w_after_load], [loaded])
    assert where(out) == [("w1:1", (0,))]


def test_shortage_message_says_what_is_short():
    workers = [worker("10.0.0.1:1", gpu_free=[int(2.0 * GIB)]),
               worker("10.0.0.2:1", gpu_free=[int(3.1 * GIB)])]
    with pytest.raises(ResourceExhaustedError) as info:
        run(PlacementRequest("m", n_gpu=2, memory_per_replica=16 * GIB), workers)
    assert info.value.message == (
        "cannot place replica 1 of 1 of model 'm': needs 2 GPUs with 8.0 GiB free each; "
        "best worker 10.0.0.2:1 has 1 usable GPU with 3.1 GiB free")


# --- spreading across workers, and the strategies -------------------------------------------

def test_idle_first_spreads_an_idle_cluster_across_workers():
    workers = [worker(f"w{i}:1", gpus=2) for i in range(3)]
    out = run(PlacementRequest("m", replica=3), workers)
    assert sorted(a.worker_address for a in out) == ["w0:1", "w1:1", "w2:1"]


def test_spread_puts_replicas_on_different_workers_even_when_one_is_idler():
    workers = [worker("a:1", gpus=4), worker("b:1", gpus=1)]
    busy = [PlacedReplica("other", "b:1", (0,))]
    idle = run(PlacementRequest("m", replica=2), workers, busy, IDLE_FIRST)
    spread = run(PlacementRequest("m", replica=2), workers, busy, SPREAD)
    assert [a.worker_address for a in idle] == ["a:1", "a:1"]
    assert [a.worker_address for a in spread] == ["a:1", "b:1"]


def test_pack_fills_a_worker_before_the_next():
    workers = [worker("a:1", gpus=2), worker("b:1", gpus=2)]
    out = run(PlacementRequest("m", replica=3), workers, strategy=PACK, allow=False)
    assert where(out) == [("a:1", (0,)), ("a:1", (1,)), ("b:1", (0,))]


def test_cpu_workers_spread_by_load_and_free_memory():
    workers = [worker("a:1", mem_free=10 * GIB), worker("b:1", mem_free=40 * GIB),
               worker("c:1", mem_free=30 * GIB)]
    out = run(PlacementRequest("m", replica=3, n_gpu=None), workers)
    assert [a.worker_address for a in out] == ["b:1", "c:1", "a:1"]
    assert all(a.gpu_idx == () and not a.on_gpu for a in out)
    with pytest.raises(ResourceExhaustedError) as info:
        run(PlacementRequest("m", replica=4, n_gpu=None, memory_per_replica=25 * GIB), workers)
    assert info.value.message == (
        "cannot place replica 3 of 4 of model 'm': needs 25.0 GiB of free memory on one worker; "
        "best worker b:1 has 15.0 GiB free")


def test_auto_uses_gpus_when_there_are_some_and_cpu_otherwise():
    mixed = [worker("cpu:1"), worker("gpu:1", gpus=1)]
    assert where(run(PlacementRequest("m"), mixed)) == [("gpu:1", (0,))]
    assert where(run(PlacementRequest("m", worker_ip="cpu"), mixed)) == [("cpu:1", ())]


def test_multi_gpu_replica_stays_on_one_worker():
    one_each = [worker("a:1", gpus=1), worker("b:1", gpus=1)]
    with pytest.raises(ResourceExhaustedError) as info:
        run(PlacementRequest("m", n_gpu=2), one_each)
    assert "needs 2 GPUs" in info.value.message
    out = run(PlacementRequest("m", n_gpu=2, replica=2), [worker("a:1", gpus=4)], allow=False)
    assert where(out) == [("a:1", (0, 1)), ("a:1", (2, 3))]


# --- pins ---------------------------------------------------------------------------------

def test_gpu_idx_pins_the_gpus():
    out = run(PlacementRequest("m", replica=2, n_gpu=1, gpu_idx=[2]), [worker("a:1", gpus=4)])
    assert where(out) == [("a:1", (2,)), ("a:1", (2,))]
    out = run(PlacementRequest("m", gpu_idx=[1, 3]), [worker("a:1", gpus=4)])
    assert where(out) == [("a:1", (1, 3))]
    with pytest.raises(InvalidRequestError) as info:
        run(PlacementRequest("m", gpu_idx=[5]), [worker("a:1", gpus=4)])
    assert info.value.param == "gpu_idx" and "[0, 1, 2, 3]" in info.value.message


def test_worker_ip_pins_by_host_or_address():
    workers = [worker("10.0.0.1:5000", gpus=1), worker("10.0.0.2:5000", gpus=1, host="node2")]
    for ip, address in [("10.0.0.2", "10.0.0.2:5000"), ("node2", "10.0.0.2:5000"),
                        ("10.0.0.1:5000", "10.0.0.1:5000")]:
        assert where(run(PlacementRequest("m", worker_ip=ip), workers)) == [(address, (0,))]
    with pytest.raises(InvalidRequestError) as info:
        run(PlacementRequest("m", worker_ip="10.0.0.9"), workers)
    assert info.value.param == "worker_ip" and "10.0.0.1:5000" in info.value.message


def test_empty_cluster_is_resource_exhausted():
    with pytest.raises(ResourceExhaustedError, match="no worker"):
        run(PlacementRequest("m"), [])


@pytest.mark.parametrize(
    "kwargs, param",
    [({"n_gpu": -1}, "n_gpu"), ({"n_gpu": "many"}, "n_gpu"), ({"n_gpu": True}, "n_gpu"),
     ({"replica": 0}, "replica"), ({"gpu_idx": [0, 0]}, "gpu_idx"), ({"gpu_idx": ["x"]}, "gpu_idx"),
     ({"n_gpu": None, "gpu_idx": [0]}, "gpu_idx"), ({"n_gpu": 3, "gpu_idx": [0, 1]}, "gpu_idx"),
     ({"memory_per_replica": -5}, "memory_per_replica")],
)
def test_bad_requests_name_the_field(kwargs, param):
    with pytest.raises(InvalidRequestError) as info:
        PlacementRequest("m", **kwargs)
    assert info.value.param == param


def test_request_normalization():
    assert PlacementRequest(n_gpu="2").n_gpu == 2
    assert PlacementRequest(n_gpu="AUTO").n_gpu == "auto"
    assert PlacementRequest(n_gpu="none").n_gpu is None
    assert PlacementRequest(n_gpu=0).n_gpu is None
    assert PlacementRequest(gpu_idx=1).gpu_idx == (1,)
    assert PlacementRequest(worker_ip=" ").worker_ip is None


# --- settings ------------------------------------------------------------------------------

@pytest.fixture
def env_settings(monkeypatch):
    def apply(**values):
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        settings_module.get_settings(refresh=True)
    yield apply
    monkeypatch.undo()
    settings_module.get_settings(refresh=True)


def test_strategy_and_sharing_come_from_settings(env_settings):
    workers = [worker("a:1", gpus=2), worker("b:1", gpus=2)]
    env_settings(XINFERENCE_LAUNCH_STRATEGY="PACK_LAUNCH_STRATEGY")
    out = place(PlacementRequest("m", replica=2), ClusterSnapshot(workers))
    assert [a.worker_address for a in out] == ["a:1", "a:1"]
    env_settings(XINFERENCE_ALLOW_MULTI_REPLICA_PER_GPU="0")
    with pytest.raises(ResourceExhaustedError):
        place(PlacementRequest("m", replica=5), ClusterSnapshot(workers))


def test_resolve_strategy_names():
    assert resolve_strategy("spread") == SPREAD
    assert resolve_strategy("PACK_LAUNCH_STRATEGY") == PACK
    with pytest.raises(InvalidRequestError) as info:
        resolve_strategy("random")
    assert info.value.param == "launch_strategy"


# --- many hosts, and random inventories -----------------------------------------------------

def test_large_cluster_stays_balanced():
    workers = [worker(f"10.0.{i // 10}.{i % 10}:9000", gpus=8) for i in range(50)]
    out = run(PlacementRequest("m", replica=600), workers)
    per_gpu = Counter(a.worker_address + str(a.gpu_idx) for a in out)
    assert len(per_gpu) == 400 and max(per_gpu.values()) - min(per_gpu.values()) <= 1


def random_inventory(rng):
    workers = []
    for i in rng.sample(range(100), rng.randint(1, 8)):
        gpus = [GpuInfo(g, "GPU", total := rng.choice([8, 16, 24]) * GIB, rng.randint(0, total))
                for g in range(rng.choice([0, 0, 1, 2, 4, 8]))]
        total = rng.choice([16, 64]) * GIB
        workers.append(WorkerResources(f"10.0.0.{i}:9000", f"10.0.0.{i}", 4, total,
                                       rng.randint(0, total), gpus))
    placed = []
    for _ in range(rng.randint(0, 6)):
        w = rng.choice(workers)
        n = min(len(w.gpus), rng.choice([0, 1, 2]))
        idx = tuple(sorted(rng.sample([g.index for g in w.gpus], n)))
        memory = rng.choice([None, rng.randint(0, 8) * GIB])
        placed.append(PlacedReplica(rng.choice(["m", "x"]), w.address, idx, memory,
                                    rng.random() < 0.5))
    return workers, placed


def random_request(rng, workers):
    pinned_worker = rng.random() < 0.2
    return PlacementRequest(
        "m", replica=rng.randint(1, 6), n_gpu=rng.choice(["auto", "auto", None, 1, 2]),
        worker_ip=rng.choice(workers).host if pinned_worker else None,
        memory_per_replica=rng.choice([None, rng.randint(1, 12) * GIB]))


def initial_free(workers, placed):
    """Usable free memory per GPU key (address, index) and per host (address,), computed afresh."""
    pending, reserved = defaultdict(int), defaultdict(int)
    for r in placed:
        keys = [(r.worker_address, i) for i in r.gpu_idx] or [(r.worker_address,)]
        for key in keys:
            share = -(-(r.memory or 0) // len(keys))
            reserved[key] += share
            pending[key] += 0 if r.loaded else share
    free = {}
    for w in workers:
        free[(w.address,)] = min(w.memory_available - pending[(w.address,)],
                                 w.memory_total - reserved[(w.address,)])
        for g in w.gpus:
            key = (w.address, g.index)
            free[key] = min(g.memory_free - pending[key], g.memory_total - reserved[key])
    return free


def check_invariants(request, workers, placed, out, allow):
    by_address = {w.address: w for w in workers}
    assert len(out) == request.replica
    free = initial_free(workers, placed)
    used = defaultdict(int)
    before = Counter((r.worker_address, i) for r in placed for i in r.gpu_idx)
    new = Counter()
    for a in out:
        w = by_address[a.worker_address]
        if request.worker_ip:
            assert request.worker_ip == w.host
        assert len(set(a.gpu_idx)) == len(a.gpu_idx)
        assert all(w.gpu(i) is not None for i in a.gpu_idx)
        if request.n_gpu is None:
            assert a.gpu_idx == ()
        elif isinstance(request.n_gpu, int):
            assert len(a.gpu_idx) == request.n_gpu
        keys = [(a.worker_address, i) for i in a.gpu_idx] or [(a.worker_address,)]
        for key in keys:
            used[key] += -(-(request.memory_per_replica or 0) // len(keys))
            new[key] += 1
    for key, amount in used.items():
        assert amount == 0 or amount <= free[key], f"memory over-committed on {key}"
    if not allow:
        gpu_keys = [key for key in new if len(key) == 2]
        assert all(new[key] == 1 and before[key] == 0 for key in gpu_keys), "GPU shared"


def feasible_single(request, workers, placed, allow):
    """Brute force: can one replica of ``request`` go anywhere?"""
    free = initial_free(workers, placed)
    taken = {(r.worker_address, i) for r in placed for i in r.gpu_idx}
    eligible = [w for w in workers if request.worker_ip in (None, w.host)]
    k = request.n_gpu
    if k == "auto":
        k = 1 if any(w.gpus for w in eligible) else None
    need = request.memory_per_replica
    for w in eligible:
        if k is None:
            if need is None or free[(w.address,)] >= need:
                return True
            continue
        ok = [g for g in w.gpus if (allow or (w.address, g.index) not in taken)
              and (need is None or free[(w.address, g.index)] >= -(-need // k))]
        if len(ok) >= k:
            return True
    return False


@pytest.mark.parametrize("strategy", [IDLE_FIRST, SPREAD, PACK])
def test_random_inventories_keep_the_rules(strategy):
    rng = random.Random(f"placement-{strategy}")
    placed_some = failures = 0
    for _ in range(300):
        workers, placed = random_inventory(rng)
        request = random_request(rng, workers)
        allow = rng.random() < 0.5
        try:
            out = run(request, workers, placed, strategy, allow)
        except ResourceExhaustedError as exc:
            failures += 1
            assert exc.message.startswith("cannot place replica")
            if request.replica == 1:
                assert not feasible_single(request, workers, placed, allow)
            continue
        placed_some += 1
        check_invariants(request, workers, placed, out, allow)
        if request.replica == 1:
            assert feasible_single(request, workers, placed, allow)
        shuffled = workers[:]
        rng.shuffle(shuffled)
        again = run(request, shuffled, placed[::-1], strategy, allow)
        assert again == out, "placement depends on input order"
    assert placed_some > 100 and failures > 10
