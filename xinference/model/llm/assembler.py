"""From one choice's generated text to typed deltas: answer text, reasoning and tool calls.

:class:`ChatDeltaAssembler` chains the reasoning parser and the tool-call
parser: text goes in as it is generated (already free of stop strings), and out
come :class:`~.deltas.ChoiceDelta` pieces whose ``reasoning``, ``content`` and
``tool_calls`` are split the way every API dialect needs them. Text held back
(a partial tag, a call still being written) comes out with a later piece or
with :meth:`ChatDeltaAssembler.finish`.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

from .deltas import ChoiceDelta, ToolCallDelta
from .protocol import TokenLogprob
from .reasoning import ReasoningParser
from .tool_calls import ToolCall, ToolCallParser


class ChatDeltaAssembler:
    """Per-choice parsing of generated text.

    ``reasoning``: ``(start_tag, end_tag)`` of a reasoning model, or None.
    ``in_reasoning``: the prompt already opened the reasoning block.
    ``tool_format``: ``"hermes" | "json" | "auto"`` when the request has tools, else None.
    ``tool_names``: the request's function names (calls to others stay content).
    """

    def __init__(self, reasoning: Optional[Tuple[str, str]] = None, in_reasoning: bool = False,
                 tool_format: Optional[str] = None, tool_names: Optional[Iterable[str]] = None):
        self._reasoning = (ReasoningParser(*reasoning, in_reasoning=in_reasoning)
                           if reasoning else None)
        self._tools = ToolCallParser(tool_format, tool_names) if tool_format else None
        self._spaces = ""
        self.tool_calls: List[ToolCall] = []

    @property
    def with_reasoning(self) -> bool:
        return self._reasoning is not None

    def feed(self, text: str) -> ChoiceDelta:
        """What this piece of text makes visible (possibly nothing while something is held)."""
        out = ChoiceDelta()
        if text:
            self._route(out, *(self._reasoning.feed(text) if self._reasoning else ("", text)))
        return out

    def finish(self) -> ChoiceDelta:
        """Everything still held back, once the generation has ended."""
        out = ChoiceDelta()
        if self._reasoning is not None:
            self._route(out, *self._reasoning.flush())
        if self._tools is not None:
            self._events(out, self._tools.flush())
        if self._spaces and not self.tool_calls:
            out.content += self._spaces
        self._spaces = ""
        return out

    def finish_reason(self, reason: str) -> str:
        """``tool_calls`` when the answer called tools, else the generation's own reason."""
        return "tool_calls" if self.tool_calls else reason

    def _route(self, out: ChoiceDelta, reasoning: str, content: str) -> None:
        out.reasoning += reasoning
        if not content:
            return
        if self._tools is None:
            out.content += content
        else:
            self._events(out, self._tools.feed(content))

    def _events(self, out: ChoiceDelta, events) -> None:
        for kind, value in events:
            if kind == "tool_call":
                self._spaces = ""
                out.tool_calls.append(ToolCallDelta(len(self.tool_calls), value.id, value.name,
                                                    value.arguments))
                self.tool_calls.append(value)
            elif not value.strip():
                self._spaces += value
            else:
                out.content += self._spaces + value
                self._spaces = ""


def parsed_delta(assembler: Optional[ChatDeltaAssembler], index: int, text: str,
                 finish_reason: Optional[str] = None,
                 logprobs: Sequence[TokenLogprob] = (),
                 token_ids: Sequence[int] = ()) -> ChoiceDelta:
    """One choice's new text as a typed delta: parsed by ``assembler`` (chat) or as plain
    content (None: completions); on the choice's last piece, with whatever was held back."""
    if assembler is None:
        delta = ChoiceDelta(content=text)
    else:
        delta = assembler.feed(text)
        if finish_reason:
            rest = assembler.finish()
            delta.reasoning += rest.reasoning
            delta.content += rest.content
            delta.tool_calls += rest.tool_calls
            finish_reason = assembler.finish_reason(finish_reason)
    delta.index = index
    delta.finish_reason = finish_reason
    delta.logprobs = list(logprobs)
    delta.token_ids = list(token_ids)
    return delta
