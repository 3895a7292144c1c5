"""The supervisor's logic without xoscar: fake workers, a fake clock, real placement and state."""

import asyncio

import pytest
from helpers import Clock

from xinference.core.cluster_state import ClusterState
from xinference.core.controller import ClusterController, estimate_memory
from xinference.core.launch_plan import launch_request_from_body, plan_launch
from xinference.core.messages import ReplicaReport
from xinference.core.resources import GIB, GpuInfo, WorkerResources
from xinference.errors import ModelLaunchError, ModelNotFoundError, ResourceExhaustedError
from xinference.model.registry import get_registry

MODEL = "smollm2-135m-instruct"


class FakeWorker:
    """Holds replica specs like a WorkerActor; ``gate`` holds launches, ``fail`` fails them."""

    def __init__(self, address):
        self.address = address
        self.replicas = {}
        self.stopped = []
        self.manifests = {}
        self.gate = None
        self.fail = None
        self.dead = False
        self.launches = 0
        self.gpus = 0
        self.loading = {}

    async def launch_replica(self, spec):
        self.launches += 1
        self.loading[spec.replica_uid] = spec
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise ModelLaunchError(self.fail)
        finally:
            self.loading.pop(spec.replica_uid, None)
        self.replicas[spec.replica_uid] = spec
        return {"address": f"{self.address}/{spec.replica_uid}", "pid": 4242}

    async def terminate_replica(self, replica_uid):
        self.stopped.append(replica_uid)
        self.replicas.pop(replica_uid, None)

    async def update_manifest(self, model_uid, manifest):
        self.manifests[model_uid] = manifest
        for spec in self.replicas.values():
            if spec.engine_config.model_uid == model_uid:
                spec.manifest = manifest

    def reports(self):
        ready = [ReplicaReport(uid, s.engine_config.model_uid, s.index, list(s.gpu_idx or []),
                               True, f"{self.address}/{uid}", 4242, s)
                 for uid, s in self.replicas.items()]
        return ready + [ReplicaReport(uid, s.engine_config.model_uid, s.index, [], False, None,
                                      None, s) for uid, s in self.loading.items()]

    def resources(self):
        gpus = [GpuInfo(i, "GPU", 24 * GIB, 24 * GIB) for i in range(self.gpus)]
        return WorkerResources(self.address, self.address.split(":")[0], 4, 64 * GIB, 48 * GIB,
                               gpus)


class Cluster:
    """A controller over fake workers; ``restart()`` builds a fresh controller (same workers)."""

    def __init__(self, names=("w1:1", "w2:1", "w3:1"), lost_timeout=10.0, rejoin_window=0.0,
                 gpus=0, restart_limit=0):
        self.restart_limit = restart_limit
        self.clock = Clock()
        self.workers = {name: FakeWorker(name) for name in names}
        for worker in self.workers.values():
            worker.gpus = gpus
        self.lost_timeout = lost_timeout
        self.controller = self._controller(rejoin_window)
        for worker in self.workers.values():
            self.controller.register_worker(worker.address, worker.resources(), [])

    def _controller(self, rejoin_window):
        state = ClusterState(self.lost_timeout, "IDLE_FIRST", True, clock=self.clock,
                             startup_grace=rejoin_window)
        return ClusterController(state, self.connect, rejoin_window=rejoin_window,
                                 rejoin_wait=rejoin_window, clock=self.clock,
                                 restart_limit=self.restart_limit)

    async def connect(self, address):
        worker = self.workers[address]
        if worker.dead:
            raise ConnectionRefusedError(f"Connect call failed {address}")
        return worker

    def restart(self, rejoin_window):
        self.controller = self._controller(rejoin_window)

    def heartbeat_all(self, except_=()):
        for name, worker in self.workers.items():
            if name not in except_ and not worker.dead:
                assert self.controller.heartbeat(name, worker.resources())

    def placement(self, uid="m"):
        return {r["replica_id"]: (r["worker_address"], r["status"])
                for r in self.controller.replica_dicts(uid)}


def launch(cluster, replica=3, uid="m", wait=True, **extra):
    body = {"model_name": MODEL, "model_engine": "fake", "model_uid": uid, "replica": replica,
            **extra}
    request = launch_request_from_body(body)
    family, config = plan_launch(request, get_registry())
    return cluster.controller.launch_model(request, family.to_dict(), config, wait)


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_three_replicas_spread_one_per_worker_and_become_ready():
    async def run():
        cluster = Cluster()
        result = await launch(cluster, replica=3, envs={"A": "0"})
        assert result["model_engine"] == "fake"
        placement = cluster.placement()
        assert sorted(w for w, _ in placement.values()) == ["w1:1", "w2:1", "w3:1"]
        assert {s for _, s in placement.values()} == {"READY"}
        spec = next(iter(cluster.workers["w1:1"].replicas.values()))
        assert spec.envs == {"A": "0"} and spec.manifest.replica == 3
        desc = cluster.controller.describe_model("m")
        assert desc["status"] == "READY" and desc["replica"] == 3
        assert [w["replicas"] for w in cluster.controller.workers()] == [1, 1, 1]
    asyncio.run(run())


def test_lost_worker_replica_is_relaunched_on_another_and_its_return_stops_the_copy():
    async def run():
        cluster = Cluster(lost_timeout=3)
        await launch(cluster, replica=3)
        victim = cluster.placement()[1][0]
        cluster.workers[victim].dead = True
        for _ in range(3):
            cluster.clock.advance(1)
            cluster.heartbeat_all(except_=(victim,))
            lost, _ = await cluster.controller.check()
            assert lost == []
        cluster.clock.advance(0.5)
        cluster.heartbeat_all(except_=(victim,))
        lost, plan = await cluster.controller.check()
        assert lost == [victim] and [(r.index, r.state.value) for r in plan.launches] == [
            (1, "LAUNCHING")]
        await settle()
        new_home, status = cluster.placement()[1]
        assert new_home != victim and status == "READY"
        assert cluster.workers[new_home].replicas.get("m-1") is not None
        # The victim was only partitioned: it comes back still running its copy.
        cluster.workers[victim].dead = False
        assert cluster.controller.heartbeat(victim) is False
        stop = cluster.controller.register_worker(victim, None, cluster.workers[victim].reports())
        assert stop == ["m-1"]
        replicas = cluster.controller.replica_dicts("m")
        assert [r["replica_id"] for r in replicas] == [0, 1, 2]
        assert replicas[1]["worker_address"] == new_home
    asyncio.run(run())


def test_supervisor_restart_rebuilds_the_model_from_reports_without_duplicates():
    async def run():
        cluster = Cluster(lost_timeout=5)
        await launch(cluster, replica=3, envs={"X": "1"})
        before = cluster.placement()
        cluster.restart(rejoin_window=5)
        ctl = cluster.controller
        with pytest.raises(ModelNotFoundError):
            ctl.model("nope")
        for name, worker in cluster.workers.items():
            assert ctl.heartbeat(name) is False  # unknown to the new supervisor
            assert ctl.register_worker(name, worker.resources(), worker.reports()) == []
        assert cluster.placement() == before
        assert ctl.models["m"].request.envs == {"X": "1"}
        lost, plan = await ctl.check()
        assert plan.launches == []
        # A second registration of the same worker (a retried call) changes nothing.
        again = cluster.workers["w2:1"]
        assert ctl.register_worker("w2:1", again.resources(), again.reports()) == []
        assert len(ctl.replica_dicts("m")) == 3
        assert sum(len(w.replicas) for w in cluster.workers.values()) == 3
    asyncio.run(run())


def test_restart_relaunches_a_replica_whose_worker_never_returns_after_the_grace():
    async def run():
        cluster = Cluster(lost_timeout=5)
        await launch(cluster, replica=3)
        gone = cluster.placement()[2][0]
        cluster.workers[gone].dead = True
        cluster.restart(rejoin_window=5)
        ctl = cluster.controller
        for name, worker in cluster.workers.items():
            if name != gone:
                ctl.register_worker(name, worker.resources(), worker.reports())
        assert [r["replica_id"] for r in ctl.replica_dicts("m")] == [0, 1]
        assert (await ctl.check())[1].launches == []  # within the grace: wait for it
        cluster.clock.advance(6)
        cluster.heartbeat_all()
        _, plan = await ctl.check()
        await settle()
        assert [r.index for r in plan.launches] == [2]
        assert cluster.placement()[2][0] != gone and cluster.placement()[2][1] == "READY"
    asyncio.run(run())


def test_unknown_model_reported_after_the_rejoin_window_is_stopped():
    async def run():
        cluster = Cluster()
        await launch(cluster, replica=1)
        home = cluster.placement()[0][0]
        cluster.restart(rejoin_window=0)
        stop = cluster.controller.register_worker(home, None, cluster.workers[home].reports())
        assert stop == ["m-0"] and "m" not in cluster.controller.models
    asyncio.run(run())


def test_get_replicas_waits_for_workers_to_rejoin():
    async def run():
        cluster = Cluster()
        await launch(cluster, replica=1)
        home = cluster.placement()[0][0]
        cluster.restart(rejoin_window=5)
        ctl = cluster.controller

        async def rejoin_soon():
            await asyncio.sleep(0.1)
            ctl.register_worker(home, None, cluster.workers[home].reports())
        task = asyncio.ensure_future(rejoin_soon())
        info = await asyncio.wait_for(ctl.get_replicas("m"), 3)
        await task
        assert [r["status"] for r in info["replicas"]] == ["READY"]
    asyncio.run(run())


def test_add_and_remove_replicas_keep_indexes_and_survive_a_restart():
    async def run():
        cluster = Cluster()
        await launch(cluster, replica=1)
        added = await cluster.controller.add_replicas("m", 2)
        assert [r["replica_id"] for r in added] == [1, 2]
        assert await cluster.controller.remove_replica("m", 0) == 2
        assert sorted(cluster.placement()) == [1, 2]
        assert any("m-0" in w.stopped for w in cluster.workers.values())
        added = await cluster.controller.add_replicas("m", 1)
        assert [r["replica_id"] for r in added] == [3]
        with pytest.raises(ModelNotFoundError):
            await cluster.controller.remove_replica("m", 0)
        cluster.restart(rejoin_window=5)
        for worker in cluster.workers.values():
            cluster.controller.register_worker(worker.address, worker.resources(), worker.reports())
        assert sorted(cluster.placement()) == [1, 2, 3]
        entry = cluster.controller.state.replicas.model("m")
        assert entry.request.replica == 3 and entry.removed == {0}
    asyncio.run(run())


def test_failed_launch_names_the_cause_and_all_failing_undoes_the_model():
    async def run():
        cluster = Cluster(names=("w1:1", "w2:1"))
        cluster.workers["w2:1"].fail = "out of memory on w2"
        await launch(cluster, replica=2)
        states = {w: s for w, s in cluster.placement().values()}
        assert states == {"w1:1": "READY", "w2:1": "FAILED"}
        assert cluster.controller.describe_model("m")["status"] == "READY"
        assert "out of memory on w2" in [r["error"] for r in cluster.controller.replica_dicts("m")]
        cluster.workers["w1:1"].fail = "bad weights"
        with pytest.raises(ModelLaunchError, match="bad weights|out of memory"):
            await launch(cluster, replica=2, uid="n")
        assert "n" not in cluster.controller.models
        with pytest.raises(ResourceExhaustedError):
            await launch(cluster, replica=1, uid="pinned", worker_ip="w1", n_gpu=1)
    asyncio.run(run())


def test_terminating_while_launching_stops_the_replica_when_its_launch_ends():
    async def run():
        cluster = Cluster(names=("w1:1",))
        cluster.workers["w1:1"].gate = asyncio.Event()
        await launch(cluster, replica=1, wait=False)
        await settle()
        assert cluster.placement()[0][1] == "LAUNCHING"
        await cluster.controller.terminate_model("m")
        cluster.workers["w1:1"].gate.set()
        await settle()
        assert cluster.workers["w1:1"].replicas == {}
        assert cluster.workers["w1:1"].stopped.count("m-0") >= 1
    asyncio.run(run())


def test_process_death_is_failed_with_its_reason_and_not_relaunched():
    async def run():
        cluster = Cluster()
        await launch(cluster, replica=1)
        cluster.controller.report_replica_failed("m", "m-0",
                                                 "the model process was killed by SIGKILL")
        assert cluster.placement()[0][1] == "FAILED"
        assert (await cluster.controller.check())[1].launches == []
        assert "SIGKILL" in cluster.controller.describe_model("m")["error"]
    asyncio.run(run())


def test_process_death_restarts_the_replica_until_its_budget_is_spent():
    async def run():
        cluster = Cluster(restart_limit=2)
        await launch(cluster, replica=1)
        for attempt in (1, 2):
            assert cluster.controller.report_replica_failed("m", "m-0", "killed by SIGKILL")
            assert cluster.placement()[0][1] == "LOST"
            assert [r.index for r in (await cluster.controller.check())[1].launches] == [0]
            await settle()
            (replica,) = cluster.controller.replica_dicts("m")
            assert (replica["status"], replica["restarts"]) == ("READY", attempt)
            assert replica["last_failure"] == "killed by SIGKILL"
        assert not cluster.controller.report_replica_failed("m", "m-0", "killed by SIGKILL")
        assert cluster.placement()[0][1] == "FAILED"
        assert (await cluster.controller.check())[1].launches == []
        assert "after 2 restarts" in cluster.controller.describe_model("m")["error"]
    asyncio.run(run())


def test_a_worker_leaving_on_purpose_moves_its_replicas_at_once():
    async def run():
        cluster = Cluster()
        await launch(cluster, replica=2)
        home = cluster.placement()[0][0]
        cluster.controller.unregister_worker(home)
        _, plan = await cluster.controller.check()
        await settle()
        assert [r.index for r in plan.launches] == [0]
        assert cluster.placement()[0][0] != home and cluster.placement()[0][1] == "READY"
    asyncio.run(run())


def test_memory_per_replica_places_by_free_gpu_memory_and_says_what_is_short():
    async def run():
        cluster = Cluster(gpus=1)
        await launch(cluster, replica=3, n_gpu=1, memory_per_replica=20 * GIB)
        placement = cluster.placement()
        assert sorted(w for w, _ in placement.values()) == ["w1:1", "w2:1", "w3:1"]
        records = cluster.controller.replica_dicts("m")
        assert {r["memory"] for r in records} == {20 * GIB}
        assert {tuple(r["gpu_idx"]) for r in records} == {(0,)}
        spec = next(iter(cluster.workers["w1:1"].replicas.values()))
        assert "memory_per_replica" not in spec.engine_config.options
        assert spec.gpu_idx == [0]
        with pytest.raises(ResourceExhaustedError, match=r"20.0 GiB free.*4.0 GiB free"):
            await cluster.controller.add_replicas("m", 1)
        assert cluster.controller.state.replicas.model("m").request.replica == 3
    asyncio.run(run())


def test_memory_estimate_follows_size_and_quantization():
    from xinference.model.engines.base import EngineConfig

    def estimate(fmt, size, quant):
        return estimate_memory(EngineConfig("u", "LLM", "n", "e", fmt, "", quant, size))
    assert 0.07 * GIB < estimate("ggufv2", "0_135", "Q4_1") < 0.1 * GIB
    assert estimate("pytorch", "7", "none") > 3 * estimate("ggufv2", "7", "Q4_K_M")
    assert estimate("gptq", "7", "Int4") < estimate("pytorch", "7", "8-bit")
    assert estimate("pytorch", "7", "8-bit") < estimate("pytorch", "7", "none")
    assert estimate("pytorch", None, "none") is None


def test_a_worker_dying_during_a_launch_leaves_the_replica_lost_and_it_is_placed_again():
    async def run():
        cluster = Cluster(names=("w1:1", "w2:1"), lost_timeout=3)
        cluster.workers["w2:1"].dead = True
        await launch(cluster, replica=2)
        states = {w: s for w, s in cluster.placement().values()}
        assert states == {"w1:1": "READY", "w2:1": "LOST"}
        cluster.clock.advance(4)
        cluster.heartbeat_all()
        lost, plan = await cluster.controller.check()
        await settle()
        assert lost == ["w2:1"] and [r.index for r in plan.launches] == [1]
        assert {w for w, _ in cluster.placement().values()} == {"w1:1"}
        assert {s for _, s in cluster.placement().values()} == {"READY"}
    asyncio.run(run())


def test_replica_still_loading_across_a_supervisor_restart_is_settled_by_heartbeats():
    async def run():
        cluster = Cluster(names=("w1:1", "w2:1"), lost_timeout=5)
        for worker in cluster.workers.values():
            worker.gate = asyncio.Event()
        await launch(cluster, replica=2, wait=False)
        await settle()
        cluster.restart(rejoin_window=5)
        ctl = cluster.controller
        for name, worker in cluster.workers.items():
            assert ctl.register_worker(name, worker.resources(), worker.reports()) == []
        assert {s for _, s in cluster.placement().values()} == {"LAUNCHING"}
        cluster.workers["w1:1"].gate.set()  # w1 finishes loading; w2's load fails
        cluster.workers["w2:1"].fail = "weights corrupt"
        cluster.workers["w2:1"].gate.set()
        await settle()
        for name, worker in cluster.workers.items():
            assert ctl.heartbeat(name, worker.resources(), worker.reports())
        states = {w: s for w, s in cluster.placement().values()}
        assert states == {"w1:1": "READY", "w2:1": "LOST"}
        ready = next(r for r in ctl.replica_dicts("m") if r["status"] == "READY")
        assert ready["address"] == f"w1:1/{ready['replica_uid']}"
        cluster.clock.advance(6)
        cluster.workers["w2:1"].fail = None
        cluster.heartbeat_all()
        _, plan = await ctl.check()
        await settle()
        assert len(plan.launches) == 1 and {s for _, s in cluster.placement().values()} == {"READY"}
    asyncio.run(run())


def test_registration_during_a_launch_does_not_lose_the_replica_being_launched():
    async def run():
        cluster = Cluster(names=("w1:1",))
        worker = cluster.workers["w1:1"]
        worker.gate = asyncio.Event()
        await launch(cluster, replica=1, wait=False)
        # The worker's report was taken before the launch call reached it.
        assert cluster.controller.register_worker("w1:1", worker.resources(), []) == []
        assert cluster.controller.heartbeat("w1:1", worker.resources(), [])
        assert cluster.placement()[0][1] == "LAUNCHING"
        worker.gate.set()
        await settle()
        assert cluster.placement()[0][1] == "READY"
    asyncio.run(run())
