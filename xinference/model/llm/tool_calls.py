"""Tool calls parsed out of the model's text, in OpenAI's shapes.

Formats (``fmt``):

- ``"hermes"`` (Qwen, Hermes, ...): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
  any number of them, with answer text around them.
- ``"json"`` (Llama 3.x style): the whole answer is one JSON object
  ``{"name": ..., "arguments"|"parameters": {...}}`` or a list of them.
- ``"auto"``: both; tags anywhere, plain JSON only when the answer starts with it.

:func:`forced_call_schema` turns ``tool_choice`` ``"required"`` or a named function
into a JSON schema that engines enforce, so that a call is always made.

:class:`ToolCallParser` is fed text as it streams and returns events:
``("content", text)`` or ``("tool_call", ToolCall)``. A block that does not parse
as a call to a known tool is given back as content, never dropped.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ...errors import InvalidRequestError

HERMES_OPEN = "<tool_call>"
HERMES_CLOSE = "</tool_call>"
FORMATS = ("hermes", "json", "auto")
_ID_ALPHABET = string.ascii_letters + string.digits

Event = Tuple[str, Any]


def new_tool_call_id() -> str:
    """An id shaped like OpenAI's (``call_`` + 24 letters and digits)."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass
class ToolCall:
    """One parsed call; ``arguments`` is a JSON string, as in OpenAI's responses."""

    name: str
    arguments: str
    id: str = ""

    def __post_init__(self):
        if not self.id:
            self.id = new_tool_call_id()

    def to_openai(self) -> Dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def offered_tools(request: Mapping[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """The tools a chat request offers the model: none for ``tool_choice: "none"``, only the
    named one for a named ``tool_choice``; a malformed list is an InvalidRequestError."""
    tools, choice = request.get("tools"), request.get("tool_choice")
    if not tools or choice == "none":
        return None
    if not isinstance(tools, list) or not all(
            isinstance(t, dict) and isinstance(t.get("function"), dict)
            and t["function"].get("name") for t in tools):
        raise InvalidRequestError("tools must be a list of {type: function, function: {name, "
                                  "parameters}} objects", param="tools")
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        picked = [t for t in tools if (t.get("function") or {}).get("name") == wanted]
        if not picked:
            raise InvalidRequestError(f"tool_choice names {wanted!r}, which is not in tools",
                                      param="tool_choice")
        return picked
    return tools


def tool_names(tools: Optional[Sequence[Mapping[str, Any]]]) -> Optional[set]:
    """Names of the functions in an OpenAI ``tools`` list (None when there are no tools)."""
    if not tools:
        return None
    names = set()
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and fn.get("name"):
            names.add(fn["name"])
    return names


def _call_schema(tool: Mapping[str, Any]) -> Dict[str, Any]:
    fn = tool.get("function") or {}
    return {"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
            "properties": {"name": {"const": fn.get("name")},
                           "arguments": fn.get("parameters") or {"type": "object"}}}


def forced_call_schema(tools: Optional[Sequence[Mapping[str, Any]]],
                       tool_choice: Any) -> Optional[Dict[str, Any]]:
    """The JSON schema of the answer when ``tool_choice`` demands a call, else None.

    ``"required"``: a non-empty list of ``{"name", "arguments"}`` calls to any of
    ``tools``; a named function (``{"type": "function", "function": {"name"}}``): one
    call to it. An engine enforces the schema with its grammar support and parses
    the answer with the ``"json"`` format, so the call OpenAI guarantees is made.
    """
    tools = [t for t in tools or () if isinstance(t, Mapping)]
    if not tools or not (tool_choice == "required" or isinstance(tool_choice, Mapping)):
        return None
    if isinstance(tool_choice, Mapping):
        wanted = (tool_choice.get("function") or {}).get("name")
        named = [t for t in tools if (t.get("function") or {}).get("name") == wanted]
        return _call_schema(named[0]) if named else None
    calls = [_call_schema(t) for t in tools]
    return {"type": "array", "minItems": 1,
            "items": calls[0] if len(calls) == 1 else {"anyOf": calls}}


def _call_from_obj(obj: Any, known: Optional[set]) -> Optional[ToolCall]:
    if not isinstance(obj, Mapping):
        return None
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(name, str) or not name or (known is not None and name not in known):
        return None
    if isinstance(args, str):
        try:
            json.loads(args)
        except ValueError:
            return None
        return ToolCall(name, args)
    if not isinstance(args, Mapping):
        return None
    return ToolCall(name, json.dumps(args, ensure_ascii=False))


def calls_from_json(text: str, known: Optional[set] = None) -> Optional[List[ToolCall]]:
    """Parse a JSON call (or list of calls); None if ``text`` is not exactly that."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    items = obj if isinstance(obj, list) else [obj]
    calls = [_call_from_obj(item, known) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return calls


def _partial(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ToolCallParser:
    """Streaming tool-call parser; see the module docstring for formats and events."""

    def __init__(self, fmt: str = "auto", known: Optional[Iterable[str]] = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown tool call format {fmt!r}; expected one of {FORMATS}")
        self.fmt = fmt
        self.known = set(known) if known is not None else None
        self._buf = ""
        self._mode = "start"
        self.calls: List[ToolCall] = []

    def feed(self, text: str) -> List[Event]:
        self._buf += text
        events: List[Event] = []
        while True:
            mode = self._mode
            if mode == "start":
                self._feed_start()
            elif mode == "text":
                events += self._feed_text()
            elif mode == "tag":
                events += self._feed_tag()
            elif mode == "plain" and self._buf:
                events.append(("content", self._buf))
                self._buf = ""
            if self._mode == mode:
                return events

    def flush(self) -> List[Event]:
        rest, self._buf = self._buf, ""
        if self._mode == "json" or (self._mode == "start" and rest.strip()):
            calls = calls_from_json(rest.strip(), self.known)
            return self._emit_calls(calls) if calls else [("content", rest)]
        if self._mode == "tag":
            return self._close_tag(rest, closed=False)
        return [("content", rest)] if rest else []

    def _feed_start(self) -> None:
        stripped = self._buf.lstrip()
        if not stripped:
            return
        if self.fmt in ("json", "auto") and stripped[0] in "{[":
            self._mode = "json"
        elif self.fmt == "json":
            self._mode = "plain"
        else:
            self._mode = "text"

    def _feed_text(self) -> List[Event]:
        pos = self._buf.find(HERMES_OPEN)
        if pos != -1:
            head, self._buf = self._buf[:pos], self._buf[pos + len(HERMES_OPEN):]
            self._mode = "tag"
            return [("content", head)] if head else []
        keep = _partial(self._buf, HERMES_OPEN)
        head = self._buf[: len(self._buf) - keep]
        self._buf = self._buf[len(self._buf) - keep:]
        return [("content", head)] if head else []

    def _feed_tag(self) -> List[Event]:
        pos = self._buf.find(HERMES_CLOSE)
        if pos == -1:
            return []
        body, self._buf = self._buf[:pos], self._buf[pos + len(HERMES_CLOSE):]
        self._mode = "text"
        return self._close_tag(body, closed=True)

    def _close_tag(self, body: str, closed: bool) -> List[Event]:
        calls = calls_from_json(body.strip(), self.known)
        if calls:
            return self._emit_calls(calls)
        return [("content", HERMES_OPEN + body + (HERMES_CLOSE if closed else ""))]

    def _emit_calls(self, calls: List[ToolCall]) -> List[Event]:
        self.calls.extend(calls)
        return [("tool_call", c) for c in calls]


def parse_tool_calls(text: str, fmt: str = "auto",
                     known: Optional[Iterable[str]] = None) -> Tuple[Optional[str], List[ToolCall]]:
    """Whole-text form: ``(content or None, calls)``; content is stripped when calls were found."""
    parser = ToolCallParser(fmt, known)
    events = parser.feed(text) + parser.flush()
    content = "".join(v for k, v in events if k == "content")
    calls = [v for k, v in events if k == "tool_call"]
    if calls:
        content = content.strip()
    return (content or None), calls
