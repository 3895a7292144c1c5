"""Request bodies of the OpenAI Responses API (``POST /v1/responses``), validated on arrival.

Shapes are checked loosely here (items and tools stay dicts): the Responses
serving module converts them and names what it cannot serve. Extra keys are
allowed, so Xinference's sampling extras (``top_k``, ``chat_template_kwargs``,
``request_id`` ...) pass through.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class CreateResponseRequest(BaseModel):
    """The body of ``POST /v1/responses``."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(min_length=1)
    input: Optional[Union[str, List[Dict[str, Any]]]] = None
    instructions: Optional[str] = None
    stream: bool = False
    store: Optional[bool] = None
    previous_response_id: Optional[str] = None
    max_output_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, ge=0, le=2)
    top_p: Optional[float] = Field(default=None, ge=0, le=1)
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    parallel_tool_calls: Optional[bool] = None
    text: Optional[Dict[str, Any]] = None
    reasoning: Optional[Dict[str, Any]] = None
    metadata: Optional[Dict[str, str]] = None
    truncation: Optional[Literal["auto", "disabled"]] = None
    include: Optional[List[str]] = None
    user: Optional[str] = None
    request_id: Optional[str] = None


def response_request(body: CreateResponseRequest) -> Dict[str, Any]:
    """The dict sent to the replica: set fields only, ``None`` dropped."""
    return body.model_dump(exclude_none=True)
