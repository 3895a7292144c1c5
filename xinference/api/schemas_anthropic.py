"""Request bodies of the Anthropic Messages API (``/v1/messages``, ``/v1/messages/count_tokens``).

Top-level fields are checked here; content blocks, tools and the thinking switch
stay dicts, which the Anthropic serving module converts, naming what it cannot
serve. Extra keys are allowed (``metadata``, ``service_tier``, newer fields), and
are not passed to the engine.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class InputMessage(_Open):
    """One turn of ``messages``."""

    role: Literal["user", "assistant"]
    content: Union[str, List[Dict[str, Any]]]


class CountTokensRequest(_Open):
    """The body of ``POST /v1/messages/count_tokens``."""

    model: str = Field(min_length=1)
    messages: List[InputMessage] = Field(min_length=1)
    system: Optional[Union[str, List[Dict[str, Any]]]] = None
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Dict[str, Any]] = None
    thinking: Optional[Dict[str, Any]] = None
    output_config: Optional[Dict[str, Any]] = None


class MessagesRequest(CountTokensRequest):
    """The body of ``POST /v1/messages``."""

    max_tokens: int = Field(ge=1)
    stream: bool = False
    stop_sequences: Optional[List[str]] = None
    temperature: Optional[float] = Field(default=None, ge=0, le=1)
    top_p: Optional[float] = Field(default=None, ge=0, le=1)
    top_k: Optional[int] = Field(default=None, ge=0)
    metadata: Optional[Dict[str, Any]] = None
    request_id: Optional[str] = None


def validation_message(exc: ValidationError) -> str:
    """One sentence naming each field that failed and why."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)
