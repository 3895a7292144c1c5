"""ModelActor: one replica of a model, alone in its own sub-process.

Thin by design: it builds the engine named in its :class:`ReplicaSpec`, loads
it off the event loop, and hands calls to a :class:`ReplicaService`. The gateway
sends typed :class:`~xinference.model.operations.InferenceCall` messages to
:meth:`ModelActor.serve` (whole answers, as the JSON bytes the client receives,
mostly over the data plane) and :meth:`ModelActor.serve_stream` (SSE frames, as
lists of the events ready at each pull, token by token when the consumer keeps
up), so nothing is decoded and encoded again on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from typing import Any, AsyncIterator, Dict, Optional

import xoscar as xo

from ..errors import ModelLaunchError, XinferenceError
from ..model.engines.registry import find_engine, load_engine_class
from ..model.operations import InferenceCall
from . import data_plane
from .messages import ReplicaSpec
from .replica_service import ReplicaService

logger = logging.getLogger(__name__)


class ModelActor(xo.StatelessActor):
    """Serves one replica; concurrent calls run concurrently (stateless actor)."""

    def __init__(self, spec: ReplicaSpec, log_file: Optional[str] = None,
                 log_level: str = "INFO"):
        super().__init__()
        self._spec = spec
        self._engine = None
        self._service: Optional[ReplicaService] = None
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
            self._service = None

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
        self._service = ReplicaService(engine)
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

    def _require(self) -> ReplicaService:
        if self._service is None:
            raise ModelLaunchError("the model is not loaded yet")
        return self._service

    async def pid(self) -> int:
        return os.getpid()

    async def describe(self) -> Dict[str, Any]:
        return {"pid": os.getpid(), **(self._engine.describe() if self._engine else {})}

    async def serve(self, call: InferenceCall) -> bytes:
        """The whole answer to ``call`` as JSON bytes (the data plane's one method)."""
        return await self._require().answer(call)

    @xo.generator
    async def serve_stream(self, call: InferenceCall) -> AsyncIterator[bytes]:
        """The streamed answer to ``call``: SSE frames, one item per batch of ready events."""
        async for frames in self._require().stream(call):
            yield frames

    async def abort(self, request_id: str) -> bool:
        """Stop a running request; False when nothing by that id runs (any model type)."""
        if self._service is None:
            return False
        return await self._service.abort(request_id)
