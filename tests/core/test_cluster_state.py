"""The supervisor's bookkeeping: heartbeats, lost workers, the replica machine, recovery, rejoin."""

import itertools

import pytest
from helpers import Clock

from xinference import settings as settings_module
from xinference.core.cluster_state import (
    TRANSITIONS,
    Action,
    ActionKind,
    ClusterState,
    InvalidTransitionError,
    Observed,
    ReplicaState,
    RecoveryPlan,
    ReplicaTable,
    ReportedReplica,
    WorkerStatus,
    WorkerTable,
    reconcile,
)
from xinference.core.placement import Assignment, PlacementRequest
from xinference.core.resources import GIB, GpuInfo, WorkerResources
from xinference.errors import DuplicateModelError, ResourceExhaustedError

S = ReplicaState


def res(address, gpus=0, gpu_free=24 * GIB, mem_free=48 * GIB):
    return WorkerResources(address, address.split(":")[0], 8, 64 * GIB, mem_free,
                           [GpuInfo(i, "GPU", 24 * GIB, gpu_free) for i in range(gpus)])


# --- worker table -------------------------------------------------------------------------

def test_worker_is_lost_after_the_timeout_and_only_reported_once():
    clock = Clock()
    table = WorkerTable(lost_timeout=10, clock=clock)
    assert table.register("w1:1", res("w1:1")) is False
    table.register("w2:1", res("w2:1"))
    for _ in range(5):  # w1 heartbeats every 2 s, w2 stays silent (10 s is not yet "over")
        clock.advance(2)
        assert table.heartbeat("w1:1") is True
        assert table.check() == []
    clock.advance(0.5)
    assert table.check() == ["w2:1"]
    assert table.get("w2:1").status is WorkerStatus.LOST and table.get("w2:1").lost_at == clock.now
    assert table.check() == []
    assert [r.address for r in table.alive_resources()] == ["w1:1"]


def test_lost_or_unknown_worker_must_register_again_and_rejoins_without_duplicates():
    clock = Clock()
    table = WorkerTable(lost_timeout=5, clock=clock)
    assert table.heartbeat("w1:1") is False
    table.register("w1:1", res("w1:1"))
    clock.advance(6)
    assert table.check() == ["w1:1"]
    assert table.heartbeat("w1:1") is False
    assert table.register("w1:1") is True
    assert table.register("w1:1") is True
    assert [e.address for e in table.entries()] == ["w1:1"]
    entry = table.get("w1:1")
    assert entry.status is WorkerStatus.ALIVE and entry.resources is not None
    assert entry.lost_at is None
    assert entry.to_dict()["status"] == "ALIVE"


def test_heartbeat_refreshes_resources():
    table = WorkerTable(lost_timeout=5, clock=Clock())
    table.register("w1:1", res("w1:1", mem_free=1 * GIB))
    table.heartbeat("w1:1", res("w1:1", mem_free=9 * GIB))
    assert table.get("w1:1").resources.memory_available == 9 * GIB


def test_lost_timeout_defaults_to_the_setting(monkeypatch):
    monkeypatch.setenv("XINFERENCE_WORKER_LOST_TIMEOUT", "3.5")
    try:
        settings_module.get_settings(refresh=True)
        assert WorkerTable().lost_timeout == 3.5
    finally:
        monkeypatch.undo()
        settings_module.get_settings(refresh=True)
    with pytest.raises(ValueError):
        WorkerTable(lost_timeout=0)


# --- replica state machine ------------------------------------------------------------------

EXPECTED = {
    (S.LAUNCHING, S.READY), (S.LAUNCHING, S.FAILED), (S.LAUNCHING, S.LOST),
    (S.LAUNCHING, S.TERMINATING),
    (S.READY, S.FAILED), (S.READY, S.LOST), (S.READY, S.TERMINATING),
    (S.FAILED, S.TERMINATING), (S.LOST, S.READY), (S.LOST, S.TERMINATING),
}


def table_with(state):
    """A replica table holding replica 0 of model "m" in ``state``, reached by legal steps."""
    table = ReplicaTable()
    table.add_model(PlacementRequest("m"))
    table.launch("m", 0, Assignment("w1:1"))
    path = {S.LAUNCHING: [], S.READY: [S.READY], S.FAILED: [S.FAILED], S.LOST: [S.LOST],
            S.TERMINATING: [S.TERMINATING]}[state]
    for step in path:
        table.transition("m", 0, step)
    return table


@pytest.mark.parametrize("source, target", list(itertools.product(S, S)))
def test_every_transition_is_allowed_or_refused_as_specified(source, target):
    table = table_with(source)
    if (source, target) in EXPECTED:
        assert table.transition("m", 0, target).state is target
    else:
        with pytest.raises(InvalidTransitionError) as info:
            table.transition("m", 0, target)
        assert f"from {source.value} to {target.value}" in info.value.message
    assert set(TRANSITIONS[source]) == {t for s, t in EXPECTED if s is source}


def test_only_terminating_replicas_are_removed_and_live_ones_are_not_replaced():
    table = table_with(S.READY)
    with pytest.raises(InvalidTransitionError):
        table.remove("m", 0)
    with pytest.raises(InvalidTransitionError):
        table.launch("m", 0, Assignment("w2:1"))
    table.transition("m", 0, S.TERMINATING, error=None)
    table.remove("m", 0)
    assert table.records() == []


def test_failed_replica_keeps_its_error_and_can_be_relaunched():
    table = table_with(S.LAUNCHING)
    table.transition("m", 0, S.FAILED, error="CUDA out of memory")
    assert table.get("m", 0).to_dict()["error"] == "CUDA out of memory"
    record = table.launch("m", 0, Assignment("w2:1", (1,), 3))
    assert (record.worker_address, record.gpu_idx, record.state) == ("w2:1", (1,), S.LAUNCHING)
    assert record.error is None and record.replica_uid == "m-0"


def test_duplicate_model_uid_is_refused():
    table = ReplicaTable()
    table.add_model(PlacementRequest("m"))
    with pytest.raises(DuplicateModelError):
        table.add_model(PlacementRequest("m", replica=2))


# --- pure reconciliation ------------------------------------------------------------------

def test_reconcile_desired_against_actual():
    observed = [
        Observed("m", 0, "a:1", tracked=True),
        Observed("m", 0, "b:1"),                       # duplicate of a tracked copy
        Observed("m", 1, "c:1", ready=False),
        Observed("m", 1, "b:1"),                       # ready beats loading among untracked
        Observed("m", 5, "a:1", tracked=True),         # index beyond desired
        Observed("gone", 0, "c:1"),                    # model no longer wanted
        Observed("m", 0, "b:1"),                       # repeated report
    ]
    actions = reconcile({"m": 3, "n": 1}, observed)
    assert actions == [
        Action(ActionKind.TERMINATE, "gone", 0, "c:1", "not running"),
        Action(ActionKind.TERMINATE, "m", 0, "b:1", "duplicate of the copy on a:1"),
        Action(ActionKind.ADOPT, "m", 1, "b:1", "running"),
        Action(ActionKind.TERMINATE, "m", 1, "c:1", "duplicate of the copy on b:1"),
        Action(ActionKind.TERMINATE, "m", 5, "a:1", "model 'm' wants 3 replicas"),
        Action(ActionKind.LAUNCH, "m", 2, None, "no running copy"),
        Action(ActionKind.LAUNCH, "n", 0, None, "no running copy"),
    ]
    assert reconcile({"m": 1}, [Observed("m", 0, "a:1", tracked=True)]) == []


# --- the cluster: lost workers, recovery, rejoin ---------------------------------------------

def three_worker_cluster(clock, **kwargs):
    state = ClusterState(lost_timeout=10, strategy="IDLE_FIRST", allow_multi_replica_per_gpu=True,
                         clock=clock, **kwargs)
    for name in ("w1:1", "w2:1", "w3:1"):
        state.register_worker(name, res(name, gpus=1))
    return state


def ready_all(state, model_uid):
    for r in state.replicas.records(model_uid):
        state.replicas.transition(model_uid, r.index, S.READY)


def test_lost_worker_replica_is_relaunched_elsewhere_and_its_return_makes_no_duplicate():
    clock = Clock()
    state = three_worker_cluster(clock)
    launched = state.launch_model(PlacementRequest("m", replica=3))
    assert sorted(r.worker_address for r in launched) == ["w1:1", "w2:1", "w3:1"]
    ready_all(state, "m")
    victim = state.replicas.get("m", 1).worker_address
    for _ in range(6):
        clock.advance(2)
        for name in ("w1:1", "w2:1", "w3:1"):
            if name != victim:
                state.heartbeat(name)
        lost, plan = state.tick()
        if lost:
            break
    assert lost == [victim] and clock.now - 1000.0 <= 12
    assert [(r.model_uid, r.index) for r in plan.launches] == [("m", 1)]
    moved = state.replicas.get("m", 1)
    assert moved.state is S.LAUNCHING and moved.worker_address != victim
    state.replicas.transition("m", 1, S.READY)

    back = state.register_worker(victim, res(victim, gpus=1), [ReportedReplica("m", 1, (0,))])
    assert back.returning is True and back.adopted == []
    assert [(a.kind, a.worker_address) for a in back.terminate] == [(ActionKind.TERMINATE, victim)]
    records = state.replicas.records("m")
    assert [r.index for r in records] == [0, 1, 2]
    assert state.replicas.get("m", 1).worker_address == moved.worker_address
    assert state.tick()[1].launches == []


def test_unplaceable_lost_replica_waits_then_is_adopted_back_when_its_worker_returns():
    clock = Clock()
    state = ClusterState(lost_timeout=5, strategy="SPREAD", allow_multi_replica_per_gpu=False,
                         clock=clock)
    state.register_worker("w1:1", res("w1:1", gpus=1))
    state.register_worker("w2:1", res("w2:1", gpus=1))
    state.launch_model(PlacementRequest("m", replica=2))
    ready_all(state, "m")
    clock.advance(6)
    state.heartbeat("w1:1")
    lost, plan = state.tick()
    assert lost == ["w2:1"] and plan.launches == []
    (uid, index, reason), = plan.unplaced
    assert (uid, index) == ("m", 1) and "not shared with another replica" in reason
    assert state.replicas.get("m", 1).state is S.LOST

    back = state.register_worker("w2:1", res("w2:1", gpus=1), [ReportedReplica("m", 1, (0,))])
    assert back.terminate == [] and [r.state for r in back.adopted] == [S.READY]
    assert state.replicas.get("m", 1).worker_address == "w2:1"
    clock.advance(1)
    state.heartbeat("w1:1")
    assert state.tick() == ([], RecoveryPlan()) and state.replicas.missing() == []


def test_worker_that_restarted_without_its_replicas_gets_them_relaunched():
    clock = Clock()
    state = three_worker_cluster(clock)
    state.launch_model(PlacementRequest("m", replica=3, n_gpu=None, memory_per_replica=1 * GIB))
    ready_all(state, "m")
    home = state.replicas.get("m", 0).worker_address
    back = state.register_worker(home, res(home, gpus=1), reported=[])
    assert [(r.index, r.state) for r in back.lost] == [(0, S.LOST)]
    plan = state.recover()
    assert [(r.index, r.state) for r in plan.launches] == [(0, S.LAUNCHING)]


def test_supervisor_restart_adopts_reported_replicas_and_holds_launches_during_grace():
    clock = Clock()
    state = ClusterState(lost_timeout=10, clock=clock, startup_grace=10,
                         strategy="IDLE_FIRST", allow_multi_replica_per_gpu=True)
    state.replicas.add_model(PlacementRequest("m", replica=3))  # desired state restored from disk
    state.register_worker("w1:1", res("w1:1", gpus=1), [ReportedReplica("m", 0, (0,))])
    assert state.recover().launches == []  # w2 and w3 may still be coming back
    r2 = state.register_worker("w2:1", res("w2:1", gpus=1),
                               [ReportedReplica("m", 1, (0,)),
                                ReportedReplica("m", 2, (0,), ready=False)])
    r3 = state.register_worker("w3:1", res("w3:1", gpus=1),
                               [ReportedReplica("m", 2, (0,)), ReportedReplica("old", 0, (0,))])
    assert [(r.index, r.state) for r in r2.adopted] == [(1, S.READY), (2, S.LAUNCHING)]
    assert [(a.model_uid, a.index, a.worker_address) for a in r3.terminate] == [
        ("m", 2, "w3:1"), ("old", 0, "w3:1")]
    clock.advance(11)
    assert state.recover().launches == [] and len(state.replicas.records("m")) == 3
    state.replicas.transition("m", 2, S.READY)
    again = state.register_worker("w2:1", res("w2:1", gpus=1),
                                  [ReportedReplica("m", 1, (0,)), ReportedReplica("m", 2, (0,))])
    assert again.terminate == [] and [r.worker_address for r in state.replicas.records("m")] == [
        "w1:1", "w2:1", "w2:1"]


def test_missing_replica_with_no_record_is_launched_after_grace():
    clock = Clock()
    state = ClusterState(lost_timeout=10, clock=clock, startup_grace=5,
                         strategy="SPREAD", allow_multi_replica_per_gpu=True)
    state.replicas.add_model(PlacementRequest("m", replica=2, n_gpu=None))
    state.register_worker("w1:1", res("w1:1"), [ReportedReplica("m", 0)])
    state.register_worker("w2:1", res("w2:1"))
    clock.advance(6)
    state.heartbeat("w1:1")
    state.heartbeat("w2:1")
    assert [(r.index, r.worker_address) for r in state.tick()[1].launches] == [(1, "w2:1")]


def test_pinned_model_cannot_move_off_its_lost_worker():
    clock = Clock()
    state = three_worker_cluster(clock)
    state.launch_model(PlacementRequest("m", worker_ip="w2"))
    clock.advance(11)
    state.heartbeat("w1:1")
    state.heartbeat("w3:1")
    lost, plan = state.tick()
    assert lost == ["w2:1"]
    assert plan.unplaced[0][:2] == ("m", 0) and "worker_ip='w2'" in plan.unplaced[0][2]


def test_launch_is_all_or_nothing_and_scale_adds_and_removes_replicas():
    state = three_worker_cluster(Clock())
    with pytest.raises(ResourceExhaustedError):
        state.launch_model(PlacementRequest("big", replica=4, memory_per_replica=20 * GIB))
    assert not state.replicas.has_model("big")
    state.launch_model(PlacementRequest("m", replica=1, memory_per_replica=20 * GIB))
    ready_all(state, "m")
    with pytest.raises(DuplicateModelError):
        state.launch_model(PlacementRequest("m"))
    added, stopping = state.scale("m", 3)
    assert [r.index for r in added] == [1, 2] and stopping == []
    assert len({r.worker_address for r in state.replicas.records("m")}) == 3
    with pytest.raises(ResourceExhaustedError, match="replica 1 of 1"):
        state.scale("m", 4)
    assert state.replicas.model("m").request.replica == 3
    added, stopping = state.scale("m", 1)
    assert added == []
    assert [(r.index, r.state) for r in stopping] == [(1, S.TERMINATING), (2, S.TERMINATING)]
    for r in stopping:
        state.replicas.remove("m", r.index)
    assert [r.index for r in state.replicas.records("m")] == [0]
    assert state.replicas.missing() == []


def test_snapshot_counts_only_live_workers_and_replicas_holding_resources():
    clock = Clock()
    state = three_worker_cluster(clock)
    state.launch_model(PlacementRequest("m", replica=3, memory_per_replica=2 * GIB))
    state.replicas.transition("m", 0, S.READY)
    state.replicas.transition("m", 1, S.FAILED)
    snap = state.snapshot()
    assert [w.address for w in snap.workers] == ["w1:1", "w2:1", "w3:1"]
    assert sorted((p.model_uid, p.loaded) for p in snap.replicas) == [("m", False), ("m", True)]
    clock.advance(11)
    state.heartbeat("w1:1")
    state.tick()
    assert [w.address for w in state.snapshot().workers] == ["w1:1"]


def test_relaunch_keeps_the_per_replica_gpu_count_of_a_pinned_auto_request():
    clock = Clock()
    state = ClusterState(lost_timeout=5, clock=clock, strategy="IDLE_FIRST",
                         allow_multi_replica_per_gpu=False)
    for name in ("a:1", "b:1"):
        state.register_worker(name, res(name, gpus=4))
    launched = state.launch_model(PlacementRequest("m", replica=2, gpu_idx=[0, 1, 2, 3]))
    assert [(r.worker_address, r.gpu_idx) for r in launched] == [("a:1", (0, 1)), ("b:1", (0, 1))]
    clock.advance(6)
    state.heartbeat("a:1")
    lost, plan = state.tick()
    assert lost == ["b:1"]
    assert [(r.index, r.worker_address, r.gpu_idx) for r in plan.launches] == [(1, "a:1", (2, 3))]
