"""From one choice's text pieces to OpenAI chat deltas and the final message.

:class:`ChatDeltaAssembler` chains the reasoning parser and the tool-call
parser: text goes in as it is generated (already free of stop strings), and
out come ``delta`` dicts the way OpenAI streams them: ``{"reasoning_content"}``,
``{"content"}``, and for each tool call a first ``{"tool_calls": [{index, id,
type, function: {name, arguments: ""}}]}`` then argument pieces. The same object
gathers the whole ``message`` for non-streamed responses, so both paths agree.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Iterable, List, Optional, Tuple

from .protocol import chat_message
from .reasoning import ReasoningParser
from .tool_calls import ToolCall, ToolCallParser, tool_call_delta_chunks


class ChatDeltaAssembler:
    """Per-choice streaming assembly.

    ``reasoning``: ``(start_tag, end_tag)`` of a reasoning model, or None.
    ``in_reasoning``: the prompt already opened the reasoning block.
    ``tool_format``: ``"hermes" | "json" | "auto"`` when the request has tools, else None.
    ``tool_names``: the request's function names (calls to others stay content).
    """

    def __init__(self, reasoning: Optional[Tuple[str, str]] = None, in_reasoning: bool = False,
                 tool_format: Optional[str] = None, tool_names: Optional[Iterable[str]] = None,
                 argument_piece: int = 16):
        self._reasoning = (ReasoningParser(*reasoning, in_reasoning=in_reasoning)
                           if reasoning else None)
        self._tools = ToolCallParser(tool_format, tool_names) if tool_format else None
        self._piece = argument_piece
        self._spaces = ""
        self._content: List[str] = []
        self._thoughts: List[str] = []
        self.tool_calls: List[ToolCall] = []

    @property
    def with_reasoning(self) -> bool:
        return self._reasoning is not None

    def feed(self, text: str) -> List[Dict[str, Any]]:
        """Deltas produced by this piece of text (possibly none while something is held back)."""
        if not text:
            return []
        if self._reasoning is None:
            return self._route("", text)
        return self._route(*self._reasoning.feed(text))

    def finish(self) -> List[Dict[str, Any]]:
        """Deltas still held back, once the generation has ended."""
        out = self._route(*self._reasoning.flush()) if self._reasoning else []
        if self._tools is not None:
            out += self._events(self._tools.flush())
        if self._spaces and not self.tool_calls:
            out.append(self._content_delta(self._spaces))
        self._spaces = ""
        return out

    def finish_reason(self, reason: str) -> str:
        """``tool_calls`` when the answer called tools, else the generation's own reason."""
        return "tool_calls" if self.tool_calls else reason

    def message(self) -> Dict[str, Any]:
        """The assistant message gathered from everything fed (call after :meth:`finish`)."""
        content: Optional[str] = "".join(self._content)
        if self.tool_calls:
            content = content.strip() or None
        saw = self._reasoning is not None and self._reasoning.saw_reasoning
        reasoning = "".join(self._thoughts) if saw else None
        calls = [c.to_openai() for c in self.tool_calls] or None
        return chat_message(content, reasoning, calls, with_reasoning=self.with_reasoning)

    def _route(self, reasoning: str, content: str) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        if reasoning:
            self._thoughts.append(reasoning)
            out.append({"reasoning_content": reasoning})
        if not content:
            return out
        if self._tools is None:
            out.append(self._content_delta(content))
            return out
        return out + self._events(self._tools.feed(content))

    def _events(self, events) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        for kind, value in events:
            if kind == "tool_call":
                self._spaces = ""
                index = len(self.tool_calls)
                self.tool_calls.append(value)
                deltas = tool_call_delta_chunks(index, value, self._piece)
                out += [{"tool_calls": [d]} for d in deltas]
            elif not value.strip():
                self._spaces += value
            else:
                text, self._spaces = self._spaces + value, ""
                out.append(self._content_delta(text))
        return out

    def _content_delta(self, text: str) -> Dict[str, Any]:
        self._content.append(text)
        return {"content": text}


def _reshaped(choice: Dict[str, Any], assembler: ChatDeltaAssembler) -> List[Dict[str, Any]]:
    delta = dict(choice.get("delta") or {})
    reason = choice.get("finish_reason")
    deltas = assembler.feed(delta.pop("content", None) or "")
    if reason:
        deltas += assembler.finish()
    items = ([dict(delta, content=None)] if delta else []) + deltas
    out = [dict(choice, delta=d, finish_reason=None) for d in items]
    if reason:
        out.append(dict(choice, delta={}, logprobs=None,
                        finish_reason=assembler.finish_reason(reason)))
    for later in out[1:]:
        later["logprobs"] = None
    return out


async def content_calls_as_tool_calls(chunks: AsyncIterator[Dict[str, Any]],
                                      names: Optional[Iterable[str]]
                                      ) -> AsyncIterator[Dict[str, Any]]:
    """Chat chunks whose ``content`` is JSON tool calls (an engine made to write them for a
    forced ``tool_choice``), re-shaped the way OpenAI streams calls: ``delta.tool_calls``
    entries and finish reason ``tool_calls``. Chunks without choices pass unchanged."""
    assemblers: Dict[int, ChatDeltaAssembler] = {}
    async for chunk in chunks:
        if not chunk.get("choices"):
            yield chunk
            continue
        for choice in chunk["choices"]:
            assembler = assemblers.setdefault(
                choice.get("index", 0), ChatDeltaAssembler(tool_format="json", tool_names=names))
            for part in _reshaped(choice, assembler):
                yield dict(chunk, choices=[part])
