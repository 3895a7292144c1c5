"""Checks of the fields a family definition has because of its model type.

Each model type names its check in :mod:`xinference.model_types` (``family_check``);
:func:`~xinference.model.custom.parse_custom_family` runs it on every custom
family, after the fields all types share (name, specs, languages) are checked.
A check takes the family as its JSON object and raises
:class:`~xinference.errors.InvalidRequestError` whose ``param`` names the bad field.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from ..errors import InvalidRequestError
from .llm.tool_calls import FORMATS as TOOL_CALL_FORMATS

LLM_ABILITIES = ("generate", "chat", "tools", "reasoning", "hybrid", "vision", "audio", "omni")
EMBEDDING_ABILITIES = ("embed",)
RERANK_ABILITIES = ("rerank",)


def bad_field(message: str, field: str) -> InvalidRequestError:
    """The 400 for a bad field of a family definition."""
    return InvalidRequestError(message, param=field)


def check_str_list(family: Mapping[str, Any], key: str) -> None:
    """``family[key]``, when present, is a list of strings."""
    value = family.get(key)
    if value is not None and (not isinstance(value, list)
                              or not all(isinstance(v, str) for v in value)):
        raise bad_field(f"`{key}` must be a list of strings", key)


def check_optional_str(family: Mapping[str, Any], key: str) -> None:
    """``family[key]``, when present, is a string."""
    if family.get(key) is not None and not isinstance(family[key], str):
        raise bad_field(f"`{key}` must be a string", key)


def check_positive_int(family: Mapping[str, Any], key: str) -> None:
    """``family[key]``, when present, is an integer of at least 1."""
    value = family.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise bad_field(f"`{key}` must be a positive integer, got {value!r}", key)


def check_one_of(family: Mapping[str, Any], key: str, allowed: Collection[str]) -> None:
    """``family[key]``, when present, is one of ``allowed``."""
    check_optional_str(family, key)
    value = family.get(key)
    if value is not None and value not in allowed:
        raise bad_field(f"`{key}` is {value!r}; expected one of {', '.join(allowed)}", key)


def check_abilities(family: Mapping[str, Any], allowed: Collection[str]) -> None:
    """``model_ability`` lists only abilities the type knows."""
    check_str_list(family, "model_ability")
    unknown = [a for a in family.get("model_ability") or [] if a not in allowed]
    if unknown:
        raise bad_field(f"`model_ability` has {', '.join(map(repr, unknown))}, which this "
                        f"model type does not know; use {', '.join(allowed)}", "model_ability")


def check_llm(family: Mapping[str, Any]) -> None:
    """An LLM's abilities, context length, stop strings, chat template and parser settings."""
    check_abilities(family, LLM_ABILITIES)
    check_positive_int(family, "context_length")
    check_str_list(family, "stop")
    check_optional_str(family, "chat_template")
    check_one_of(family, "tool_call_format", TOOL_CALL_FORMATS)
    for key in ("reasoning_start_tag", "reasoning_end_tag"):
        check_optional_str(family, key)
        if family.get(key) == "":
            raise bad_field(f"`{key}` must not be empty", key)
    start, end = family.get("reasoning_start_tag"), family.get("reasoning_end_tag")
    if (start is None) != (end is None):
        missing = "reasoning_end_tag" if end is None else "reasoning_start_tag"
        raise bad_field(f"`reasoning_start_tag` and `reasoning_end_tag` go together: "
                        f"`{missing}` is missing", missing)


def check_embedding(family: Mapping[str, Any]) -> None:
    """An embedding model's abilities, vector size, input limit and Matryoshka flag."""
    check_abilities(family, EMBEDDING_ABILITIES)
    check_positive_int(family, "dimensions")
    check_positive_int(family, "max_tokens")
    if family.get("matryoshka") is not None and not isinstance(family["matryoshka"], bool):
        raise bad_field("`matryoshka` must be true or false", "matryoshka")


def check_rerank(family: Mapping[str, Any]) -> None:
    """A reranker's abilities, input limit and kind (``type``, e.g. ``"normal"``)."""
    check_abilities(family, RERANK_ABILITIES)
    check_positive_int(family, "max_tokens")
    check_optional_str(family, "type")
