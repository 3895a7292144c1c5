"""The gateway's connection to the cluster: supervisor reference and replica router."""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict, List, Optional

import xoscar as xo

from ..settings import Settings
from .router import ReplicaRouter

SUPERVISOR_UID = "supervisor"


class Gateway:
    """Holds what request handlers need: the supervisor, the router and the settings."""

    def __init__(self, supervisor_address: str, settings: Settings):
        self.supervisor_address = supervisor_address
        self.settings = settings
        self._supervisor = None
        self.router = ReplicaRouter(self._fetch_replicas, self._make_ref)

    async def supervisor(self):
        if self._supervisor is None:
            self._supervisor = await xo.actor_ref(address=self.supervisor_address,
                                                  uid=SUPERVISOR_UID)
        return self._supervisor

    async def _fetch_replicas(self, model_uid: str) -> Dict[str, Any]:
        return await (await self.supervisor()).get_replicas(model_uid)

    @staticmethod
    async def _make_ref(address: str, uid: str):
        return await xo.actor_ref(address=address, uid=uid)

    def cap_max_tokens(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """Apply XINFERENCE_MAX_TOKENS to a generation request."""
        cap = self.settings.max_tokens
        if cap is not None:
            for key in ("max_tokens", "max_completion_tokens"):
                if request.get(key) is not None:
                    request[key] = min(request[key], cap)
            if request.get("max_tokens") is None and request.get("max_completion_tokens") is None:
                request["max_tokens"] = cap
        return request

    async def call(self, model_uid: str, method: str, request: Dict[str, Any]) -> Dict[str, Any]:
        """A unary call on the least busy replica of ``model_uid``."""
        async with self.router.use(model_uid) as handle:
            return await getattr(handle.ref, method)(request)

    async def stream(self, model_uid: str, method: str,
                     request: Dict[str, Any]) -> AsyncIterator[List[Any]]:
        """Chunk lists from a streaming method; the replica counts as busy until the end."""
        async with self.router.use(model_uid) as handle:
            iterator = await getattr(handle.ref, method)(request)
            try:
                async for batch in iterator:
                    yield batch
            finally:
                await _destroy_quietly(iterator)

    async def abort(self, model_uid: str, request_id: str) -> bool:
        results = [await h.ref.abort(request_id) for h in await self.router.replicas(model_uid)]
        return any(results)


async def _destroy_quietly(iterator: Optional[Any]) -> None:
    if iterator is None:
        return
    try:
        await xo.wait_for(iterator.destroy(), 5)
    except Exception:  # noqa: BLE001 - the generator is gone already
        pass
