"""A worker's link to its supervisor: register, heartbeat, and register again when needed.

:class:`HeartbeatLoop` is plain asyncio with injected callables, so the unit
tests drive it with a fake supervisor. It registers the worker with its
resources and the replicas it runs, then sends a heartbeat every ``interval``
seconds. When a heartbeat answers False (the supervisor restarted, or marked
this worker lost) or the supervisor cannot be reached, it keeps trying and
registers again, with its replicas, as soon as the supervisor answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional

from .messages import ReplicaReport

logger = logging.getLogger(__name__)


class HeartbeatLoop:
    """Keeps one worker registered with its supervisor.

    ``connect()`` returns the supervisor (an actor ref or a fake), ``reset()``
    drops a cached one (the next ``connect`` looks its address up again),
    ``resources()`` gives the worker's resource dict, ``reports()`` the replicas
    it runs, and ``stop_replicas(uids)`` stops the duplicates the supervisor names.
    """

    def __init__(self, address: str, connect: Callable[[], Awaitable[Any]],
                 reports: Callable[[], List[ReplicaReport]],
                 resources: Callable[[], Awaitable[Optional[Dict[str, Any]]]],
                 stop_replicas: Callable[[List[str]], Awaitable[None]], interval: float,
                 reset: Optional[Callable[[], Awaitable[None]]] = None,
                 timeout: Optional[float] = None):
        self.address = address
        self.interval = interval
        self.timeout = timeout or max(2.0, 3 * interval)
        self.registered = False
        self.registrations = 0
        self.heartbeats = 0
        self.failures = 0
        self._connect = connect
        self._reports = reports
        self._resources = resources
        self._stop_replicas = stop_replicas
        self._reset = reset

    async def step(self) -> bool:
        """One heartbeat (or registration); True when the supervisor acknowledged it."""
        try:
            supervisor = await self._connect()
            resources = await self._resources()
            if not self.registered:
                await self._register(supervisor, resources)
                return True
            light = [dataclasses.replace(r, spec=None) for r in self._reports()]
            known = await asyncio.wait_for(
                supervisor.heartbeat(self.address, resources, light), self.timeout)
            if not known:
                logger.warning("The supervisor does not know this worker (%s); registering "
                               "again with its replicas", self.address)
                self.registered = False
                await self._register(supervisor, resources)
                return True
            self.heartbeats += 1
            self.failures = 0
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep trying until the supervisor answers
            self._failed(exc)
            if self._reset is not None:
                await self._reset()
            return False

    async def _register(self, supervisor: Any, resources: Optional[Dict[str, Any]]) -> None:
        reports = self._reports()
        answer = await asyncio.wait_for(
            supervisor.register_worker(self.address, resources, reports), self.timeout)
        self.registered = True
        self.registrations += 1
        self.failures = 0
        logger.info("Worker %s %s with the supervisor (%d replica(s))", self.address,
                    "registered" if self.registrations == 1 else "re-registered", len(reports))
        interval = (answer or {}).get("heartbeat_interval")
        if interval:
            self.interval = float(interval)
        stop = list((answer or {}).get("terminate") or [])
        if stop:
            logger.warning("The supervisor runs %s elsewhere: stopping them here", ", ".join(stop))
            await self._stop_replicas(stop)

    def _failed(self, exc: BaseException) -> None:
        self.registered = False
        self.failures += 1
        if self.failures == 1 or self.failures % 30 == 0:
            logger.warning("Supervisor unreachable from worker %s (%d attempt(s)): %s: %s",
                           self.address, self.failures, type(exc).__name__, exc)

    async def run(self) -> None:
        """Step forever, ``interval`` seconds apart (cancel the task to stop)."""
        while True:
            await self.step()
            await asyncio.sleep(self.interval)
