"""A worker's link to its supervisor: register, heartbeat, re-register after a restart or outage."""

import asyncio

from xinference.core.heartbeat import HeartbeatLoop
from xinference.core.messages import ReplicaReport


class FakeSupervisor:
    def __init__(self):
        self.known = set()
        self.registrations = []
        self.heartbeats = 0
        self.down = False
        self.terminate = []

    async def register_worker(self, address, resources, replicas):
        if self.down:
            raise ConnectionRefusedError("Connect call failed")
        self.known.add(address)
        self.registrations.append([r.replica_uid for r in replicas])
        stop, self.terminate = self.terminate, []
        return {"terminate": stop, "heartbeat_interval": 0.25}

    async def heartbeat(self, address, resources, replicas):
        if self.down:
            raise ConnectionRefusedError("Connect call failed")
        self.heartbeats += 1
        assert all(r.spec is None for r in replicas)  # heartbeats stay small
        self.beat_replicas = [r.replica_uid for r in replicas]
        return address in self.known


def make_loop(supervisor, replicas, stopped, resets):
    async def connect():
        return supervisor

    async def resources():
        return {"address": "w:1", "cpu_count": 1, "memory_total": 1, "memory_available": 1}

    async def stop(uids):
        stopped.extend(uids)

    async def reset():
        resets.append(1)

    def reports():
        return [ReplicaReport(uid, "m", i) for i, uid in enumerate(replicas)]
    return HeartbeatLoop("w:1", connect, reports, resources, stop, interval=1.0, reset=reset)


def test_registers_then_heartbeats_and_takes_the_supervisors_interval():
    supervisor, stopped, resets = FakeSupervisor(), [], []
    loop = make_loop(supervisor, ["m-0"], stopped, resets)

    async def run():
        assert await loop.step() is True
        assert await loop.step() is True
        assert await loop.step() is True
    asyncio.run(run())
    assert supervisor.registrations == [["m-0"]] and supervisor.heartbeats == 2
    assert supervisor.beat_replicas == ["m-0"]
    assert loop.interval == 0.25 and loop.registered and resets == []


def test_unknown_worker_registers_again_with_its_replicas_at_once():
    supervisor, stopped, resets = FakeSupervisor(), [], []
    loop = make_loop(supervisor, ["m-0", "m-1"], stopped, resets)

    async def run():
        await loop.step()
        supervisor.known.clear()  # a restarted supervisor knows no worker
        supervisor.terminate = ["m-1"]  # ... and runs m-1 elsewhere already
        assert await loop.step() is True
    asyncio.run(run())
    assert supervisor.registrations == [["m-0", "m-1"], ["m-0", "m-1"]]
    assert stopped == ["m-1"] and loop.registrations == 2


def test_unreachable_supervisor_is_retried_and_rejoined_when_back():
    supervisor, stopped, resets = FakeSupervisor(), [], []
    loop = make_loop(supervisor, ["m-0"], stopped, resets)

    async def run():
        await loop.step()
        supervisor.down = True
        supervisor.known.clear()
        results = [await loop.step() for _ in range(3)]
        assert results == [False, False, False] and not loop.registered
        supervisor.down = False
        assert await loop.step() is True
    asyncio.run(run())
    assert len(resets) == 3 and loop.failures == 0
    assert supervisor.registrations == [["m-0"], ["m-0"]]


def test_run_keeps_stepping_until_cancelled():
    supervisor, stopped, resets = FakeSupervisor(), [], []
    loop = make_loop(supervisor, [], stopped, resets)

    async def run():
        task = asyncio.ensure_future(loop.run())
        await asyncio.sleep(0.6)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(run())
    assert supervisor.heartbeats >= 1 and len(supervisor.registrations) == 1
