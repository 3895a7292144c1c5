"""Chat prompts rendered from a model's Jinja chat template.

Templates come from the model family (``chat_template`` in its JSON, or the
``.jinja`` file beside it) or from the tokenizer. They are rendered in a
sandbox with the conventions Hugging Face templates rely on: ``trim_blocks``
and ``lstrip_blocks``, a ``tojson`` filter that keeps key order and non-ASCII
text, ``raise_exception`` and ``strftime_now``; and with ``tools`` and any
``chat_template_kwargs`` (``enable_thinking``, ...) as variables.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ...errors import InvalidRequestError, XinferenceError

ROLES = ("system", "user", "assistant", "tool", "function")
_RESERVED = ("messages", "tools", "add_generation_prompt")


def _raise_exception(message: str):
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
            separators=None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_template(source: str):
    """Compile ``source`` once (cached); raises ``jinja2.TemplateSyntaxError`` if it is broken."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def _text_of(content: Any, where: str, images: bool = False) -> Any:
    """Message content as text; with ``images``, content holding images stays a list of
    ``{"type": "text", "text"}`` and ``{"type": "image"}`` parts, as vision templates
    expect."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts, parts = [], []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
                parts.append({"type": "text", "text": texts[-1]})
            elif kind == "image_url" and images:
                parts.append({"type": "image"})
            else:
                what = ("image parts are not read by this engine" if kind == "image_url" else
                        f"content parts of type {kind!r} are not supported by this model")
                raise InvalidRequestError(f"{where}: {what}; send text only", param="messages")
        return parts if len(parts) > len(texts) else "\n".join(texts)
    raise InvalidRequestError(f"{where}: content must be a string or a list of parts",
                              param="messages")


def _tool_calls(calls: Any, where: str) -> List[Dict[str, Any]]:
    if not isinstance(calls, list):
        raise InvalidRequestError(f"{where}: tool_calls must be a list", param="messages")
    out = []
    for call in calls:
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or not fn.get("name"):
            raise InvalidRequestError(f"{where}: each tool call needs function.name",
                                      param="messages")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                pass
        out.append({"id": call.get("id"), "type": "function",
                    "function": {"name": fn["name"], "arguments": args}})
    return out


def normalize_messages(messages: Any, images: bool = False) -> List[Dict[str, Any]]:
    """OpenAI messages -> what templates expect: text content (image parts kept as
    ``{"type": "image"}`` when ``images``), ``developer`` as ``system``, tool-call
    arguments as mappings. Raises :class:`InvalidRequestError` on bad input."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list", param="messages")
    out = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise InvalidRequestError(f"{where} must be an object", param="messages")
        role = msg.get("role")
        role = "system" if role == "developer" else role
        if role not in ROLES:
            raise InvalidRequestError(f"{where}.role must be one of system, developer, user, "
                                      f"assistant, tool; got {role!r}", param="messages")
        item = {k: v for k, v in msg.items() if k not in ("role", "content", "tool_calls")}
        item["role"] = role
        item["content"] = _text_of(msg.get("content"), where, images)
        if msg.get("tool_calls"):
            item["tool_calls"] = _tool_calls(msg["tool_calls"], where)
        out.append(item)
    return out


def render_chat_template(template: str, messages: Sequence[Mapping[str, Any]],
                         tools: Optional[Sequence[Mapping[str, Any]]] = None,
                         add_generation_prompt: bool = True,
                         special_tokens: Optional[Mapping[str, Any]] = None,
                         template_kwargs: Optional[Mapping[str, Any]] = None,
                         images: bool = False) -> str:
    """Render ``template`` for OpenAI ``messages`` (normalized here) and return the prompt text.

    ``special_tokens`` gives ``bos_token``/``eos_token``/...; ``template_kwargs`` are
    extra variables such as ``enable_thinking``; ``images``: image parts reach the
    template as ``{"type": "image"}`` (else they are a 400). A template that rejects the
    conversation (``raise_exception``) gives :class:`InvalidRequestError`.
    """
    import jinja2

    if template_kwargs is not None and not isinstance(template_kwargs, Mapping):
        raise InvalidRequestError("chat_template_kwargs must be an object",
                                  param="chat_template_kwargs")
    variables: Dict[str, Any] = dict(special_tokens or {})
    for key, value in (template_kwargs or {}).items():
        if key in _RESERVED:
            raise InvalidRequestError(f"chat_template_kwargs cannot set {key!r}",
                                      param="chat_template_kwargs")
        variables[key] = value
    variables.update(messages=normalize_messages(list(messages), images),
                     tools=list(tools) if tools else None,
                     add_generation_prompt=add_generation_prompt)
    try:
        compiled = compile_template(template)
    except jinja2.TemplateSyntaxError as exc:
        raise XinferenceError(f"The model's chat template is broken: {exc}") from None
    try:
        return compiled.render(**variables)
    except jinja2.TemplateError as exc:
        raise InvalidRequestError(f"The chat template rejected the messages: {exc}",
                                  param="messages") from None


def template_kwargs(enable_thinking: Optional[bool],
                    request: Mapping[str, Any]) -> Dict[str, Any]:
    """Extra template variables: the launch-time ``enable_thinking``, then the request's
    ``chat_template_kwargs`` (which win)."""
    kwargs: Dict[str, Any] = {}
    if enable_thinking is not None:
        kwargs["enable_thinking"] = enable_thinking
    extra = request.get("chat_template_kwargs") or {}
    if not isinstance(extra, dict):
        raise InvalidRequestError("chat_template_kwargs must be an object",
                                  param="chat_template_kwargs")
    kwargs.update(extra)
    return kwargs


def special_tokens(tokenizer: Any) -> Dict[str, str]:
    """The tokenizer's special tokens as the chat templates name them ("" when absent)."""
    return {name: getattr(tokenizer, name, None) or ""
            for name in ("bos_token", "eos_token", "pad_token", "unk_token")}


def choose_chat_template(family: Mapping[str, Any],
                         tokenizer_template: Optional[str]) -> Optional[str]:
    """The family's template if it has one, else the tokenizer's (None: no chat template)."""
    template = family.get("chat_template")
    if isinstance(template, str) and template.strip():
        return template
    if isinstance(tokenizer_template, Mapping):
        tokenizer_template = tokenizer_template.get("default")
    return tokenizer_template or None
