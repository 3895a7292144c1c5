"""Synthetic generations for the Responses tests: an engine stand-in that replays deltas."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List, Optional

from pydantic import TypeAdapter

from xinference.model.llm.deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from xinference.model.operations import Dialect, InferenceCall, Operation

try:
    from openai.types.responses import ResponseStreamEvent
except ImportError:  # pragma: no cover - older SDKs name it differently
    from openai.types.responses.response_stream_event import ResponseStreamEvent

EVENTS = TypeAdapter(ResponseStreamEvent)


class ReplayEngine:
    """Answers every ``start_chat`` with the same items; keeps the requests it got."""

    def __init__(self, items: List[Any], model_uid: str = "m1"):
        self.items = items
        self.config = SimpleNamespace(model_uid=model_uid)
        self.requests: List[Dict[str, Any]] = []
        self.closed = False

    def start_chat(self, request: Dict[str, Any]) -> Generation:
        self.requests.append(request)
        return Generation(request_id=request.get("request_id", "r1"), created=1700000000,
                          n_choices=1, deltas=self._deltas(), reasoning=True)

    async def _deltas(self):
        try:
            for item in self.items:
                yield item
        finally:
            self.closed = True


def call(body: Dict[str, Any], stream: bool = False,
         history: Optional[List[Dict[str, Any]]] = None) -> InferenceCall:
    body = {"model": "m1", **body}
    context = {"history": history} if history is not None else {}
    return InferenceCall(Operation.CHAT, body, Dialect.RESPONSES, stream, context)


def text_items(*pieces: str, finish: str = "stop", reasoning: str = "") -> List[Any]:
    items: List[Any] = []
    if reasoning:
        items.append(ChoiceDelta(reasoning=reasoning))
    items += [ChoiceDelta(content=p) for p in pieces]
    items.append(ChoiceDelta(finish_reason=finish))
    items.append(Usage(prompt_tokens=7, completion_tokens=len(pieces), cached_tokens=2,
                       reasoning_tokens=1 if reasoning else None))
    return items


def call_items(name: str = "get_weather", args: str = '{"city": "Paris"}',
               lead: str = "") -> List[Any]:
    items: List[Any] = [ChoiceDelta(content=lead)] if lead else []
    items += [ChoiceDelta(tool_calls=[ToolCallDelta(0, id="call_1", name=name,
                                                    arguments=args[:5])]),
              ChoiceDelta(tool_calls=[ToolCallDelta(0, arguments=args[5:])]),
              ChoiceDelta(finish_reason="tool_calls"),
              Usage(prompt_tokens=20, completion_tokens=9)]
    return items
