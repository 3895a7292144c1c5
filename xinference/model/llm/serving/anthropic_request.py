"""Anthropic Messages requests as the OpenAI chat requests LLM engines take.

:func:`openai_chat_request` maps a ``/v1/messages`` (or ``count_tokens``) body:
``system`` becomes a system message; ``text`` blocks stay text, ``image`` blocks
become ``image_url`` parts with a data URI; an assistant turn's ``tool_use``
blocks become ``tool_calls`` and its ``thinking`` blocks ``reasoning_content``;
a user turn's ``tool_result`` blocks become ``tool`` messages ahead of the rest of
the turn. ``tools``, ``tool_choice``, ``thinking``, ``stop_sequences`` and
``output_config.format`` map to their OpenAI counterparts; other keys are not
passed on. Tool-use ids and OpenAI call ids convert both ways with
:func:`tool_use_id` and :func:`call_id`, so a history sent back keeps its pairs.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ....errors import InvalidRequestError

_ALPHABET = string.ascii_letters + string.digits
_SAMPLING = ("max_tokens", "temperature", "top_p", "top_k", "request_id")
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_DROPPED = ("redacted_thinking",)


def tool_use_id(call_id: Optional[str]) -> str:
    """An Anthropic ``toolu_`` id for an engine's call id (``call_X`` -> ``toolu_X``)."""
    if not call_id:
        return "toolu_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
    if call_id.startswith("toolu_"):
        return call_id
    return "toolu_" + (call_id[len("call_"):] if call_id.startswith("call_") else call_id)


def call_id(tool_id: str) -> str:
    """The engine-side id of an Anthropic tool-use id (``toolu_X`` -> ``call_X``)."""
    if isinstance(tool_id, str) and tool_id.startswith("toolu_"):
        return "call_" + tool_id[len("toolu_"):]
    return tool_id


def _bad(message: str, param: str = "messages") -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _blocks(content: Any, where: str) -> List[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, Mapping) for b in content):
        raise _bad(f"{where}.content must be a string or a list of content blocks")
    return content


def _text(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}: a text block needs a string 'text'")
    return text


def _image(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    source = block.get("source") if isinstance(block.get("source"), Mapping) else {}
    if source.get("type") == "base64" and source.get("data") and source.get("media_type"):
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source.get("type") == "url" and source.get("url"):
        url = source["url"]
    else:
        raise _bad(f"{where}: an image block needs a source of type 'base64' (media_type, "
                   "data) or 'url'")
    return {"type": "image_url", "image_url": {"url": url}}


def _unsupported(kind: Any, where: str, allowed: str) -> InvalidRequestError:
    return _bad(f"{where}: content blocks of type {kind!r} are not supported here; "
                f"use {allowed}")


def _tool_result(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str) or not block["tool_use_id"]:
        raise _bad(f"{where}: a tool_result block needs its 'tool_use_id'")
    content = block.get("content", "")
    texts = []
    for i, part in enumerate(_blocks(content, where)):
        if part.get("type") != "text":
            raise _unsupported(part.get("type"), f"{where}.content[{i}]", "text blocks")
        texts.append(_text(part, f"{where}.content[{i}]"))
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id(block["tool_use_id"]), "content": text}


def _parts_content(parts: List[Dict[str, Any]]) -> Any:
    """A single text part as a plain string, anything else as OpenAI content parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _user_turn(content: Any, where: str) -> List[Dict[str, Any]]:
    tools, parts = [], []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block.get("type"), f"{where}.content[{i}]"
        if kind == "tool_result":
            tools.append(_tool_result(block, at))
        elif kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image(block, at))
        else:
            raise _unsupported(kind, at, "text, image or tool_result blocks in a user turn")
    if parts or not tools:
        tools.append({"role": "user", "content": _parts_content(parts) if parts else ""})
    return tools


def _tool_call(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    name, input_ = block.get("name"), block.get("input", {})
    if not isinstance(name, str) or not name or not isinstance(block.get("id"), str):
        raise _bad(f"{where}: a tool_use block needs 'id' and 'name'")
    if not isinstance(input_, Mapping):
        raise _bad(f"{where}: a tool_use block's 'input' must be an object")
    return {"id": call_id(block["id"]), "type": "function",
            "function": {"name": name, "arguments": json.dumps(input_, ensure_ascii=False)}}


def _assistant_turn(content: Any, where: str) -> Dict[str, Any]:
    texts, calls, thinking = [], [], []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block.get("type"), f"{where}.content[{i}]"
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking") or ""))
        elif kind not in _DROPPED:
            raise _unsupported(kind, at, "text, tool_use or thinking blocks in an assistant turn")
    message: Dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
        message["content"] = message["content"] or None
    if any(thinking):
        message["reasoning_content"] = "".join(thinking)
    return message


def _messages(messages: Any) -> List[Dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list")
    out: List[Dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role == "user":
            out.extend(_user_turn(message.get("content"), where))
        elif role == "assistant":
            out.append(_assistant_turn(message.get("content"), where))
        else:
            raise _bad(f"{where}.role must be 'user' or 'assistant', got {role!r} (the system "
                       "prompt goes in the top-level 'system' field)")
    return out


def _system(system: Any) -> Optional[str]:
    if system is None or isinstance(system, str):
        return system or None
    texts = []
    for i, block in enumerate(_blocks(system, "system")):
        if block.get("type") != "text":
            raise _unsupported(block.get("type"), f"system[{i}]", "text blocks")
        texts.append(_text(block, f"system[{i}]"))
    return "\n".join(texts) or None


def _tools(tools: Any) -> List[Dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type") not in (None, "custom"):
            kind = tool.get("type") if isinstance(tool, Mapping) else tool
            raise _bad(f"tools[{i}]: tools of type {kind!r} are not supported; only client "
                       "tools ({name, description, input_schema}) are", "tools")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _bad(f"tools[{i}] needs a 'name'", "tools")
        function = {"name": tool["name"],
                    "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, tools: Optional[List[Dict[str, Any]]]) -> Tuple[Any, bool]:
    """The OpenAI ``tool_choice`` and whether parallel tool calls are allowed."""
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    parallel = not (isinstance(choice, Mapping) and choice.get("disable_parallel_tool_use"))
    if kind in _CHOICES:
        return _CHOICES[kind], parallel
    if kind == "tool" and isinstance(choice.get("name"), str) and choice["name"]:
        if choice["name"] not in [t["function"]["name"] for t in tools or ()]:
            raise _bad(f"tool_choice names the tool {choice['name']!r}, which is not in tools",
                       "tool_choice")
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _bad("tool_choice must be {type: auto | any | none} or {type: tool, name}",
               "tool_choice")


def _thinking(thinking: Any) -> Optional[bool]:
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise _bad("thinking.type must be enabled, disabled or adaptive", "thinking")
    return None if kind == "adaptive" else kind == "enabled"


def _response_format(config: Any) -> Optional[Dict[str, Any]]:
    form = config.get("format") if isinstance(config, Mapping) else None
    if form is None:
        return None
    if not isinstance(form, Mapping) or form.get("type") != "json_schema" \
            or not isinstance(form.get("schema"), Mapping):
        raise _bad("output_config.format must be {type: json_schema, schema}", "output_config")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": form["schema"]}}


def _stop(stop: Any) -> List[str]:
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _bad("stop_sequences must be a list of strings", "stop_sequences")
    return stop


def openai_chat_request(body: Mapping[str, Any]) -> Dict[str, Any]:
    """The OpenAI chat request for an Anthropic Messages body (raises InvalidRequestError)."""
    messages = _messages(body.get("messages"))
    system = _system(body.get("system"))
    request: Dict[str, Any] = {"messages": ([{"role": "system", "content": system}]
                                            if system else []) + messages}
    request.update({k: body[k] for k in _SAMPLING if body.get(k) is not None})
    if body.get("stop_sequences"):
        request["stop"] = _stop(body["stop_sequences"])
    if body.get("tools"):
        request["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        request["tool_choice"], parallel = _tool_choice(body["tool_choice"], request.get("tools"))
        if not parallel:
            request["parallel_tool_calls"] = False
    if body.get("thinking") is not None:
        enabled = _thinking(body["thinking"])
        if enabled is not None:
            request["chat_template_kwargs"] = {"enable_thinking": enabled}
    response_format = _response_format(body.get("output_config"))
    if response_format:
        request["response_format"] = response_format
    return request
