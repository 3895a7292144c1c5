"""Request bodies of the OpenAI-compatible surface, validated on arrival.

Models allow extra keys: engine-specific sampling options (``top_k``,
``ignore_eos``, ``grammar`` ...) pass through to the engine untouched.
Responses are the engines' OpenAI-shaped dicts, returned as they are.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Optional[Union[str, List[Dict[str, Any]]]] = None
    name: Optional[str] = None
    tool_calls: Optional[List[Dict[str, Any]]] = None
    tool_call_id: Optional[str] = None
    reasoning_content: Optional[str] = None


class StreamOptions(_Open):
    include_usage: bool = False


class _Sampling(_Open):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, ge=0, le=2)
    top_p: Optional[float] = Field(default=None, ge=0, le=1)
    n: Optional[int] = Field(default=None, ge=1, le=16)
    stop: Optional[Union[str, List[str]]] = None
    seed: Optional[int] = None
    presence_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    frequency_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    user: Optional[str] = None
    request_id: Optional[str] = None


class ChatCompletionRequest(_Sampling):
    messages: List[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    response_format: Optional[Dict[str, Any]] = None
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    chat_template_kwargs: Optional[Dict[str, Any]] = None

    @field_validator("response_format")
    @classmethod
    def _check_format(cls, value):
        if value is not None and value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("type must be one of text, json_object, json_schema")
        return value


class CompletionRequest(_Sampling):
    prompt: Union[str, List[str]]
    logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    echo: Optional[bool] = None


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: Union[str, List[str], List[int], List[List[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(default=None, ge=1)
    user: Optional[str] = None


class RerankRequest(_Open):
    model: str = Field(min_length=1)
    query: str
    documents: List[str] = Field(min_length=1)
    top_n: Optional[int] = Field(default=None, ge=1)
    return_documents: Optional[bool] = None
    return_len: Optional[bool] = None


class LaunchModelRequest(_Open):
    model_name: str = Field(min_length=1)
    model_type: str = "LLM"
    model_uid: Optional[str] = None
    model_engine: Optional[str] = None
    replica: int = Field(default=1, ge=1)


def engine_request(body: BaseModel) -> Dict[str, Any]:
    """The dict handed to the engine: set fields only, ``None`` dropped."""
    return body.model_dump(exclude_none=True)
