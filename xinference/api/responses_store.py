"""Stored Responses API answers, for ``GET``/``DELETE /v1/responses/{id}`` and
``previous_response_id``.

Each stored response keeps the conversation that produced it as OpenAI chat
messages (the history it was given, its own input, its output), so a follow-up
turn sends the model that conversation without the gateway asking anyone. The
store lives in the gateway process's memory and is lost on restart; it is bounded
by count (least recently used goes first), by total size and by age (a response
expires ``ttl`` seconds after it was stored). Settings:
``XINFERENCE_RESPONSES_STORE_SIZE``, ``..._MAX_BYTES``, ``..._TTL``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import InvalidRequestError
from ..model.llm.serving.responses_request import input_messages, items_to_messages

_FINAL = (b"event: response.completed\n", b"event: response.incomplete\n")
_SEQ = b'"sequence_number":'
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
                "reasoning": "rs"}


@dataclass
class StoredResponse:
    """A finished response, the chat messages up to its end and its input items."""

    response: Dict[str, Any]
    messages: List[Dict[str, Any]]
    input_items: List[Dict[str, Any]]
    size: int
    expires: float


def _listed_part(part: Any, role: str) -> Dict[str, Any]:
    if isinstance(part, str):
        part = {"type": "output_text" if role == "assistant" else "input_text", "text": part}
    if part.get("type") == "output_text" and "annotations" not in part:
        part = {**part, "annotations": []}
    return part


def listed_items(body: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """This turn's input as items with ids, the way ``/input_items`` lists them."""
    value = body.get("input")
    items = [{"role": "user", "content": value}] if isinstance(value, str) else list(value or [])
    out = []
    for item in items:
        kind = item.get("type") or "message"
        entry = {**item, "type": kind}
        entry.setdefault("id", f"{_ID_PREFIXES.get(kind, 'item')}_{uuid.uuid4().hex}")
        if kind == "message":
            content = item.get("content")
            parts = [content] if isinstance(content, str) else list(content or [])
            entry["content"] = [_listed_part(p, item.get("role", "user")) for p in parts]
        if kind != "reasoning":
            entry.setdefault("status", "completed")
        out.append(entry)
    return out


def conversation(history: Sequence[Dict[str, Any]], body: Mapping[str, Any],
                 response: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The chat messages a follow-up to ``response`` continues: ``history``, this turn's
    input, then the response's output (``instructions`` are not carried over)."""
    return [*history, *input_messages(body), *items_to_messages(response.get("output") or [],
                                                                "output")]


class ResponseStore:
    """Finished responses by id: least recently used out first, bounded in count, bytes, age."""

    def __init__(self, max_responses: int = 1000, max_bytes: int = 256 << 20,
                 ttl: float = 86400.0, clock: Callable[[], float] = time.monotonic):
        self.max_responses = max_responses
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._items: "OrderedDict[str, StoredResponse]" = OrderedDict()
        self._ages: Deque[Tuple[float, str]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        self._expire()
        return len(self._items)

    @property
    def enabled(self) -> bool:
        return self.max_responses > 0 and self.max_bytes > 0

    def put(self, response: Dict[str, Any], messages: List[Dict[str, Any]],
            input_items: List[Dict[str, Any]], size: int = 0) -> None:
        """Keep ``response`` (its ``id`` is the key); ``size`` is its share in bytes."""
        if not self.enabled or size > self.max_bytes:
            return
        self.delete(response["id"])
        expires = self._clock() + self.ttl
        self._items[response["id"]] = StoredResponse(response, messages, input_items, size,
                                                     expires)
        self._ages.append((expires, response["id"]))
        self.bytes += size
        self._expire()
        while len(self._items) > self.max_responses or self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    def get(self, response_id: str) -> Optional[StoredResponse]:
        """The stored response, or None if unknown, deleted or expired."""
        self._expire()
        entry = self._items.get(response_id)
        if entry is not None:
            self._items.move_to_end(response_id)
        return entry

    def delete(self, response_id: str) -> bool:
        """Forget a response; False if it was not stored."""
        if response_id not in self._items:
            return False
        self._drop(response_id)
        return True

    def history(self, previous_response_id: str) -> List[Dict[str, Any]]:
        """The chat messages to put before a follow-up's input (400 if the id is unknown)."""
        entry = self.get(previous_response_id)
        if entry is None:
            raise InvalidRequestError(
                f"Previous response with id '{previous_response_id}' not found (responses are "
                "kept in this server's memory for a limited time, and only with store=true)",
                param="previous_response_id", code="previous_response_not_found")
        return list(entry.messages)

    def _drop(self, response_id: str) -> None:
        entry = self._items.pop(response_id)
        self.bytes -= entry.size

    def _expire(self) -> None:
        now = self._clock()
        while self._ages and self._ages[0][0] <= now:
            expires, response_id = self._ages.popleft()
            entry = self._items.get(response_id)
            if entry is not None and entry.expires == expires:
                self._drop(response_id)
        if len(self._ages) > 2 * max(len(self._items), 16):
            self._ages = deque(a for a in self._ages if a[1] in self._items
                               and self._items[a[1]].expires == a[0])


class ResponseTap:
    """Watches the bytes sent to the client: the last event's ``sequence_number`` (for a
    mid-stream error event) and the final response (handed to ``on_final``)."""

    def __init__(self, streaming: bool,
                 on_final: Optional[Callable[[Dict[str, Any], int], None]] = None):
        self.streaming = streaming
        self.on_final = on_final
        self.seq = -1
        self._tail = b""

    def observe(self, data: bytes) -> None:
        if not self.streaming:
            if self.on_final is not None:
                answer = json.loads(data)
                if isinstance(answer, dict) and answer.get("object") == "response":
                    self.on_final(answer, len(data))
            return
        buffer = self._tail + bytes(data)
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._tail = buffer
            return
        frames, self._tail = buffer[:end + 2], buffer[end + 2:]
        self._note_sequence(frames)
        if self.on_final is not None:
            self._catch_final(frames)

    def _note_sequence(self, frames: bytes) -> None:
        at = frames.rfind(_SEQ)
        if at >= 0:
            digits = frames[at + len(_SEQ):at + len(_SEQ) + 24].lstrip()
            number = digits[:len(digits) - len(digits.lstrip(b"0123456789"))]
            if number:
                self.seq = int(number)

    def _catch_final(self, frames: bytes) -> None:
        for marker in _FINAL:
            at = frames.find(marker)
            if at < 0:
                continue
            start = frames.find(b"data:", at) + len(b"data:")
            stop = frames.find(b"\n\n", start)
            event = json.loads(frames[start:stop])
            self.on_final(event["response"], stop - at)
            return

    def error_event(self, status: int, body: Dict[str, Any]) -> bytes:
        """The ``error`` event of a stream that failed after it started."""
        err = body.get("error") or {}
        payload = {"type": "error", "code": str(err.get("code") or err.get("type") or status),
                   "message": err.get("message") or "The model failed while answering",
                   "param": err.get("param"), "sequence_number": self.seq + 1}
        return b"event: error\ndata: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
