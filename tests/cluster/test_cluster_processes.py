"""A real cluster on 127.0.0.1: one supervisor and three workers, each its own OS process.

One module-scoped cluster runs the scenario in order: placement of 3 replicas
(one per worker), per-model environment variables, adding and removing a
replica; a steady chat load while a worker is SIGKILLed (nothing that had not
started streaming fails, the lost replica comes back elsewhere); the supervisor
SIGKILLed and restarted on the same ports mid-load (every worker rejoins, no
duplicate replica); and ``stop-cluster`` ending every process.
"""

import glob
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from cluster_procs import MODEL_NAME, ChatLoad, Cluster
from helpers import wait_until

HEARTBEAT = 0.5
LOST_TIMEOUT = 3.0
FIGURES = {}
FAILED_TESTS = []  # filled by conftest.py: the cluster's log warnings are printed if any


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("cluster_home"))
    env = dict(os.environ, XINFERENCE_HOME=home, OMP_NUM_THREADS="1",
               XINFERENCE_HEARTBEAT_INTERVAL=str(HEARTBEAT),
               XINFERENCE_WORKER_LOST_TIMEOUT=str(LOST_TIMEOUT),
               XINFERENCE_HEALTH_CHECK_INTERVAL="0.5", XINFERENCE_HEALTH_CHECK_TIMEOUT="2",
               XINFERENCE_HEALTH_CHECK_FAILURE_THRESHOLD="120")
    env.pop("XINFERENCE_ENDPOINT", None)
    procs = Cluster(home, env)
    started = time.monotonic()
    try:
        procs.start_supervisor()
        for _ in range(3):
            procs.start_worker()
        wait_until(lambda: len(alive_workers(procs.base_url)) == 3, 90, "3 registered workers")
        FIGURES["cluster_start_s"] = round(time.monotonic() - started, 1)
        yield procs
    except BaseException:
        print(procs.logs())
        raise
    finally:
        if FAILED_TESTS:
            print(f"\nwarnings and errors logged by the cluster:\n{procs.notable_log_lines()}")
        procs.stop_all()
        FIGURES["gateway_retries"] = _count_in_logs(home, "retrying on another replica")
        print(f"\ncluster figures: {json.dumps(FIGURES)}")


def _count_in_logs(home, text):
    count = 0
    for path in glob.glob(os.path.join(home, "logs", "supervisor_*", "xinference.log")):
        with open(path, errors="replace") as fh:
            count += fh.read().count(text)
    return count


@pytest.fixture(scope="module")
def api(cluster):
    with httpx.Client(base_url=cluster.base_url, timeout=120, trust_env=False) as client:
        yield client


def alive_workers(base_url):
    resp = httpx.get(f"{base_url}/v1/workers", timeout=5, trust_env=False)
    return [w for w in resp.json() if w["status"] == "ALIVE"]


def replicas(api, uid):
    resp = api.get(f"/v1/models/{uid}/replicas")
    assert resp.status_code == 200, resp.text
    return resp.json()


def environ_of(pid):
    return psutil.Process(pid).environ()


def test_three_replicas_spread_one_per_worker_with_their_envs(cluster, api):
    started = time.monotonic()
    resp = api.post("/v1/models", json={
        "model_name": MODEL_NAME, "model_engine": "fake", "model_uid": "m", "replica": 3,
        "delay_per_token": 0.03, "envs": {"XINF_CLUSTER_PROBE": "m-only"}})
    assert resp.status_code == 200, resp.text
    FIGURES["launch_3_replicas_s"] = round(time.monotonic() - started, 1)
    reps = replicas(api, "m")
    assert sorted(r["replica_id"] for r in reps) == [0, 1, 2]
    assert {r["status"] for r in reps} == {"READY"}
    worker_addresses = {w["address"] for w in alive_workers(cluster.base_url)}
    assert {r["worker_address"] for r in reps} == worker_addresses
    for rep in reps:
        assert environ_of(rep["pid"]).get("XINF_CLUSTER_PROBE") == "m-only"
    for worker in cluster.workers:
        assert "XINF_CLUSTER_PROBE" not in environ_of(worker.popen.pid)
    info = api.get("/v1/cluster/info").json()
    assert info["alive_workers"] == 3 and info["replicas"] == 3 and info["cpu_count"] > 0


def test_replicas_are_added_and_removed_through_rest(cluster, api):
    resp = api.post("/v1/models", json={"model_name": MODEL_NAME, "model_engine": "fake",
                                        "model_uid": "plain"})
    assert resp.status_code == 200, resp.text
    first = replicas(api, "plain")[0]
    assert "XINF_CLUSTER_PROBE" not in environ_of(first["pid"])
    added = api.post("/v1/models/plain/replicas", json={"replica": 1})
    assert added.status_code == 200, added.text
    assert [r["replica_id"] for r in added.json()["replicas"]] == [1]
    second = replicas(api, "plain")[1]
    assert second["status"] == "READY", second
    assert second["worker_address"] != first["worker_address"]
    gone = api.delete("/v1/models/plain/replicas/0")
    assert gone.status_code == 200 and gone.json()["remaining_replicas"] == 1
    assert [r["replica_id"] for r in replicas(api, "plain")] == [1]
    wait_until(lambda: not psutil.pid_exists(first["pid"])
               or psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE, 15,
               "the removed replica's process to end")
    answer = api.post("/v1/chat/completions", json={
        "model": "plain", "messages": [{"role": "user", "content": "still here"}]})
    assert answer.json()["choices"][0]["message"]["content"] == "echo: still here"
    assert api.delete("/v1/models/plain/replicas/7").status_code == 404
    assert api.delete("/v1/models/plain").status_code == 200


def _chat(base_url, prompt):
    resp = httpx.post(f"{base_url}/v1/chat/completions", timeout=60, trust_env=False, json={
        "model": "m", "messages": [{"role": "user", "content": prompt}]})
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


def _moved(api, replica_id, old_worker):
    rep = next(r for r in replicas(api, "m") if r["replica_id"] == replica_id)
    return rep["worker_address"] != old_worker and rep


def test_killed_worker_replica_comes_back_elsewhere_and_no_request_fails(cluster, api):
    victim = cluster.workers[0]
    pids = {p.pid for p in cluster.model_processes(victim)}
    doomed = next(r for r in replicas(api, "m") if r["pid"] in pids)
    victim_address, lost_id = doomed["worker_address"], doomed["replica_id"]
    with ChatLoad(cluster.base_url, "m") as load, ThreadPoolExecutor(6) as pool:
        time.sleep(2)
        long_prompt = " ".join(["word"] * 40)  # about 1.2 s of generation each
        burst = [pool.submit(_chat, cluster.base_url, f"{i} {long_prompt}") for i in range(6)]
        time.sleep(0.6)  # every replica now has plain requests in flight
        killed_at = time.monotonic()
        victim.popen.send_signal(signal.SIGKILL)
        moved = wait_until(lambda: _moved(api, lost_id, victim_address), LOST_TIMEOUT + 10,
                           "the lost replica to be re-placed", interval=0.1)
        detected = time.monotonic() - killed_at
        wait_until(lambda: _moved(api, lost_id, victim_address)["status"] == "READY", 60,
                   "the re-launched replica to be READY", interval=0.1)
        ready = time.monotonic() - killed_at
        time.sleep(2)
        answers = [f.result(timeout=60) for f in burst]
    outcomes = load.between(0, time.monotonic())
    summary = load.summary(outcomes)
    assert answers == [f"echo: {i} {long_prompt}" for i in range(6)]
    retries = _count_in_logs(cluster.home, "retrying on another replica")
    assert retries >= 1, "no request was in flight on the killed replica"
    FIGURES.update(burst_retries=retries, worker_loss_detected_s=round(detected, 2),
                   replica_back_ready_s=round(ready, 2),
                   worker_kill_load=summary)
    bad = [o for o in outcomes if o.kind not in ("ok", "cut")]
    assert not bad, f"{summary}: {bad[:5]}"
    assert summary.get("ok", 0) > 20
    assert detected <= LOST_TIMEOUT + 2 * HEARTBEAT + 2
    assert moved["worker_address"] != victim_address
    reps = replicas(api, "m")
    assert sorted(r["replica_id"] for r in reps) == [0, 1, 2]
    assert {r["status"] for r in reps} == {"READY"}
    lost = [w for w in api.get("/v1/workers").json() if w["status"] == "LOST"]
    assert [w["address"] for w in lost] == [victim_address]


def test_paused_worker_is_lost_then_rejoins_and_its_duplicate_is_stopped(cluster, api):
    survivors = [w for w in cluster.workers if w.alive()]
    paused = min(survivors, key=lambda w: len(cluster.model_processes(w)))
    pids = {p.pid for p in cluster.model_processes(paused)}
    held = [r for r in replicas(api, "m") if r["pid"] in pids]
    assert len(held) == 1
    address, index = held[0]["worker_address"], held[0]["replica_id"]
    with ChatLoad(cluster.base_url, "m") as load:
        time.sleep(1)
        paused_at = time.monotonic()
        paused.popen.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: _moved(api, index, address)["status"] == "READY", 60,
                       "the paused worker's replica to be READY elsewhere", interval=0.1)
        finally:
            paused.popen.send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_until(lambda: address in [w["address"] for w in alive_workers(cluster.base_url)],
                   20, "the paused worker to rejoin", interval=0.1)
        wait_until(lambda: not cluster.model_processes(paused), 20,
                   "the paused worker to stop its duplicate", interval=0.1)
        converged = time.monotonic() - resumed_at
        time.sleep(1)
    outcomes = load.between(0, time.monotonic())
    FIGURES.update(partition_moved_s=round(resumed_at - paused_at, 2),
                   partition_converged_s=round(converged, 2), partition_load=load.summary(outcomes))
    bad = [o for o in outcomes if o.kind not in ("ok", "cut")]
    assert not bad, f"{load.summary(outcomes)}: {bad[:5]}"
    reps = replicas(api, "m")
    assert sorted(r["replica_id"] for r in reps) == [0, 1, 2]
    assert all(r["worker_address"] != address and r["status"] == "READY" for r in reps)
    assert sum(len(cluster.model_processes(w)) for w in survivors) == 3


def test_restarted_supervisor_is_rejoined_by_every_worker_without_duplicates(cluster, api):
    before = {r["replica_id"]: (r["worker_address"], r["pid"]) for r in replicas(api, "m")}
    survivors = [w for w in cluster.workers if w.alive()]
    with ChatLoad(cluster.base_url, "m") as load:
        time.sleep(2)
        killed_at = time.monotonic()
        cluster.supervisor.popen.send_signal(signal.SIGKILL)
        cluster.supervisor.popen.wait(timeout=10)
        cluster.start_supervisor()
        wait_until(lambda: len(alive_workers(cluster.base_url)) == len(survivors), 60,
                   "the workers to rejoin", interval=0.1)
        rejoined = time.monotonic() - killed_at
        back = wait_until(lambda: [o for o in load.between(killed_at, time.monotonic())
                                   if o.kind == "ok"], 30, "a served request after the restart")
        served_again = back[0].ended - killed_at
        settled = time.monotonic()
        time.sleep(3)
    summary = load.summary(load.between(killed_at, time.monotonic()))
    FIGURES.update(supervisor_rejoin_s=round(rejoined, 2), served_again_s=round(served_again, 2),
                   supervisor_restart_load=summary)
    after_restart = load.between(settled, time.monotonic())
    assert after_restart and all(o.kind == "ok" for o in after_restart), \
        load.summary(after_restart)
    assert all(o.kind in ("ok", "cut", "unreachable", "dropped")
               for o in load.between(killed_at, settled)), summary
    after = {r["replica_id"]: (r["worker_address"], r["pid"]) for r in replicas(api, "m")}
    assert after == before
    assert {r["status"] for r in replicas(api, "m")} == {"READY"}
    running = sum(len(cluster.model_processes(w)) for w in survivors)
    assert running == 3, f"{running} replica processes run for 3 replicas"


def test_stop_cluster_ends_every_process(cluster, api):
    resp = api.post("/v1/clusters/stop")
    assert resp.status_code == 200, resp.text
    assert resp.json()["models"] == 1
    procs = [cluster.supervisor] + [w for w in cluster.workers if w.alive()]
    wait_until(lambda: not any(p.alive() for p in procs), 30, "every process to exit")
