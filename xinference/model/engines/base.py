"""The small interfaces every engine implements, one per model type.

An engine is a plain class: a script or a benchmark can build one from an
:class:`EngineConfig`, call :meth:`Engine.load`, then await its methods, with no
actor anywhere. Requests are plain dicts in OpenAI's shapes (the validated body
the gateway received, ``model`` included). An LLM engine answers with typed
results (:class:`~xinference.model.llm.deltas.Generation`) that the serving
layer turns into each API dialect's answers; embedding and rerank engines answer
with the response dicts themselves. Each engine declares the operations it
serves in ``capabilities``; the replica refuses the others with a 400.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, ClassVar, Dict, FrozenSet, List, Optional

from ..operations import Operation

if TYPE_CHECKING:  # pragma: no cover
    from ..llm.deltas import Generation


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
    capabilities: ClassVar[FrozenSet[Operation]] = frozenset({Operation.ABORT})

    def __init__(self, config: EngineConfig):
        self.config = config

    @abstractmethod
    def load(self) -> None:
        """Load the weights. Blocking: the model actor calls it in a worker thread."""

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Free the engine's resources; safe to call twice."""

    def describe(self) -> Dict[str, Any]:
        """Engine facts worth showing in ``GET /v1/models/{uid}`` (threads, context, ...)."""
        return {}

    async def abort(self, request_id: str) -> bool:
        """Stop the request with this id if it is running; True if one was stopped."""
        return False


class LLMEngine(Engine):
    """Chat and text completion: OpenAI ``/v1/chat/completions`` and ``/v1/completions``,
    Anthropic ``/v1/messages`` and OpenAI ``/v1/responses`` through the serving layer.

    An engine implements :meth:`start_chat` and :meth:`start_completion`: each
    validates an OpenAI request at once (bad requests raise) and returns a
    :class:`Generation` whose deltas run the work; closing them early stops it and
    frees the slot. :meth:`chat`, :meth:`chat_stream`, :meth:`complete` and
    :meth:`complete_stream` give OpenAI dicts, for scripts and benchmarks.
    """

    model_type = "LLM"
    capabilities = frozenset({Operation.CHAT, Operation.COMPLETE, Operation.ABORT})

    @abstractmethod
    def start_chat(self, request: Dict[str, Any]) -> "Generation":
        """Validate an OpenAI chat request and return its generation."""

    @abstractmethod
    def start_completion(self, request: Dict[str, Any]) -> "Generation":
        """Validate an OpenAI completion request and return its generation."""

    def count_chat_tokens(self, request: Dict[str, Any]) -> int:
        """Prompt tokens of a chat request after the chat template (engines that can)."""
        from ...errors import InvalidRequestError

        raise InvalidRequestError(f"The {type(self).__name__} engine cannot count tokens")

    async def chat(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """One ``chat.completion`` dict for an OpenAI chat request."""
        from ..llm.serving import openai

        return await openai.chat_completion(self.start_chat(request), self.config.model_uid)

    def chat_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """``chat.completion.chunk`` dicts; a bad request raises here, before any chunk."""
        from ..llm.serving import openai

        include = bool((request.get("stream_options") or {}).get("include_usage"))
        return openai.chat_chunks(self.start_chat(request), self.config.model_uid, include)

    async def complete(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """One ``text_completion`` dict for an OpenAI completion request."""
        from ..llm.serving import openai

        return await openai.completion(self.start_completion(request), self.config.model_uid,
                                       bool(request.get("echo")))

    def complete_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """``text_completion`` chunks; a bad request raises here, before any chunk."""
        from ..llm.serving import openai

        include = bool((request.get("stream_options") or {}).get("include_usage"))
        return openai.completion_chunks(self.start_completion(request), self.config.model_uid,
                                        include, bool(request.get("echo")))


class EmbeddingEngine(Engine):
    """Text embeddings, OpenAI ``/v1/embeddings``."""

    model_type = "embedding"
    capabilities = frozenset({Operation.EMBED, Operation.ABORT})

    @abstractmethod
    async def embed(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """An OpenAI ``list`` of ``embedding`` objects plus ``usage`` for the request."""


class RerankEngine(Engine):
    """Document reranking, Xinference's ``/v1/rerank``."""

    model_type = "rerank"
    capabilities = frozenset({Operation.RERANK, Operation.ABORT})

    @abstractmethod
    async def rerank(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """``{"id", "results": [{"index", "relevance_score", "document"}], "meta"}``."""
