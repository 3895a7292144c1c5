"""What a model can be asked to do, as types: operations, API dialects and the call message.

The gateway sends one :class:`InferenceCall` per request to a replica (over the data
plane or xoscar); the replica checks the operation against what its engine declares
(``Engine.capabilities``) and answers a refused operation with a 400 that names it.
Standard library only: every layer imports this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict


class Operation(str, enum.Enum):
    """One thing a model can serve. Images and audio are named for the types that add them."""

    CHAT = "chat"
    COMPLETE = "complete"
    COUNT_TOKENS = "count_tokens"
    EMBED = "embed"
    RERANK = "rerank"
    ABORT = "abort"
    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_TO_IMAGE = "image_to_image"
    INPAINT = "inpaint"
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"
    SPEECH = "speech"

    @property
    def label(self) -> str:
        """How an error message names the operation."""
        return _LABELS.get(self, self.value.replace("_", " "))


_LABELS = {Operation.CHAT: "chat", Operation.COMPLETE: "text completion",
           Operation.COUNT_TOKENS: "token counting", Operation.EMBED: "embeddings",
           Operation.RERANK: "rerank", Operation.TRANSCRIBE: "transcription",
           Operation.TRANSLATE: "translation (into English)",
           Operation.SPEECH: "speech synthesis"}


class Dialect(str, enum.Enum):
    """The API whose wire shapes an answer takes."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    RESPONSES = "responses"


@dataclass
class InferenceCall:
    """One request for a replica: the operation, the validated body, the dialect to answer in.

    ``body`` is the request as the dialect's route validated it (``model`` set to the
    model uid, ``request_id`` set by the gateway); ``stream`` selects the streamed answer.
    ``context`` carries what the gateway adds beyond the body (e.g. the Responses API's
    earlier turns), keyed by name.
    """

    operation: Operation
    body: Dict[str, Any]
    dialect: Dialect = Dialect.OPENAI
    stream: bool = False
    context: Dict[str, Any] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return str(self.body.get("request_id") or "")
