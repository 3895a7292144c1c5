"""OpenAI Responses requests as the OpenAI chat requests every LLM engine takes.

:func:`chat_request` builds the chat request of one turn: ``instructions`` as the
system message, then the earlier turns (``history``: chat messages the gateway
resolved from ``previous_response_id``), then this turn's ``input``.
:func:`items_to_messages` turns Responses items (input items, or the output items
of an earlier response) into chat messages; the gateway uses it to keep the
conversation of a stored response. Pure: no engine, no HTTP. Bad input raises
:class:`~xinference.errors.InvalidRequestError` naming the field.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ....errors import InvalidRequestError

MESSAGE_ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
EFFORTS_FOR_TEMPLATES = ("low", "medium", "high")
UNSUPPORTED_FIELDS = {
    "background": "background mode",
    "conversation": "conversations (use previous_response_id)",
    "prompt": "stored prompt templates",
}
PASS_THROUGH = ("request_id", "temperature", "top_p", "parallel_tool_calls", "user", "top_k",
                "seed", "stop", "presence_penalty", "frequency_penalty", "repetition_penalty",
                "ignore_eos", "stop_token_ids")


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


# ----------------------------------------------------------------------------- items
def _part_text(part: Any, where: str) -> Optional[str]:
    """The text of a content part, None for an image; unsupported parts raise."""
    if isinstance(part, str):
        return part
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind in TEXT_PARTS:
        return str(part.get("text") or "")
    if kind == "refusal":
        return str(part.get("refusal") or "")
    if kind == "input_image":
        return None
    if kind == "input_file":
        raise _bad(f"{where}: input_file parts are not supported; send the file's text "
                   "as input_text", "input")
    raise _bad(f"{where}: content parts of type {kind!r} are not supported "
               "(use input_text, output_text or input_image)", "input")


def _image_part(part: Mapping[str, Any], where: str) -> Dict[str, Any]:
    url = part.get("image_url")
    if isinstance(url, Mapping):
        url = url.get("url")
    if not url:
        raise _bad(f"{where}: input_image needs image_url (file_id is not supported)", "input")
    image: Dict[str, Any] = {"url": url}
    if part.get("detail"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _content(content: Any, where: str) -> Any:
    """Chat content of a Responses message: a string, or parts when there are images."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content parts", "input")
    texts: List[str] = []
    parts: List[Dict[str, Any]] = []
    for j, part in enumerate(content):
        text = _part_text(part, f"{where}.content[{j}]")
        if text is None:
            parts.append(_image_part(part, f"{where}.content[{j}]"))
        else:
            texts.append(text)
            parts.append({"type": "text", "text": text})
    if len(parts) == len(texts):
        return "".join(texts)
    return parts


def _output_text(output: Any, where: str) -> str:
    """A function call's output as the tool message's text."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = [_part_text(p, f"{where}.output[{j}]") for j, p in enumerate(output)]
        return "".join(t for t in texts if t is not None)
    raise _bad(f"{where}.output must be a string or a list of content parts", "input")


def _reasoning_text(item: Mapping[str, Any]) -> str:
    pieces = item.get("content") or item.get("summary") or []
    return "".join(str(p.get("text") or "") for p in pieces if isinstance(p, Mapping))


class _Conversation:
    """Chat messages being built from items, in order."""

    def __init__(self) -> None:
        self.messages: List[Dict[str, Any]] = []
        self.reasoning: List[str] = []

    def _assistant(self, open_turn: bool) -> Dict[str, Any]:
        last = self.messages[-1] if self.messages else None
        if open_turn and last is not None and last["role"] == "assistant":
            return last
        message: Dict[str, Any] = {"role": "assistant", "content": ""}
        self.messages.append(message)
        return message

    def _take_reasoning(self, message: Dict[str, Any]) -> None:
        if self.reasoning:
            message["reasoning_content"] = message.get("reasoning_content", "") + "".join(
                self.reasoning)
            self.reasoning = []

    def message(self, item: Mapping[str, Any], where: str) -> None:
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise _bad(f"{where}.role must be one of {', '.join(MESSAGE_ROLES)}; got {role!r}",
                       "input")
        content = _content(item.get("content"), where)
        if role == "assistant":
            message = self._assistant(open_turn=False)
            message["content"] = content if isinstance(content, str) else "".join(
                p.get("text", "") for p in content)
            self._take_reasoning(message)
        else:
            self.messages.append({"role": role, "content": content})

    def function_call(self, item: Mapping[str, Any], where: str) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not call_id or not name:
            raise _bad(f"{where}: a function_call item needs call_id and name", "input")
        message = self._assistant(open_turn=True)
        self._take_reasoning(message)
        args = item.get("arguments")
        if not isinstance(args, str):
            args = json.dumps(args if args is not None else {}, ensure_ascii=False)
        message.setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})

    def function_call_output(self, item: Mapping[str, Any], where: str) -> None:
        if not item.get("call_id"):
            raise _bad(f"{where}: a function_call_output item needs call_id", "input")
        self.messages.append({"role": "tool", "tool_call_id": item["call_id"],
                              "content": _output_text(item.get("output"), where)})

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, Mapping):
            raise _bad(f"{where} must be an object", "input")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            self.message(item, where)
        elif kind == "function_call":
            self.function_call(item, where)
        elif kind == "function_call_output":
            self.function_call_output(item, where)
        elif kind == "reasoning":
            self.reasoning.append(_reasoning_text(item))
        else:
            raise _bad(f"{where}: items of type {kind!r} are not supported (supported: "
                       "message, function_call, function_call_output, reasoning)", "input")


def items_to_messages(items: Sequence[Any], where: str = "input") -> List[Dict[str, Any]]:
    """Chat messages of Responses items (input items or an earlier response's output).

    Consecutive ``function_call`` items become one assistant message's ``tool_calls``
    (joined to the assistant text before them); a ``reasoning`` item becomes the
    ``reasoning_content`` of the assistant message that follows it, or is dropped.
    """
    conversation = _Conversation()
    for i, item in enumerate(items):
        conversation.add(item, f"{where}[{i}]")
    return conversation.messages


def input_messages(body: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """This turn's chat messages: ``input`` as a user message or converted items."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return items_to_messages(value)
    if value is None:
        return []
    raise _bad("input must be a string or a list of items", "input")


# ------------------------------------------------------------------------- options
def _tools(tools: Any) -> Optional[List[Dict[str, Any]]]:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise _bad("tools must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind != "function":
            raise _bad(f"tools[{i}]: tools of type {kind!r} are not supported; only function "
                       "tools are (built-in tools such as web_search, file_search, "
                       "code_interpreter run on OpenAI's servers)", "tools")
        if not tool.get("name"):
            raise _bad(f"tools[{i}]: a function tool needs a name", "tools")
        fn = {"name": tool["name"],
              "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            fn["description"] = tool["description"]
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn})
    return out


def _allowed(choice: Mapping[str, Any], tools: Optional[List[Dict[str, Any]]]):
    names = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, Mapping)}
    kept = [t for t in tools or [] if t["function"]["name"] in names]
    mode = choice.get("mode", "auto")
    if mode not in ("auto", "required"):
        raise _bad("tool_choice.mode must be auto or required", "tool_choice")
    return kept or None, (mode if kept else "none")


def _tool_choice(choice: Any, tools: Optional[List[Dict[str, Any]]]):
    """The chat ``tool_choice`` (and the tools left) for a Responses ``tool_choice``."""
    if choice is None or choice in ("auto", "none", "required"):
        return tools, choice
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "function" and choice.get("name"):
        return tools, {"type": "function", "function": {"name": choice["name"]}}
    if kind == "allowed_tools":
        return _allowed(choice, tools)
    raise _bad(f"tool_choice {choice!r} is not supported: use auto, none, required, "
               "{type: function, name} or {type: allowed_tools, mode, tools}", "tool_choice")


def _response_format(text: Any) -> Optional[Dict[str, Any]]:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, Mapping) else None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else fmt
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), Mapping):
            raise _bad("text.format.schema must be a JSON schema object", "text")
        spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"],
                "strict": fmt.get("strict")}
        if fmt.get("description"):
            spec["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": spec}
    raise _bad(f"text.format.type must be text, json_object or json_schema; got {kind!r}",
               "text")


def _template_kwargs(body: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """``reasoning.effort`` as template variables: ``none`` turns thinking off, any other
    effort on; the request's own ``chat_template_kwargs`` win."""
    reasoning = body.get("reasoning")
    kwargs: Dict[str, Any] = {}
    effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
    if effort is not None:
        kwargs["enable_thinking"] = effort != "none"
        if effort in EFFORTS_FOR_TEMPLATES:
            kwargs["reasoning_effort"] = effort
    extra = body.get("chat_template_kwargs")
    if isinstance(extra, Mapping):
        kwargs.update(extra)
    elif extra is not None:
        raise _bad("chat_template_kwargs must be an object", "chat_template_kwargs")
    return kwargs or None


def _max_tokens(body: Mapping[str, Any]) -> Optional[int]:
    limits = [body[k] for k in ("max_output_tokens", "max_tokens") if body.get(k) is not None]
    return min(limits) if limits else None


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for key, what in UNSUPPORTED_FIELDS.items():
        if body.get(key):
            raise _bad(f"{key}: {what} is not supported by this server", key)


def chat_request(body: Mapping[str, Any],
                 history: Optional[Sequence[Mapping[str, Any]]] = None) -> Dict[str, Any]:
    """The OpenAI chat request of a Responses request (``history``: earlier turns)."""
    _refuse_unsupported(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("instructions must be a string", "instructions")
    messages: List[Dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(dict(m) for m in history or ())
    messages.extend(input_messages(body))
    if not messages:
        raise _bad("input is empty: send a string or at least one item", "input")
    out: Dict[str, Any] = {"messages": messages}
    out.update((k, body[k]) for k in PASS_THROUGH if body.get(k) is not None)
    tools, choice = _tool_choice(body.get("tool_choice"), _tools(body.get("tools")))
    optional = {"tools": tools, "tool_choice": choice, "max_tokens": _max_tokens(body),
                "response_format": _response_format(body.get("text")),
                "chat_template_kwargs": _template_kwargs(body)}
    out.update((k, v) for k, v in optional.items() if v is not None)
    return out
