"""Per-request sampling parameters, translated from an OpenAI request body.

:func:`sampling_params_from_request` reads the OpenAI fields (and the few
extras Xinference clients send, such as ``top_k`` and ``repetition_penalty``),
checks their ranges and returns a :class:`SamplingParams`. Bad values raise
:class:`~xinference.errors.InvalidRequestError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional

from ...errors import InvalidRequestError

MAX_N = 16
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples. ``temperature == 0`` means greedy decoding.

    ``max_tokens`` is what the client asked for (``None``: up to the context);
    engines turn it into a concrete budget with :meth:`token_budget`.
    """

    max_tokens: Optional[int] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: Optional[int] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: List[str] = field(default_factory=list)
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    logit_bias: Dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    stop_token_ids: List[int] = field(default_factory=list)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1 or self.top_p == 0.0

    @property
    def needs_penalties(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty
                    or self.repetition_penalty != 1.0)

    def for_choice(self, index: int) -> "SamplingParams":
        """The params of choice ``index`` of ``n``: seeded choices get ``seed + index``."""
        if self.seed is None or index == 0:
            return self
        return replace(self, seed=self.seed + index)

    def token_budget(self, prompt_tokens: int, context_length: Optional[int],
                     cap: Optional[int] = None) -> int:
        """How many tokens may be generated: the request's ask, the context left and ``cap``.

        Raises :class:`InvalidRequestError` when the prompt leaves no room at all.
        """
        limits = [x for x in (self.max_tokens, cap) if x is not None]
        if context_length:
            room = context_length - prompt_tokens
            if room <= 0:
                raise InvalidRequestError(
                    f"The prompt is {prompt_tokens} tokens long, which fills the model's "
                    f"context of {context_length} tokens; shorten the messages or the prompt",
                    param="messages")
            limits.append(room)
        return max(1, min(limits)) if limits else 1 << 30


def _number(request: Mapping[str, Any], name: str, lo: float, hi: float,
            default: Optional[float]) -> Optional[float]:
    value = request.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{name} must be a number, got {value!r}", param=name)
    if not lo <= value <= hi:
        raise InvalidRequestError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}",
                                  param=name)
    return float(value)


def _integer(request: Mapping[str, Any], name: str, lo: int,
             hi: Optional[int] = None) -> Optional[int]:
    value = request.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}", param=name)
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise InvalidRequestError(f"{name} must be {bound}, got {value}", param=name)
    return value


def parse_stop(value: Any) -> List[str]:
    """``stop`` as a list of non-empty strings (OpenAI accepts a string or a list)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise InvalidRequestError("stop must be a string or a list of strings", param="stop")
    return [s for s in value if s]


def _logit_bias(value: Any) -> Dict[int, float]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequestError("logit_bias must map token ids to numbers", param="logit_bias")
    out = {}
    for key, bias in value.items():
        try:
            token, bias = int(key), float(bias)
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"logit_bias entry {key!r}: {bias!r} is not token id -> number",
                param="logit_bias") from None
        if not -100 <= bias <= 100:
            raise InvalidRequestError("logit_bias values must be between -100 and 100",
                                      param="logit_bias")
        out[token] = bias
    return out


def _logprobs(request: Mapping[str, Any], kind: str) -> tuple:
    raw = request.get("logprobs")
    if kind == "completion":
        count = _integer(request, "logprobs", 0, MAX_COMPLETION_LOGPROBS)
        return (count is not None, count or 0)
    if raw is not None and not isinstance(raw, bool):
        raise InvalidRequestError("logprobs must be true or false for chat completions",
                                  param="logprobs")
    top = _integer(request, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
    if top and not raw:
        raise InvalidRequestError("top_logprobs needs logprobs set to true", param="top_logprobs")
    return (bool(raw), top)


def sampling_params_from_request(request: Mapping[str, Any], kind: str = "chat",
                                 defaults: Optional[Mapping[str, Any]] = None,
                                 max_tokens_cap: Optional[int] = None) -> SamplingParams:
    """Translate an OpenAI chat (``kind="chat"``) or completion request to :class:`SamplingParams`.

    ``defaults`` holds the model's own recommended ``temperature``/``top_p``/``top_k``
    (e.g. from its generation config), used when the request leaves them out.
    ``max_tokens_cap`` (``XINFERENCE_MAX_TOKENS``) bounds ``max_tokens``.
    """
    defaults = defaults or {}
    max_tokens = _integer(request, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(request, "max_tokens", 1)
    if max_tokens_cap is not None:
        max_tokens = min(max_tokens or max_tokens_cap, max_tokens_cap)
    logprobs, top_logprobs = _logprobs(request, kind)
    seed = _integer(request, "seed", -(1 << 63), (1 << 63) - 1)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_number(request, "temperature", 0.0, 2.0, defaults.get("temperature", 1.0)),
        top_p=_number(request, "top_p", 0.0, 1.0, defaults.get("top_p", 1.0)),
        top_k=max(0, int(_number(request, "top_k", -1, 1 << 20, defaults.get("top_k", 0)) or 0)),
        seed=seed,
        presence_penalty=_number(request, "presence_penalty", -2.0, 2.0, 0.0),
        frequency_penalty=_number(request, "frequency_penalty", -2.0, 2.0, 0.0),
        repetition_penalty=_number(request, "repetition_penalty", 0.01, 10.0, 1.0),
        stop=parse_stop(request.get("stop")),
        n=_integer(request, "n", 1, MAX_N) or 1,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        logit_bias=_logit_bias(request.get("logit_bias")),
        ignore_eos=bool(request.get("ignore_eos", False)),
        stop_token_ids=_token_ids(request.get("stop_token_ids")),
    )


def _token_ids(value: Any) -> List[int]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InvalidRequestError("stop_token_ids must be a list of token ids",
                                  param="stop_token_ids")
    return list(value)
