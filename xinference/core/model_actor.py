"""ModelActor: one replica of a model, alone in its own sub-process.

Thin by design: it builds the engine named in its :class:`ReplicaSpec`, loads
it off the event loop, and forwards requests to it. Streams go out as lists of
the chunks ready at each pull (see :func:`ready_batches`), token by token when
the consumer keeps up.

The gateway calls the ``*_json`` twins: they answer with the JSON bytes the
client receives (a whole response, or one JSON line per chunk), encoded here
once, so nothing is decoded and encoded again on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from typing import Any, AsyncIterator, Dict, List, Optional

import xoscar as xo

from ..errors import InvalidRequestError, ModelLaunchError, XinferenceError
from ..model.engines.registry import find_engine, load_engine_class
from . import data_plane
from .messages import ReplicaSpec
from .streaming import json_bytes, json_lines, ready_batches

logger = logging.getLogger(__name__)

# Answers bigger than this many items (embeddings, choices) are encoded off the event loop.
_INLINE_ENCODE_ITEMS = 64


async def _encoded(result: Any) -> bytes:
    items = ()
    if isinstance(result, dict):
        items = result.get("data") or result.get("results") or result.get("choices") or ()
    if len(items) > _INLINE_ENCODE_ITEMS:
        return await asyncio.to_thread(json_bytes, result)
    return json_bytes(result)


class ModelActor(xo.StatelessActor):
    """Serves one replica; concurrent calls run concurrently (stateless actor)."""

    def __init__(self, spec: ReplicaSpec, log_file: Optional[str] = None,
                 log_level: str = "INFO"):
        super().__init__()
        self._spec = spec
        self._engine = None
        self._log_file = log_file
        self._log_level = log_level
        self._data_plane: Optional[data_plane.DataPlaneServer] = None

    async def __post_create__(self):
        if self._log_file:
            from ..logs import configure_process_logging

            configure_process_logging(self._log_file, self._log_level)

    async def __pre_destroy__(self):
        if self._data_plane is not None:
            self._data_plane.close()
            self._data_plane = None
        if self._engine is not None:
            await asyncio.to_thread(self._engine.close)
            self._engine = None

    async def load(self) -> Dict[str, Any]:
        """Build and load the engine; a failure becomes ModelLaunchError naming the cause."""
        cfg = self._spec.engine_config
        entry = find_engine(cfg.model_type, cfg.engine)
        engine_cls = load_engine_class(entry)
        engine = engine_cls(cfg)
        try:
            await asyncio.to_thread(engine.load)
        except XinferenceError:
            raise
        except Exception as exc:  # noqa: BLE001 - any engine failure is reported with its cause
            logger.exception("Loading %s failed", cfg.model_uid)
            raise ModelLaunchError(
                f"{cfg.engine} failed to load {cfg.model_name}: {type(exc).__name__}: {exc}"
            ) from None
        self._engine = engine
        await self._open_data_plane()
        logger.info("Replica %s of %s ready on %s (pid %d)", self._spec.replica_uid,
                    cfg.model_uid, cfg.engine, os.getpid())
        return {"pid": os.getpid(), **engine.describe()}

    async def _open_data_plane(self) -> None:
        """Listen for the gateway's unary calls (see :mod:`.data_plane`); xoscar still works."""
        host = self.address.rsplit(":", 1)[0]
        folder = os.environ.get("XOSCAR_DIR") or tempfile.gettempdir()
        try:
            self._data_plane = await data_plane.serve(
                lambda method, request: getattr(self, method)(request), host,
                unix_path=os.path.join(folder, f"xinf-data-{os.getpid()}.sock"))
        except OSError as exc:
            logger.warning("No data plane for %s (%s); unary calls go through xoscar",
                           self._spec.replica_uid, exc)

    async def data_plane_address(self) -> Optional[Dict[str, Any]]:
        """``{"port", "unix_path"}`` of this replica's data plane (on its pool's host), or None."""
        return None if self._data_plane is None else self._data_plane.address()

    def _require(self, method: str):
        if self._engine is None:
            raise ModelLaunchError("the model is not loaded yet")
        if not hasattr(self._engine, method):
            cfg = self._spec.engine_config
            raise InvalidRequestError(
                f"Model {cfg.model_uid!r} is of type {cfg.model_type} and does not support "
                f"{method.replace('_stream', '')}; launch a model of the right type for this endpoint",
                param="model")
        return getattr(self._engine, method)

    async def pid(self) -> int:
        return os.getpid()

    async def describe(self) -> Dict[str, Any]:
        return {"pid": os.getpid(), **(self._engine.describe() if self._engine else {})}

    async def chat(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return await self._require("chat")(request)

    async def complete(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return await self._require("complete")(request)

    @xo.generator
    async def chat_stream(self, request: Dict[str, Any]) -> AsyncIterator[List[Dict[str, Any]]]:
        async for batch in ready_batches(self._require("chat_stream")(request)):
            yield batch

    @xo.generator
    async def complete_stream(self, request: Dict[str, Any]) -> AsyncIterator[List[Dict[str, Any]]]:
        async for batch in ready_batches(self._require("complete_stream")(request)):
            yield batch

    async def embed(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return await self._require("embed")(request)

    async def rerank(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return await self._require("rerank")(request)

    async def chat_json(self, request: Dict[str, Any]) -> bytes:
        return await _encoded(await self.chat(request))

    async def complete_json(self, request: Dict[str, Any]) -> bytes:
        return await _encoded(await self.complete(request))

    async def embed_json(self, request: Dict[str, Any]) -> bytes:
        return await _encoded(await self.embed(request))

    async def rerank_json(self, request: Dict[str, Any]) -> bytes:
        return await _encoded(await self.rerank(request))

    @xo.generator
    async def chat_stream_json(self, request: Dict[str, Any]) -> AsyncIterator[bytes]:
        """Like :meth:`chat_stream`, each list of chunks as JSON lines."""
        async for batch in ready_batches(self._require("chat_stream")(request)):
            yield json_lines(batch)

    @xo.generator
    async def complete_stream_json(self, request: Dict[str, Any]) -> AsyncIterator[bytes]:
        """Like :meth:`complete_stream`, each list of chunks as JSON lines."""
        async for batch in ready_batches(self._require("complete_stream")(request)):
            yield json_lines(batch)

    async def abort(self, request_id: str) -> bool:
        if self._engine is None:
            return False
        return await self._engine.abort(request_id)
