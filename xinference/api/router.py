"""The gateway's own map from model uid to replica actors, and the choice among them.

The supervisor is asked once per model (and again after a failure or when the
entry is older than ``ttl``); each request then goes straight to a replica, the
one with the fewest requests in flight.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional

from ..errors import ModelUnavailableError


@dataclass
class ReplicaHandle:
    replica_uid: str
    address: str
    ref: Any
    outstanding: int = 0


@dataclass
class _Entry:
    model_type: str
    replicas: List[ReplicaHandle]
    fetched_at: float = field(default_factory=time.monotonic)
    status: str = "READY"
    errors: List[str] = field(default_factory=list)


ReplicaFetcher = Callable[[str], Awaitable[Dict[str, Any]]]
RefMaker = Callable[[str, str], Awaitable[Any]]


class ReplicaRouter:
    """Least-outstanding-requests routing over a model's READY replicas."""

    def __init__(self, fetch: ReplicaFetcher, make_ref: RefMaker, ttl: float = 5.0):
        self._fetch = fetch
        self._make_ref = make_ref
        self._ttl = ttl
        self._entries: Dict[str, _Entry] = {}
        self._locks: Dict[str, asyncio.Lock] = {}

    def forget(self, model_uid: str) -> None:
        self._entries.pop(model_uid, None)

    async def _entry(self, model_uid: str) -> _Entry:
        entry = self._entries.get(model_uid)
        if entry is not None and time.monotonic() - entry.fetched_at < self._ttl:
            return entry
        lock = self._locks.setdefault(model_uid, asyncio.Lock())
        async with lock:
            entry = self._entries.get(model_uid)
            if entry is not None and time.monotonic() - entry.fetched_at < self._ttl:
                return entry
            info = await self._fetch(model_uid)
            old = {h.replica_uid: h for h in (entry.replicas if entry else [])}
            handles = []
            for replica in info["replicas"]:
                if replica["status"] != "READY" or not replica.get("address"):
                    continue
                handle = old.get(replica["replica_uid"])
                if handle is None or handle.address != replica["address"]:
                    ref = await self._make_ref(replica["address"], replica["replica_uid"])
                    handle = ReplicaHandle(replica["replica_uid"], replica["address"], ref)
                handles.append(handle)
            errors = [r["error"] for r in info["replicas"] if r.get("error")]
            entry = _Entry(info["model_type"], handles, status=info.get("status", "READY"),
                           errors=errors)
            self._entries[model_uid] = entry
            return entry

    async def replicas(self, model_uid: str) -> List[ReplicaHandle]:
        return list((await self._entry(model_uid)).replicas)

    async def model_type(self, model_uid: str) -> str:
        return (await self._entry(model_uid)).model_type

    async def pick(self, model_uid: str) -> ReplicaHandle:
        """The least busy READY replica; ModelUnavailableError saying why there is none."""
        entry = await self._entry(model_uid)
        if not entry.replicas:
            self.forget(model_uid)
            if entry.status == "LAUNCHING":
                raise ModelUnavailableError(f"Model {model_uid!r} is still loading; retry shortly")
            reason = f": {entry.errors[0]}" if entry.errors else ""
            raise ModelUnavailableError(f"Model {model_uid!r} has no working replica{reason}")
        return min(entry.replicas, key=lambda h: h.outstanding)

    @asynccontextmanager
    async def use(self, model_uid: str):
        """Pick a replica and count the request as outstanding on it while inside."""
        handle = await self.pick(model_uid)
        handle.outstanding += 1
        try:
            yield handle
        except BaseException as exc:
            if type(exc).__name__ in ("ServerClosed", "ConnectionRefusedError", "ActorNotExist"):
                self.forget(model_uid)
            raise
        finally:
            handle.outstanding -= 1

    def outstanding(self, model_uid: str) -> Optional[int]:
        entry = self._entries.get(model_uid)
        return None if entry is None else sum(h.outstanding for h in entry.replicas)
