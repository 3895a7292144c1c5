"""Builders of OpenAI response dicts: ``chat.completion``, ``chat.completion.chunk``,
``text_completion`` (whole and streamed), ``usage`` and ``logprobs``.

Every engine returns these shapes, so clients see the same fields whichever
engine answers. Field order and ``None`` values follow OpenAI's responses.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

def new_request_id() -> str:
    return uuid.uuid4().hex


def chat_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def completion_id(request_id: str) -> str:
    return f"cmpl-{request_id}"


def now() -> int:
    return int(time.time())


@dataclass
class TokenLogprob:
    """One generated token's log-probability and its most likely alternatives."""

    token: str
    logprob: float
    top: List[Tuple[str, float]] = field(default_factory=list)


def usage(prompt_tokens: int, completion_tokens: int) -> Dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _bytes(text: str) -> List[int]:
    return list(text.encode("utf-8"))


def chat_logprobs(entries: Sequence[TokenLogprob]) -> Dict[str, Any]:
    """``choice.logprobs`` of a chat completion (or of one chunk)."""
    content = [{"token": e.token, "logprob": e.logprob, "bytes": _bytes(e.token),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": _bytes(t)}
                                 for t, lp in e.top]}
               for e in entries]
    return {"content": content, "refusal": None}


def completion_logprobs(entries: Sequence[TokenLogprob], text_offset: int = 0) -> Dict[str, Any]:
    """``choice.logprobs`` of a text completion; offsets count from ``text_offset``."""
    offsets, pos = [], text_offset
    for e in entries:
        offsets.append(pos)
        pos += len(e.token)
    return {"tokens": [e.token for e in entries],
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [dict(e.top) for e in entries],
            "text_offset": offsets}


def chat_message(content: Optional[str], reasoning_content: Optional[str] = None,
                 tool_calls: Optional[List[Dict[str, Any]]] = None,
                 with_reasoning: bool = False) -> Dict[str, Any]:
    """An assistant ``message``; ``reasoning_content`` is present for reasoning models."""
    message: Dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if with_reasoning:
        message["reasoning_content"] = reasoning_content
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def chat_choice(index: int, message: Dict[str, Any], finish_reason: str,
                logprobs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"index": index, "message": message, "logprobs": logprobs,
            "finish_reason": finish_reason}


def chat_completion(id_: str, model: str, choices: List[Dict[str, Any]],
                    usage_: Dict[str, int], created: Optional[int] = None) -> Dict[str, Any]:
    return {"id": id_, "object": "chat.completion", "created": created or now(), "model": model,
            "choices": choices, "usage": usage_, "system_fingerprint": None}


def chat_chunk(id_: str, model: str, created: int, index: int, delta: Dict[str, Any],
               finish_reason: Optional[str] = None, logprobs: Optional[Dict[str, Any]] = None,
               with_usage_field: bool = False) -> Dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    chunk = {"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                          "finish_reason": finish_reason}],
             "system_fingerprint": None}
    if with_usage_field:
        chunk["usage"] = None
    return chunk


def chat_usage_chunk(id_: str, model: str, created: int, usage_: Dict[str, int]) -> Dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
    return {"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage_, "system_fingerprint": None}


def completion_choice(index: int, text: str, finish_reason: Optional[str],
                      logprobs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def completion(id_: str, model: str, choices: List[Dict[str, Any]],
               usage_: Optional[Dict[str, int]], created: Optional[int] = None) -> Dict[str, Any]:
    """A ``text_completion`` (whole response, or one streamed chunk when ``usage_`` is None)."""
    out = {"id": id_, "object": "text_completion", "created": created or now(), "model": model,
           "choices": choices, "system_fingerprint": None}
    if usage_ is not None:
        out["usage"] = usage_
    return out
