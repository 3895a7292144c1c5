"""The gateway's connection to the cluster: supervisor reference and replica router.

A request whose replica turns out to be gone before it produced anything (the
call, or the first pull of a stream, fails with a connection error) is sent
again to another replica, so a dead worker costs the client some latency, not
an error. Once a stream has sent its first chunk it is never replayed.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Dict, Optional, Set, Tuple

import xoscar as xo

from ..core.data_plane import DataPlaneClient
from ..model.operations import InferenceCall
from ..settings import Settings
from .router import ReplicaHandle, ReplicaRouter, replica_gone

logger = logging.getLogger(__name__)

SUPERVISOR_UID = "supervisor"
MAX_ATTEMPTS = 4


class Gateway:
    """Holds what request handlers need: the supervisor, the router and the settings."""

    def __init__(self, supervisor_address: str, settings: Settings, supervisor: Any = None,
                 make_ref: Optional[Any] = None):
        """``supervisor`` and ``make_ref`` (address, uid -> replica ref) replace the xoscar
        references, for a gateway over an in-process cluster (the API test tier)."""
        self.supervisor_address = supervisor_address
        self.settings = settings
        self._supervisor = supervisor
        self.router = ReplicaRouter(self._fetch_replicas, make_ref or self._make_ref)

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
        """Apply XINFERENCE_MAX_TOKENS to a generation request (any dialect's token keys)."""
        cap = self.settings.max_tokens
        if cap is None:
            return request
        keys = [k for k in ("max_tokens", "max_completion_tokens", "max_output_tokens")
                if request.get(k) is not None]
        for key in keys:
            request[key] = min(request[key], cap)
        if not keys:
            request["max_tokens"] = cap
        return request

    def _retrying(self, model_uid: str, handle: ReplicaHandle, exc: BaseException,
                  tried: Set[Tuple[str, str]], attempt: int) -> bool:
        """Record a failed attempt; True when the request should go to another replica."""
        if not replica_gone(exc) or attempt + 1 >= MAX_ATTEMPTS:
            return False
        tried.add(handle.key)
        self.router.mark_dead(model_uid, handle)
        logger.warning("Replica %s at %s is unreachable (%s); retrying on another replica",
                       handle.replica_uid, handle.address, type(exc).__name__)
        return True

    async def call(self, model_uid: str, call: InferenceCall) -> bytes:
        """``call`` on the least busy replica of ``model_uid``, retried if that one is gone;
        the answer's JSON bytes."""
        tried: Set[Tuple[str, str]] = set()
        for attempt in range(MAX_ATTEMPTS):
            handle = await self.router.pick(model_uid, tried)
            handle.outstanding += 1
            try:
                return await self._unary(handle, call)
            except Exception as exc:  # noqa: BLE001 - re-raised unless the replica is gone
                if not self._retrying(model_uid, handle, exc, tried, attempt):
                    raise
            finally:
                handle.outstanding -= 1
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _unary(handle: ReplicaHandle, call: InferenceCall) -> bytes:
        """One unary call: on the replica's data plane when it has one, else through xoscar."""
        if not handle.data_plane_checked:
            handle.data_plane_checked = True
            try:
                where = await handle.ref.data_plane_address()
            except Exception:  # noqa: BLE001 - no data plane: the xoscar call below says why
                where = None
            if where:
                handle.data_plane = DataPlaneClient(handle.address.rsplit(":", 1)[0],
                                                    where["port"], where.get("unix_path"))
        if handle.data_plane is not None:
            return await handle.data_plane.call("serve", call)
        return await handle.ref.serve(call)

    async def _open_stream(self, model_uid: str, call: InferenceCall):
        """(handle, iterator, first batch or None): the first pull is where a dead replica shows."""
        tried: Set[Tuple[str, str]] = set()
        for attempt in range(MAX_ATTEMPTS):
            handle = await self.router.pick(model_uid, tried)
            handle.outstanding += 1
            iterator = None
            try:
                iterator = await handle.ref.serve_stream(call)
                try:
                    first = await iterator.__anext__()
                except StopAsyncIteration:
                    first = None
                return handle, iterator, first
            except BaseException as exc:
                handle.outstanding -= 1
                await _destroy_quietly(iterator)
                if not isinstance(exc, Exception) or not self._retrying(
                        model_uid, handle, exc, tried, attempt):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, model_uid: str, call: InferenceCall) -> AsyncIterator[bytes]:
        """SSE frames of a streamed ``call``; the replica counts as busy until the end."""
        handle, iterator, first = await self._open_stream(model_uid, call)
        try:
            if first is None:
                return
            yield first
            async for batch in iterator:
                yield batch
        except BaseException as exc:
            if replica_gone(exc):
                self.router.mark_dead(model_uid, handle)
            raise
        finally:
            handle.outstanding -= 1
            await _destroy_quietly(iterator)

    async def drain(self, model_uid: str, replica_uid: str, timeout: float) -> int:
        """Stop routing to a replica and wait for its requests in flight (see the router)."""
        return await self.router.drain(model_uid, replica_uid, timeout)

    async def abort(self, model_uid: str, request_id: str) -> bool:
        results = []
        for handle in await self.router.replicas(model_uid):
            try:
                results.append(await handle.ref.abort(request_id))
            except Exception as exc:  # noqa: BLE001 - a dead replica runs nothing to abort
                if not replica_gone(exc):
                    raise
        return any(results)


async def _destroy_quietly(iterator: Optional[Any]) -> None:
    if iterator is None:
        return
    try:
        await xo.wait_for(iterator.destroy(), 5)
    except Exception:  # noqa: BLE001 - the generator is gone already
        pass
