"""The gateway's own map from model uid to replica actors, and the choice among them.

The supervisor is asked once per model (and again after a failure or when the
entry is older than ``ttl``); each request then goes straight to a replica, the
one with the fewest requests in flight among the READY ones that are neither
draining (being removed) nor known dead (a call found its process gone). A dead
mark lasts until the supervisor lists that replica at another address, or for
``dead_ttl`` seconds.

Handles and dead marks are kept per model uid, so refreshing or pruning one
model never touches another's (model uids may share a prefix: ``m``, ``m-2``).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Collection, Dict, List, Optional, Set, Tuple

from ..errors import ModelUnavailableError, XinferenceError

# Errors that mean "the replica's process is gone or unreachable", not "the request is bad".
GONE_ERRORS = ("ServerClosed", "ActorNotExist", "ConnectionRefusedError", "ConnectionResetError",
               "BrokenPipeError", "ConnectionAbortedError")


def replica_gone(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the replica's process cannot be reached."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 8:
        if isinstance(current, XinferenceError):
            return False
        if isinstance(current, ConnectionError) or type(current).__name__ in GONE_ERRORS:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


@dataclass
class ReplicaHandle:
    """A replica the gateway may call: its actor ref and the requests in flight on it."""

    replica_uid: str
    address: str
    ref: Any
    outstanding: int = 0
    data_plane: Any = None  # its DataPlaneClient, once asked for (None: calls go by xoscar)
    data_plane_checked: bool = False

    @property
    def key(self) -> Tuple[str, str]:
        return self.replica_uid, self.address


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
    """Least-outstanding-requests routing over a model's READY, live, non-draining replicas."""

    def __init__(self, fetch: ReplicaFetcher, make_ref: RefMaker, ttl: float = 5.0,
                 dead_ttl: float = 30.0):
        self._fetch = fetch
        self._make_ref = make_ref
        self._ttl = ttl
        self._dead_ttl = dead_ttl
        self._entries: Dict[str, _Entry] = {}
        self._locks: Dict[str, asyncio.Lock] = {}
        # Both per model uid, then by (replica_uid, address): when a call found the replica
        # dead, and the replica's cached handle.
        self._dead: Dict[str, Dict[Tuple[str, str], float]] = {}
        self._handles: Dict[str, Dict[Tuple[str, str], ReplicaHandle]] = {}
        self._draining: Set[str] = set()

    def forget(self, model_uid: str) -> None:
        self._entries.pop(model_uid, None)

    def _usable(self, model_uid: str, replica: Dict[str, Any]) -> bool:
        if replica.get("status") != "READY" or not replica.get("address"):
            return False
        if replica["replica_uid"] in self._draining:
            return False
        since = self._dead.get(model_uid, {}).get((replica["replica_uid"], replica["address"]))
        return since is None or time.monotonic() - since > self._dead_ttl

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
            handles = await self._handles_for(model_uid, info["replicas"])
            self._prune(model_uid, info["replicas"])
            errors = [r["error"] for r in info["replicas"]
                      if r.get("error") and r.get("status") != "READY"]
            entry = _Entry(info["model_type"], handles, status=info.get("status", "READY"),
                           errors=errors)
            self._entries[model_uid] = entry
            return entry

    async def _handles_for(self, model_uid: str,
                           listed: List[Dict[str, Any]]) -> List[ReplicaHandle]:
        """Handles of the usable replicas in ``listed``, reusing this model's cached ones."""
        cached = self._handles.setdefault(model_uid, {})
        handles = []
        for replica in listed:
            if not self._usable(model_uid, replica):
                continue
            key = (replica["replica_uid"], replica["address"])
            handle = cached.get(key)
            if handle is None:
                ref = await self._make_ref(replica["address"], replica["replica_uid"])
                handle = cached[key] = ReplicaHandle(*key, ref)
            handles.append(handle)
        return handles

    def _prune(self, model_uid: str, listed: List[Dict[str, Any]]) -> None:
        """Drop handles and dead marks of this model's replicas the supervisor no longer lists."""
        keys = {(r["replica_uid"], r.get("address")) for r in listed}
        cached = self._handles.get(model_uid, {})
        for key in [k for k in cached if k not in keys]:
            if cached[key].outstanding == 0:
                handle = cached.pop(key)
                if handle.data_plane is not None:
                    handle.data_plane.close()
        dead = self._dead.get(model_uid, {})
        for key in [k for k in dead if k not in keys]:
            del dead[key]
        if not cached:
            self._handles.pop(model_uid, None)
        if not dead:
            self._dead.pop(model_uid, None)

    async def replicas(self, model_uid: str) -> List[ReplicaHandle]:
        return list((await self._entry(model_uid)).replicas)

    async def model_type(self, model_uid: str) -> str:
        return (await self._entry(model_uid)).model_type

    async def pick(self, model_uid: str,
                   exclude: Collection[Tuple[str, str]] = ()) -> ReplicaHandle:
        """The least busy usable replica not in ``exclude``; ModelUnavailableError says why none."""
        entry = await self._entry(model_uid)
        candidates = self._candidates(model_uid, entry, exclude)
        if not candidates and entry.replicas:
            self.forget(model_uid)
            entry = await self._entry(model_uid)
            candidates = self._candidates(model_uid, entry, exclude)
        if not candidates:
            self.forget(model_uid)
            if entry.status == "LAUNCHING":
                raise ModelUnavailableError(f"Model {model_uid!r} is still loading; retry shortly")
            if entry.errors:
                reason = f": {entry.errors[0]}"
            elif exclude or entry.status == "READY":
                reason = (": its replicas' processes cannot be reached (a worker may be down; "
                          "the supervisor re-launches lost replicas)")
            else:
                reason = ""
            raise ModelUnavailableError(f"Model {model_uid!r} has no working replica{reason}")
        return min(candidates, key=lambda h: h.outstanding)

    def _candidates(self, model_uid: str, entry: _Entry,
                    exclude: Collection[Tuple[str, str]]) -> List[ReplicaHandle]:
        """The entry's handles not excluded, not draining and not marked dead."""
        dead = self._dead.get(model_uid, {})
        return [h for h in entry.replicas if h.key not in exclude and h.key not in dead
                and h.replica_uid not in self._draining]

    def mark_dead(self, model_uid: str, handle: ReplicaHandle) -> None:
        """A call found the replica's process gone: route around it from now on."""
        self._dead.setdefault(model_uid, {})[handle.key] = time.monotonic()
        self.forget(model_uid)

    @asynccontextmanager
    async def use(self, model_uid: str, exclude: Collection[Tuple[str, str]] = ()):
        """Pick a replica and count the request as outstanding on it while inside."""
        handle = await self.pick(model_uid, exclude)
        handle.outstanding += 1
        try:
            yield handle
        except BaseException as exc:
            if replica_gone(exc):
                self.mark_dead(model_uid, handle)
            raise
        finally:
            handle.outstanding -= 1

    async def drain(self, model_uid: str, replica_uid: str, timeout: float) -> int:
        """Send nothing new to ``replica_uid``; wait (up to ``timeout``) for its requests to end.

        Returns how many requests were still running at the timeout (0 when drained).
        """
        self._draining.add(replica_uid)
        self.forget(model_uid)
        deadline = time.monotonic() + timeout
        while True:
            busy = sum(h.outstanding for h in self._handles.get(model_uid, {}).values()
                       if h.replica_uid == replica_uid)
            if busy == 0 or time.monotonic() >= deadline:
                return busy
            await asyncio.sleep(0.05)

    def drained(self, replica_uid: str) -> None:
        """The replica is gone for good: forget that it was draining."""
        self._draining.discard(replica_uid)

    def outstanding(self, model_uid: str) -> Optional[int]:
        entry = self._entries.get(model_uid)
        return None if entry is None else sum(h.outstanding for h in entry.replicas)
