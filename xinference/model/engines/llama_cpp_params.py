"""xllamacpp ``CommonParams`` for a llama.cpp replica, from its launch options.

Every launch option naming a ``CommonParams`` field (``-`` read as ``_``, dotted paths for
nested ones) is set, coerced to its type; slots, context and threads get defaults sized for a
shared CPU box. ``mmproj`` (or Xinference's ``multimodal_projector``) is the multimodal
projector GGUF of a vision model: a path, or a file name beside the model's GGUF. Options
that would open llama.cpp's own HTTP server to others are managed here and refused.
"""

from __future__ import annotations

import enum
import json
import os
import secrets
from typing import Any, Dict

from ...errors import InvalidRequestError
from .base import EngineConfig

DEFAULT_CTX, MIN_SLOT_CTX, DEFAULT_SLOTS = 4096, 1024, 4
_MANAGED = ("hostnames", "port", "api_keys", "model")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def default_threads() -> int:
    """Half the usable CPUs, 1 to 4: the other half stays for the gateway and other models.

    llama.cpp's threads wait on one another at every step, so a thread that shares its core
    with a busy process stalls all of them (seen here: 2 threads on a loaded 2-core box ran
    a 16-token answer in 5-37 s). ``n_threads`` overrides it.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cpus or 1) // 2))


def _coerce(name: str, current: Any, raw: Any) -> Any:
    """``raw`` (often a CLI string) converted to the type of the current value."""
    if isinstance(current, bool):
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"expected true or false, got {raw!r}")
    if isinstance(current, enum.Enum):
        return _as_enum(type(current), raw)
    if isinstance(current, int):
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(raw.strip()) if isinstance(raw, str) else int(raw)
    if isinstance(current, (float, str)):
        return type(current)(raw)
    if isinstance(current, (list, set)):
        if isinstance(raw, str):
            raw = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
        kind = type(next(iter(current))) if current else str
        return type(current)(kind(x) if kind in (int, float, str) else x for x in raw)
    if isinstance(current, dict):
        value = json.loads(raw) if isinstance(raw, str) else dict(raw)
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
    raise InvalidRequestError(
        f"llama.cpp option {name!r} is a group of settings: set one of its fields "
        f"with a dotted name such as '{name}.<field>'", param=name)


def _as_enum(kind: type, raw: Any) -> Any:
    text = str(raw).strip().lower()
    if text.lstrip("-").isdigit():
        return kind(int(text))
    found = [m for m in kind if m.name.lower() == text or m.name.lower().endswith("_" + text)]
    if len(found) != 1:
        names = ", ".join(m.name for m in kind)
        raise ValueError(f"{raw!r} is not one of {names}")
    return found[0]


def _set_option(params: Any, key: str, value: Any) -> None:
    """Apply ``key`` (a CommonParams attribute or a dotted path) with its type coerced."""
    path = key.replace("-", "_").split(".")
    if path[0] in _MANAGED:
        raise InvalidRequestError(
            f"llama.cpp option {key!r} is set by xinference and cannot be changed", param=key)
    target = params
    for depth, part in enumerate(path):
        if part.startswith("_") or not hasattr(target, part) or callable(getattr(target, part)):
            raise InvalidRequestError(
                f"Unknown llama.cpp option {key!r}: no such xllamacpp.CommonParams field (use "
                "its names, e.g. n_gpu_layers, or dotted ones like sampling.temp)", param=key)
        if depth < len(path) - 1:
            target = getattr(target, part)
    try:
        setattr(target, path[-1], _coerce(key, getattr(target, path[-1]), value))
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise InvalidRequestError(f"Bad value {value!r} for llama.cpp option {key!r}: {exc}",
                                  param=key) from None


def _int_option(options: Dict[str, Any], key: str, default: int, low: int) -> int:
    raw = options.pop(key, default)
    try:
        value = _coerce(key, 0, raw)
        if value < low:
            raise ValueError(f"it must be at least {low}")
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"Bad value {raw!r} for option {key!r}: {exc}",
                                  param=key) from None
    return value


def projector_path(options: Dict[str, Any], model_path: str) -> str:
    """The ``mmproj`` / ``multimodal_projector`` option as an existing file's path ("" if
    neither is given); relative names are looked up beside the model's GGUF."""
    given = [options.pop(k) for k in ("mmproj", "multimodal_projector") if k in options]
    if len(given) > 1:
        raise InvalidRequestError("give the projector once: mmproj or multimodal_projector",
                                  param="mmproj")
    if not given or given[0] in (None, ""):
        return ""
    path = os.path.expanduser(str(given[0]))
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(model_path) or ".", path)
    if not os.path.isfile(path):
        raise InvalidRequestError(f"the multimodal projector {given[0]!r} is not a file "
                                  f"(looked for {path})", param="mmproj")
    return path


def build_params(config: EngineConfig) -> Any:
    """The ``xllamacpp.CommonParams`` for ``config`` (no model is loaded).

    ``n_ctx`` given as an option is used as is (llama.cpp splits it evenly over
    the slots). Otherwise it is the model's context length capped to 4096,
    raised so that each of the ``n_parallel`` slots gets at least 1024 tokens.
    """
    import xllamacpp

    options = {k.replace("-", "_"): v for k, v in (config.options or {}).items()}
    slots = _int_option(options, "n_parallel", DEFAULT_SLOTS, 1)
    threads = _int_option(options, "n_threads", default_threads(), 1)
    if "n_ctx" in options:
        n_ctx = _int_option(options, "n_ctx", DEFAULT_CTX, 0)
    else:
        n_ctx = max(min(config.context_length or DEFAULT_CTX, DEFAULT_CTX), slots * MIN_SLOT_CTX)
    params = xllamacpp.CommonParams()
    params.model.path = config.model_path
    params.mmproj.path = projector_path(options, config.model_path)
    params.n_ctx, params.n_parallel = n_ctx, slots
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.warmup, params.use_jinja, params.endpoint_metrics, params.ui = False, True, True, False
    params.n_threads_http, params.verbosity = 1, 2
    if config.enable_thinking is not None:
        thinking = json.dumps(bool(config.enable_thinking))
        params.default_template_kwargs = {"enable_thinking": thinking}
    for key, value in options.items():
        _set_option(params, key, value)
    # llama.cpp also serves HTTP: loopback only, random port, and a key nobody knows.
    params.hostnames, params.port = ["127.0.0.1"], 0
    params.api_keys = [secrets.token_urlsafe(24)]
    return params
