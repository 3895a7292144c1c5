"""The supervisor's table of workers: registration, heartbeats, and loss after a timeout.

Pure bookkeeping with an injectable clock; :mod:`cluster_state` re-exports it.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from .resources import WorkerResources

Clock = Callable[[], float]


class WorkerStatus(str, enum.Enum):
    ALIVE = "ALIVE"
    LOST = "LOST"


@dataclass
class WorkerEntry:
    """A registered worker; times are the table's clock (monotonic seconds by default)."""

    address: str
    resources: Optional[WorkerResources]
    registered_at: float
    last_heartbeat: float
    status: WorkerStatus = WorkerStatus.ALIVE
    lost_at: Optional[float] = None

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), status=self.status.value)


class WorkerTable:
    """Workers by address, marked LOST after ``lost_timeout`` seconds without a heartbeat.

    ``lost_timeout`` defaults to ``XINFERENCE_WORKER_LOST_TIMEOUT``; ``clock`` is
    injectable for tests. A worker is marked lost by :meth:`check`, so it is lost
    at most ``lost_timeout`` plus one check period after its last heartbeat.
    """

    def __init__(self, lost_timeout: Optional[float] = None, clock: Clock = time.monotonic):
        if lost_timeout is None:
            from ..settings import get_settings

            lost_timeout = get_settings().worker_lost_timeout
        if lost_timeout <= 0:
            raise ValueError(f"worker lost timeout must be positive, got {lost_timeout}")
        self.lost_timeout = float(lost_timeout)
        self._clock = clock
        self._entries: Dict[str, WorkerEntry] = {}

    def register(self, address: str, resources: Optional[WorkerResources] = None) -> bool:
        """Add or revive ``address`` (idempotent); True when the worker was known before."""
        now = self._clock()
        entry = self._entries.get(address)
        if entry is None:
            self._entries[address] = WorkerEntry(address, resources, now, now)
            return False
        entry.status, entry.lost_at, entry.last_heartbeat = WorkerStatus.ALIVE, None, now
        entry.resources = resources or entry.resources
        return True

    def heartbeat(self, address: str, resources: Optional[WorkerResources] = None) -> bool:
        """Record a heartbeat; False means "unknown or lost: register again with your replicas"."""
        entry = self._entries.get(address)
        if entry is None or entry.status is not WorkerStatus.ALIVE:
            return False
        entry.last_heartbeat = self._clock()
        entry.resources = resources or entry.resources
        return True

    def check(self) -> List[str]:
        """Mark workers silent for longer than the timeout as LOST; return those newly lost."""
        now = self._clock()
        lost = []
        for address in sorted(self._entries):
            entry = self._entries[address]
            silent = now - entry.last_heartbeat
            if entry.status is WorkerStatus.ALIVE and silent > self.lost_timeout:
                entry.status, entry.lost_at = WorkerStatus.LOST, now
                lost.append(address)
        return lost

    def remove(self, address: str) -> None:
        self._entries.pop(address, None)

    def mark_lost(self, address: str) -> bool:
        """Mark ``address`` LOST now (it said goodbye); True if it was ALIVE."""
        entry = self._entries.get(address)
        if entry is None or entry.status is not WorkerStatus.ALIVE:
            return False
        entry.status, entry.lost_at = WorkerStatus.LOST, self._clock()
        return True

    def get(self, address: str) -> Optional[WorkerEntry]:
        return self._entries.get(address)

    def entries(self) -> List[WorkerEntry]:
        return [self._entries[a] for a in sorted(self._entries)]

    def is_alive(self, address: str) -> bool:
        entry = self._entries.get(address)
        return entry is not None and entry.status is WorkerStatus.ALIVE

    def alive_resources(self) -> List[WorkerResources]:
        """Resources of the ALIVE workers that have reported them, by address."""
        return [e.resources for e in self.entries()
                if e.status is WorkerStatus.ALIVE and e.resources]
