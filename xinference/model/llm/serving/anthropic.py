"""The Anthropic Messages dialect: ``message`` answers, their event stream, token counts.

A request is converted to an OpenAI chat request
(:mod:`.anthropic_request`) and run with ``engine.start_chat``. Its first choice
becomes content blocks, opened in the order the model produces them: a
``thinking`` block for reasoning, a ``text`` block for answer text (a run of
whitespace alone opens none), a ``tool_use`` block per tool call. A block closes
when the next one opens; a thinking block gets an empty ``signature_delta`` first.

The stream is ``message_start``, then per block ``content_block_start``,
``content_block_delta`` events and ``content_block_stop``, then ``message_delta``
(stop reason, usage) and ``message_stop``. The whole answer is the same events
folded into one ``message``, so both carry the same blocks.

Usage: ``message_start`` gives the prompt's tokens when the engine counted them
before generating (transformers, vLLM, SGLang, MLX), else 0 (llama.cpp counts as it
runs); ``message_delta`` always gives the final counts (the SDKs take them from there).
Cached prompt tokens are reported as ``cache_read_input_tokens`` and left out of
``input_tokens``, as Anthropic counts.
A message cut by one of the request's ``stop_sequences`` ends with ``stop_reason``
``stop_sequence`` naming it, on the engines that tell which stop string matched
(transformers, vLLM, SGLang, MLX); on llama.cpp, which does not, it ends as ``end_turn``
with ``stop_sequence`` null.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence

from ....errors import InvalidRequestError
from ...operations import InferenceCall, Operation
from ..deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from .anthropic_request import openai_chat_request, tool_use_id
from .gather import started

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def stop_reason(finish_reason: Optional[str], called_tools: bool) -> str:
    """Anthropic's ``stop_reason`` for an OpenAI finish reason."""
    if finish_reason != "length" and called_tools:
        return "tool_use"
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage_dict(usage: Usage) -> Dict[str, int]:
    """Anthropic's ``usage``: cached prompt tokens apart from ``input_tokens``."""
    cached = usage.cached_tokens
    out = {"input_tokens": usage.prompt_tokens - (cached or 0),
           "output_tokens": usage.completion_tokens}
    if cached is not None:
        out["cache_read_input_tokens"] = cached
    return out


def message_shell(message_id: str, model: str, prompt_tokens: Optional[int] = None
                  ) -> Dict[str, Any]:
    """The ``message`` of ``message_start``: no content yet, no stop reason, the prompt's
    tokens when the engine knew them before generating (else 0)."""
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens or 0, "output_tokens": 0}}


def _start(index: int, block: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


class BlockStream:
    """Turns one choice's deltas into content-block events, opening and closing blocks."""

    def __init__(self):
        self.count = 0
        self.kind: Optional[str] = None
        self.calls: Dict[int, int] = {}
        self.spaces = ""

    def _close(self) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        if self.kind == "thinking":
            out.append(_delta(self.count - 1, {"type": "signature_delta", "signature": ""}))
        if self.kind is not None:
            out.append({"type": "content_block_stop", "index": self.count - 1})
        self.kind, self.spaces = None, ""
        return out

    def _open(self, kind: str, block: Dict[str, Any]) -> List[Dict[str, Any]]:
        out = self._close()
        self.kind, self.count = kind, self.count + 1
        out.append(_start(self.count - 1, block))
        return out

    def text(self, text: str) -> List[Dict[str, Any]]:
        if self.kind != "text":
            if not (self.spaces + text).strip():
                self.spaces += text
                return []
            text, self.spaces = self.spaces + text, ""
            return self._open("text", {"type": "text", "text": ""}) + [
                _delta(self.count - 1, {"type": "text_delta", "text": text})]
        return [_delta(self.count - 1, {"type": "text_delta", "text": text})]

    def thinking(self, text: str) -> List[Dict[str, Any]]:
        out = [] if self.kind == "thinking" else self._open(
            "thinking", {"type": "thinking", "thinking": "", "signature": ""})
        return out + [_delta(self.count - 1, {"type": "thinking_delta", "thinking": text})]

    def tool(self, piece: ToolCallDelta) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        if piece.index not in self.calls:
            out = self._open("tool_use", {"type": "tool_use", "id": tool_use_id(piece.id),
                                          "name": piece.name or "", "input": {}})
            self.calls[piece.index] = self.count - 1
        if piece.arguments:
            out.append(_delta(self.calls[piece.index],
                              {"type": "input_json_delta", "partial_json": piece.arguments}))
        return out

    def feed(self, delta: ChoiceDelta) -> List[Dict[str, Any]]:
        """The events for one delta, in the order reasoning, text, tool calls."""
        out = self.thinking(delta.reasoning) if delta.reasoning else []
        if delta.content:
            out += self.text(delta.content)
        for piece in delta.tool_calls:
            out += self.tool(piece)
        return out

    def finish(self) -> List[Dict[str, Any]]:
        """Close the last block (an empty text block when nothing was produced)."""
        if self.count:
            return self._close()
        spaces, out = self.spaces, self._open("text", {"type": "text", "text": ""})
        if spaces:
            out.append(_delta(0, {"type": "text_delta", "text": spaces}))
        return out + self._close()


async def message_events(gen: Generation, model: str,
                         stop_sequences: Sequence[str] = ()) -> AsyncIterator[Dict[str, Any]]:
    """The Anthropic stream events of a generation's first choice; closing this stops it."""
    blocks, usage, finish, matched = BlockStream(), Usage(), None, None
    try:
        running = await started(gen.deltas)
        yield {"type": "message_start", "message": message_shell(f"msg_{gen.request_id}", model,
                                                                gen.prompt_tokens)}
        async for item in running:
            if isinstance(item, Usage):
                usage = item
            elif item.index == 0:
                for event in blocks.feed(item):
                    yield event
                finish = item.finish_reason or finish
                matched = item.stop_sequence or matched
    finally:
        await gen.aclose()
    for event in blocks.finish():
        yield event
    reason = stop_reason(finish, bool(blocks.calls))
    if reason != "end_turn" or matched not in stop_sequences:
        matched = None
    elif matched is not None:
        reason = "stop_sequence"
    yield {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": matched},
           "usage": usage_dict(usage)}
    yield {"type": "message_stop"}


def _tool_input(text: str) -> Dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def _apply(block: Dict[str, Any], delta: Dict[str, Any]) -> None:
    kind = delta["type"]
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    elif kind == "input_json_delta":
        block["partial_json"] = block.get("partial_json", "") + delta["partial_json"]


async def fold_message(events: AsyncIterator[Dict[str, Any]]) -> Dict[str, Any]:
    """One whole ``message`` from its stream events."""
    message: Dict[str, Any] = {}
    async for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = dict(event["message"], content=[])
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            _apply(message["content"][event["index"]], event["delta"])
        elif kind == "message_delta":
            message.update(event["delta"], usage=event["usage"])
    for block in message.get("content", []):
        if block["type"] == "tool_use":
            block["input"] = _tool_input(block.pop("partial_json", ""))
    return message


def _generation(engine: Any, call: InferenceCall, streamed: bool) -> Generation:
    if call.operation != Operation.CHAT:
        how = "streamed " if streamed else ""
        raise InvalidRequestError(f"The Anthropic Messages API has no {how}"
                                  f"{call.operation.label} answer")
    return engine.start_chat(openai_chat_request(call.body))


async def answer(engine: Any, call: InferenceCall) -> Dict[str, Any]:
    """The whole ``message`` for a chat call, or ``{"input_tokens"}`` for a token count."""
    if call.operation == Operation.COUNT_TOKENS:
        request = openai_chat_request(call.body)
        return {"input_tokens": await asyncio.to_thread(engine.count_chat_tokens, request)}
    gen = _generation(engine, call, False)
    return await fold_message(message_events(gen, engine.config.model_uid, _stops(call)))


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Dict[str, Any]]:
    """The stream events of a chat call; the request is validated before this returns."""
    return message_events(_generation(engine, call, True), engine.config.model_uid,
                          _stops(call))


def _stops(call: InferenceCall) -> List[str]:
    return [s for s in call.body.get("stop_sequences") or [] if isinstance(s, str)]
