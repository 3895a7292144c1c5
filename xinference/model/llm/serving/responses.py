"""The OpenAI Responses dialect: a ``response`` object, whole or as its typed event stream.

One :class:`ResponseBuilder` turns a generation's deltas into output items (a
``reasoning`` item from the model's thinking, a ``message`` with the answer text,
one ``function_call`` per tool call) and, when streaming, into the events that
announce them, each with its ``sequence_number``. The whole answer runs the same
builder without events, so both carry the same items. A generation cut by its
token budget ends ``incomplete`` (``incomplete_details.reason`` ``max_output_tokens``).
The request side is in :mod:`.responses_request`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional

from ...operations import InferenceCall
from ..deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from .gather import started
from .responses_request import chat_request


def new_id(prefix: str) -> str:
    """A fresh id such as ``resp_<hex>``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def usage_dict(usage: Usage) -> Dict[str, Any]:
    """The Responses ``usage`` object."""
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0,
                                     "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
            "total_tokens": usage.total_tokens}


def skeleton(body: Mapping[str, Any], model: str, created: float) -> Dict[str, Any]:
    """A response ``in_progress`` with no output, echoing the request's settings."""
    parallel = body.get("parallel_tool_calls")
    return {
        "id": new_id("resp"), "object": "response", "created_at": created,
        "status": "in_progress", "background": False, "completed_at": None,
        "error": None, "incomplete_details": None, "model": model, "output": [],
        "usage": None, "instructions": body.get("instructions"),
        "tools": list(body.get("tools") or []), "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": True if parallel is None else bool(parallel),
        "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "text": body.get("text") or {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": body.get("metadata") or {}, "store": body.get("store") is not False,
        "user": body.get("user"),
    }


@dataclass
class _Item:
    """One output item as it grows."""

    kind: str
    index: int
    id: str
    pieces: List[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    status: str = "in_progress"

    @property
    def text(self) -> str:
        if len(self.pieces) > 1:
            self.pieces = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""

    def part(self) -> Dict[str, Any]:
        if self.kind == "reasoning":
            return {"type": "summary_text", "text": self.text}
        return {"type": "output_text", "text": self.text, "annotations": []}

    def wire(self, done: bool) -> Dict[str, Any]:
        """The item as the API shows it: empty while just added, whole once done."""
        if self.kind == "reasoning":
            item = {"type": "reasoning", "id": self.id, "summary": [self.part()] if done else []}
            if self.status == "incomplete":
                item["status"] = "incomplete"
            return item
        if self.kind == "message":
            return {"type": "message", "id": self.id, "role": "assistant",
                    "status": self.status, "content": [self.part()] if done else []}
        return {"type": "function_call", "id": self.id, "call_id": self.call_id,
                "name": self.name, "arguments": self.text if done else "",
                "status": self.status}


class ResponseBuilder:
    """Deltas in, output items and (if ``emitting``) typed events out.

    A reasoning or message item stays open until an item of another kind starts;
    function calls stay open until the end. Whitespace before any answer text is
    held back, so a reply that is only tool calls carries no empty message.
    """

    def __init__(self, response: Dict[str, Any], emitting: bool = True):
        self.response = response
        self.emitting = emitting
        self.events: List[Dict[str, Any]] = []
        self.items: List[_Item] = []
        self.current: Optional[_Item] = None
        self.calls: Dict[int, _Item] = {}
        self.held = ""
        self.seq = 0
        self.finish_reason: Optional[str] = None

    def _emit(self, type_: str, **fields: Any) -> None:
        if self.emitting:
            fields["type"] = type_
            fields["sequence_number"] = self.seq
            self.seq += 1
            self.events.append(fields)

    def drain(self) -> List[Dict[str, Any]]:
        """The events emitted since the last call."""
        out, self.events = self.events, []
        return out

    def _snapshot(self, **changes: Any) -> Dict[str, Any]:
        return {**self.response, "output": [i.wire(done=True) for i in self.items], **changes}

    def start(self) -> None:
        """``response.created`` and ``response.in_progress``."""
        if self.emitting:
            self._emit("response.created", response=self._snapshot(output=[]))
            self._emit("response.in_progress", response=self._snapshot(output=[]))

    # ------------------------------------------------------------------ items
    def _open(self, kind: str, prefix: str) -> _Item:
        item = _Item(kind, len(self.items), new_id(prefix))
        self.items.append(item)
        self._emit("response.output_item.added", output_index=item.index,
                   item=item.wire(done=False))
        where = {"item_id": item.id, "output_index": item.index}
        if kind == "reasoning":
            self._emit("response.reasoning_summary_part.added", summary_index=0,
                       part={"type": "summary_text", "text": ""}, **where)
        elif kind == "message":
            self._emit("response.content_part.added", content_index=0,
                       part={"type": "output_text", "text": "", "annotations": []}, **where)
        return item

    def _close(self, item: _Item) -> None:
        if item.status == "in_progress":
            item.status = "completed"
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "reasoning":
            self._emit("response.reasoning_summary_text.done", summary_index=0, text=item.text,
                       **where)
            self._emit("response.reasoning_summary_part.done", summary_index=0,
                       part=item.part(), **where)
        elif item.kind == "message":
            self._emit("response.output_text.done", content_index=0, text=item.text,
                       logprobs=[], **where)
            self._emit("response.content_part.done", content_index=0, part=item.part(), **where)
        else:
            self._emit("response.function_call_arguments.done", arguments=item.text, **where)
        self._emit("response.output_item.done", output_index=item.index,
                   item=item.wire(done=True))

    def _switch(self, kind: str, prefix: str) -> _Item:
        if self.current is not None and self.current.kind == kind:
            return self.current
        if self.current is not None:
            self._close(self.current)
        self.current = self._open(kind, prefix)
        return self.current

    # ------------------------------------------------------------------ deltas
    def _reasoning(self, text: str) -> None:
        item = self._switch("reasoning", "rs")
        item.pieces.append(text)
        self._emit("response.reasoning_summary_text.delta", item_id=item.id,
                   output_index=item.index, summary_index=0, delta=text)

    def _text(self, text: str) -> None:
        opened = self.current is not None and self.current.kind == "message"
        if not opened and not (self.held + text).strip():
            self.held += text
            return
        text, self.held = self.held + text, ""
        self._append_text(self._switch("message", "msg"), text)

    def _append_text(self, item: _Item, text: str) -> None:
        item.pieces.append(text)
        self._emit("response.output_text.delta", item_id=item.id, output_index=item.index,
                   content_index=0, delta=text, logprobs=[])

    def _call(self, piece: ToolCallDelta) -> None:
        item = self.calls.get(piece.index)
        if item is None:
            if self.current is not None:
                self._close(self.current)
                self.current = None
            item = _Item("function_call", len(self.items), new_id("fc"),
                         call_id=piece.id or new_id("call"), name=piece.name or "")
            self.items.append(item)
            self.calls[piece.index] = item
            self._emit("response.output_item.added", output_index=item.index,
                       item=item.wire(done=False))
        elif piece.name and not item.name:
            item.name = piece.name
        if piece.arguments:
            item.pieces.append(piece.arguments)
            self._emit("response.function_call_arguments.delta", item_id=item.id,
                       output_index=item.index, delta=piece.arguments)

    def feed(self, delta: ChoiceDelta) -> None:
        """Take one delta of the (only) choice."""
        if delta.reasoning:
            self._reasoning(delta.reasoning)
        if delta.content:
            self._text(delta.content)
        for piece in delta.tool_calls:
            self._call(piece)
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason

    # ------------------------------------------------------------------ the end
    def _close_all(self, cut: bool) -> None:
        open_items = ([self.current] if self.current else []) + [
            c for c in self.calls.values() if c.status == "in_progress"]
        if cut and open_items:
            max(open_items, key=lambda i: i.index).status = "incomplete"
        for item in sorted(open_items, key=lambda i: i.index):
            self._close(item)
        self.current = None

    def finish(self, usage: Usage) -> Dict[str, Any]:
        """Close every item, emit the final event; the finished response."""
        cut = self.finish_reason == "length"
        has_answer = any(i.kind != "reasoning" for i in self.items)
        if not has_answer and (self.held or not cut):
            item = self._switch("message", "msg")
            if self.held:
                self._append_text(item, self.held)
                self.held = ""
        self._close_all(cut)
        final = self._snapshot(status="incomplete" if cut else "completed",
                               completed_at=int(time.time()), usage=usage_dict(usage))
        if cut:
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        self._emit("response.incomplete" if cut else "response.completed", response=final)
        self.response = final
        return final


def _start(engine: Any, call: InferenceCall) -> tuple:
    body = call.body
    gen = engine.start_chat(chat_request(body, call.context.get("history")))
    base = skeleton(body, engine.config.model_uid, gen.created)
    return gen, base


async def _run(gen: Generation, builder: ResponseBuilder) -> AsyncIterator[List[Dict]]:
    usage = Usage()
    async with contextlib.aclosing(gen.deltas) as items:
        running = await started(items)
        builder.start()
        yield builder.drain()
        async for item in running:
            if isinstance(item, Usage):
                usage = item
            elif item.index == 0:
                builder.feed(item)
                if builder.events:
                    yield builder.drain()
    builder.finish(usage)
    yield builder.drain()


async def answer(engine: Any, call: InferenceCall) -> Dict[str, Any]:
    """The whole ``response`` object for ``call``."""
    gen, base = _start(engine, call)
    builder = ResponseBuilder(base, emitting=False)
    async with contextlib.aclosing(_run(gen, builder)) as batches:
        async for _ in batches:
            pass
    return builder.response


async def _events(gen: Generation, base: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
    async with contextlib.aclosing(_run(gen, ResponseBuilder(base))) as batches:
        async for batch in batches:
            for event in batch:
                yield event


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Dict[str, Any]]:
    """The typed events of ``call`` (each has ``type``); the request is validated first."""
    gen, base = _start(engine, call)
    return _events(gen, base)
