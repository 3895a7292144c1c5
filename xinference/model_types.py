"""The one registry of model types: each type is a plug-in found here.

A type is five things, each named as ``"module:attribute"`` and imported only by
the layer that needs it (this module imports nothing of the package but the
standard-library :mod:`xinference.model.operations`):

- ``family_check``: validates the type's own fields of a family definition
  (``model/``; run on every custom family, registered or read back from disk);
- ``engine_interface``: the abstract engine class its engines implement (``model/``);
- ``serving``: a module with ``answer(engine, call)`` and ``stream(engine, call)``,
  run in the replica's process to turn the engine's results into wire answers;
- ``routes``: the FastAPI router of its REST paths (``api/``);
- ``client_handle``: the SDK class ``Client.get_model`` returns (``client/``).

``folder`` names the type's folder of built-in families (``model/families/<folder>/``)
and of persisted registrations; ``operations`` is every operation its engines may serve.

Adding a type means a folder of its own plus four files outside it: one entry here,
its routes module in ``api/``, its handle in ``client/handles.py`` and its engines'
lines in ``model/engines/registry.py`` (see docs/architecture.md, "Adding a model type").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional, Tuple

from .model.operations import Operation


@dataclass(frozen=True)
class ModelType:
    """One model type and where its parts live."""

    name: str
    folder: str
    operations: FrozenSet[Operation]
    engine_interface: str
    serving: str
    routes: str
    client_handle: str
    family_check: str
    # Optional "module:function" turning the type's own definition shape into the common
    # one (``model_specs``) before any check, e.g. Xinference's flat image definitions.
    family_shape: Optional[str] = None

    def load(self, part: str) -> Any:
        """Import the part named by attribute ``part`` (e.g. ``"routes"``)."""
        return load_target(getattr(self, part))


def load_target(target: str) -> Any:
    """``"module:attribute"`` imported (``"module"`` alone: the module)."""
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


_LLM_OPS = frozenset({Operation.CHAT, Operation.COMPLETE, Operation.COUNT_TOKENS,
                      Operation.ABORT})

MODEL_TYPES: Tuple[ModelType, ...] = (
    ModelType("LLM", "llm", _LLM_OPS,
              "xinference.model.engines.base:LLMEngine",
              "xinference.model.llm.serving",
              "xinference.api.routes_openai:router",
              "xinference.client.handles:ChatModelHandle",
              "xinference.model.family_checks:check_llm"),
    ModelType("embedding", "embedding", frozenset({Operation.EMBED, Operation.ABORT}),
              "xinference.model.engines.base:EmbeddingEngine",
              "xinference.model.encoder_serving",
              "xinference.api.routes_openai:router",
              "xinference.client.handles:EmbeddingModelHandle",
              "xinference.model.family_checks:check_embedding"),
    ModelType("rerank", "rerank", frozenset({Operation.RERANK, Operation.ABORT}),
              "xinference.model.engines.base:RerankEngine",
              "xinference.model.encoder_serving",
              "xinference.api.routes_openai:router",
              "xinference.client.handles:RerankModelHandle",
              "xinference.model.family_checks:check_rerank"),
    ModelType("image", "image",
              frozenset({Operation.TEXT_TO_IMAGE, Operation.IMAGE_TO_IMAGE, Operation.INPAINT,
                         Operation.ABORT}),
              "xinference.model.image.engine:ImageEngine",
              "xinference.model.image.serving",
              "xinference.api.routes_image:router",
              "xinference.client.handles:ImageModelHandle",
              "xinference.model.image.family:check_image",
              family_shape="xinference.model.image.family:flat_to_specs"),
    ModelType("audio", "audio",
              frozenset({Operation.TRANSCRIBE, Operation.TRANSLATE, Operation.SPEECH,
                         Operation.ABORT}),
              "xinference.model.audio.interface:AudioEngine",
              "xinference.model.audio.serving",
              "xinference.api.routes_audio:router",
              "xinference.client.handles:AudioModelHandle",
              "xinference.model.audio.family:check_audio",
              family_shape="xinference.model.audio.family:flat_to_specs"),
)

_BY_NAME: Dict[str, ModelType] = {t.name.lower(): t for t in MODEL_TYPES}


def type_names() -> Tuple[str, ...]:
    """The canonical names of the registered types (``LLM``, ``embedding``, ...)."""
    return tuple(t.name for t in MODEL_TYPES)


def find_model_type(name: Optional[str]) -> Optional[ModelType]:
    """The type called ``name`` in any capitalisation (``llm``, ``LLM``), or None."""
    return _BY_NAME.get(str(name or "").strip().lower())
