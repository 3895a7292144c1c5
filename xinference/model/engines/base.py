"""The small interfaces every engine implements, one per model type.

An engine is a plain class: a script or a benchmark can build one from an
:class:`EngineConfig`, call :meth:`Engine.load`, then await its methods, with no
actor anywhere. Requests and responses are plain dicts in OpenAI's shapes:
the request is the validated body the gateway received (``model`` included);
the response is what the gateway returns as JSON, with ``model`` set to the
model uid.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, AsyncIterator, ClassVar, Dict, List, Optional


@dataclass
class EngineConfig:
    """Everything an engine needs to load one replica of a model."""

    model_uid: str
    model_type: str
    model_name: str
    engine: str
    model_format: str
    model_path: str
    quantization: Optional[str] = None
    model_size_in_billions: Optional[str] = None
    family: Dict[str, Any] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)
    context_length: Optional[int] = None
    enable_thinking: Optional[bool] = None
    replica_id: str = "0"
    n_gpu: Optional[Any] = None
    gpu_idx: Optional[List[int]] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class Engine(ABC):
    """Base of all engines: built from a config, loaded once, closed once."""

    model_type: ClassVar[str] = ""

    def __init__(self, config: EngineConfig):
        self.config = config

    @abstractmethod
    def load(self) -> None:
        """Load the weights. Blocking: the model actor calls it in a worker thread."""

    def close(self) -> None:
        """Free the engine's resources; safe to call twice."""

    def describe(self) -> Dict[str, Any]:
        """Engine facts worth showing in ``GET /v1/models/{uid}`` (threads, context, ...)."""
        return {}


class LLMEngine(Engine):
    """Chat and text completion, OpenAI ``/v1/chat/completions`` and ``/v1/completions``.

    Streaming methods return async iterators of ``chat.completion.chunk`` /
    ``text_completion`` chunk dicts, produced token by token. Closing the
    iterator early (``aclose``) must stop the generation and free its slot.
    """

    model_type = "LLM"

    @abstractmethod
    async def chat(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """One ``chat.completion`` dict for an OpenAI chat request."""

    @abstractmethod
    def chat_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """``chat.completion.chunk`` dicts for an OpenAI chat request with ``stream``."""

    @abstractmethod
    async def complete(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """One ``text_completion`` dict for an OpenAI completion request."""

    @abstractmethod
    def complete_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """``text_completion`` chunk dicts for a completion request with ``stream``."""

    async def abort(self, request_id: str) -> bool:
        """Stop the request with this id if it is running; True if one was stopped."""
        return False


class EmbeddingEngine(Engine):
    """Text embeddings, OpenAI ``/v1/embeddings``."""

    model_type = "embedding"

    @abstractmethod
    async def embed(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """An OpenAI ``list`` of ``embedding`` objects plus ``usage`` for the request."""


class RerankEngine(Engine):
    """Document reranking, Xinference's ``/v1/rerank``."""

    model_type = "rerank"

    @abstractmethod
    async def rerank(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """``{"id", "results": [{"index", "relevance_score", "document"}], "meta"}``."""
