"""Image request parameters: parsed, bounded and put in one canonical shape.

Standard library only: the gateway's routes check a request with
:func:`parse_request` before it travels, and the engine reads the same canonical
dict (it calls :func:`parse_request` again, so a script that drives an engine
directly gets the same checks). Every bad value is an
:class:`~xinference.errors.InvalidRequestError` naming the parameter.

Canonical keys: ``prompt``, ``negative_prompt``, ``n``, ``width``/``height`` (None: the
model's own size, or the input image's), ``num_inference_steps``, ``guidance_scale``,
``strength``, ``seed`` (None: random), plus ``image``/``mask`` (bytes) for the
image-to-image and inpainting operations, and ``request_id``/``model`` as sent.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from ...errors import InvalidRequestError

MAX_N = 10
MIN_SIDE = 8
MAX_SIDE = 2048
SIDE_MULTIPLE = 8
MAX_STEPS = 150
MAX_GUIDANCE = 50.0
MAX_PROMPT_CHARS = 32_000
MAX_SEED = 2**32 - 1
RESPONSE_FORMATS = ("b64_json", "url")

_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX*]\s*(\d{1,6})\s*$")
# Parameters a body may carry, beside the ones parsed below: identification only.
_PASSED = ("model", "request_id", "user", "response_format", "image", "mask")
_ALIASES = {"steps": "num_inference_steps"}
_KNOWN = ("prompt", "negative_prompt", "n", "size", "num_inference_steps", "guidance_scale",
          "strength", "seed", "width", "height", "kwargs")


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _number(raw: Mapping[str, Any], key: str, kind: type, low: float, high: float
            ) -> Optional[Any]:
    """``raw[key]`` as ``kind`` within [low, high]; form fields arrive as strings."""
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _bad(f"`{key}` must be a number, got {value!r}", key)
    try:
        number = kind(value)
        if kind is int and isinstance(value, float) and value != number:
            raise ValueError(value)
    except (TypeError, ValueError):
        raise _bad(f"`{key}` must be {'a whole number' if kind is int else 'a number'}, "
                   f"got {value!r}", key) from None
    if not low <= number <= high:
        raise _bad(f"`{key}` is {number}; it must be between {low} and {high}", key)
    return number


def parse_size(value: Any) -> Tuple[Optional[int], Optional[int]]:
    """``"WxH"`` or ``"W*H"`` as ``(width, height)``, each a multiple of 8 in [8, 2048];
    None, "" and "auto" leave the size to the model (or the input image)."""
    if value is None or str(value).strip().lower() in ("", "auto", "none"):
        return None, None
    match = _SIZE.match(str(value))
    if not match:
        raise _bad(f"`size` is {value!r}; give it as WIDTHxHEIGHT, e.g. \"512x512\"", "size")
    width, height = int(match.group(1)), int(match.group(2))
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % SIDE_MULTIPLE:
            raise _bad(f"`size` is {value!r}; each side must be a multiple of {SIDE_MULTIPLE} "
                       f"between {MIN_SIDE} and {MAX_SIDE}", "size")
    return width, height


def _merged(raw: Mapping[str, Any]) -> Dict[str, Any]:
    """The body with Xinference's ``kwargs`` (a JSON object, or its text) merged in and
    aliases (``steps``) renamed; unknown parameters are refused, not ignored."""
    body = dict(raw)
    extra = body.pop("kwargs", None)
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else None
        except ValueError:
            raise _bad("`kwargs` must be a JSON object", "kwargs") from None
    if extra is not None and not isinstance(extra, dict):
        raise _bad("`kwargs` must be a JSON object", "kwargs")
    for key, value in (extra or {}).items():
        if body.get(key) is None:
            body[key] = value
    for alias, name in _ALIASES.items():
        if alias in body:
            value = body.pop(alias)
            if body.get(name) is None:
                body[name] = value
    unknown = sorted(k for k, v in body.items()
                     if k not in _KNOWN and k not in _PASSED and v is not None)
    if unknown:
        raise _bad(f"Unknown image parameter(s): {', '.join(unknown)}; this server understands "
                   f"{', '.join(_KNOWN[:-1])} and steps", unknown[0])
    return body


def _prompt(body: Mapping[str, Any], key: str, required: bool) -> Optional[str]:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise _bad(f"`{key}` is required", key)
        return "" if key == "prompt" else None
    if not isinstance(value, str):
        raise _bad(f"`{key}` must be a string", key)
    if len(value) > MAX_PROMPT_CHARS:
        raise _bad(f"`{key}` has {len(value)} characters; the limit is {MAX_PROMPT_CHARS}", key)
    return value


def parse_request(raw: Mapping[str, Any], prompt_required: bool = True) -> Dict[str, Any]:
    """The canonical request for an image operation (see the module docstring)."""
    body = _merged(raw)
    width, height = parse_size(body.get("size"))
    if body.get("width") is not None or body.get("height") is not None:
        if width is not None:
            raise _bad("give either `size` or `width` and `height`, not both", "size")
        width = _number(body, "width", int, MIN_SIDE, MAX_SIDE)
        height = _number(body, "height", int, MIN_SIDE, MAX_SIDE)
        if width is None or height is None:
            raise _bad("`width` and `height` go together", "width" if width is None else "height")
        parse_size(f"{width}x{height}")
    out = {k: body[k] for k in ("model", "request_id", "image", "mask") if k in body}
    out.update(
        prompt=_prompt(body, "prompt", prompt_required),
        negative_prompt=_prompt(body, "negative_prompt", False),
        n=_number(body, "n", int, 1, MAX_N) or 1,
        width=width, height=height,
        num_inference_steps=_number(body, "num_inference_steps", int, 1, MAX_STEPS),
        guidance_scale=_number(body, "guidance_scale", float, 0.0, MAX_GUIDANCE),
        strength=_number(body, "strength", float, 0.0, 1.0),
        seed=_number(body, "seed", int, 0, MAX_SEED),
    )
    if out["strength"] is not None and out["strength"] <= 0:
        raise _bad("`strength` must be above 0 (and at most 1)", "strength")
    return out


def response_format(raw: Mapping[str, Any]) -> str:
    """``b64_json`` or ``url`` (the default, as in OpenAI's and Xinference's APIs)."""
    value = raw.get("response_format") or "url"
    if value not in RESPONSE_FORMATS:
        raise _bad(f"`response_format` is {value!r}; use b64_json or url", "response_format")
    return value

