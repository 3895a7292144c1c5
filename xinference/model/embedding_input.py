"""Parsing and validation of embedding and rerank request bodies (no torch).

Everything here turns a request dict into plain values or raises
:class:`~xinference.errors.InvalidRequestError` naming the field and what to fix,
so that a bad request fails alone, before it joins a batch.

Request options understood on top of OpenAI's ``/v1/embeddings`` body:

- ``truncate`` (bool, default false; ``truncation`` is accepted as an alias):
  cut inputs longer than the model's token limit instead of rejecting them.
- ``dimensions`` (int): shorter vectors, cut and re-normalized; only for
  families marked ``"matryoshka": true`` (any model accepts its own full size).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..errors import InvalidRequestError

DEFAULT_MAX_ITEMS = 2048
ENCODING_FORMATS = ("float", "base64")

# One input as given: text, or token ids of the model's tokenizer.
RawItem = Union[str, List[int]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) for v in value)


def parse_input(raw: Any, max_items: int = DEFAULT_MAX_ITEMS,
                param: str = "input") -> List[RawItem]:
    """Normalise OpenAI's ``input`` (str, list[str], list[int], list[list[int]]) to a list of items.

    Rejects a missing or empty input, empty strings or token lists, mixed lists,
    and more than ``max_items`` items.
    """
    if raw is None:
        raise InvalidRequestError(f"`{param}` is required: a string or a list of strings",
                                  param=param)
    if isinstance(raw, str):
        items: List[RawItem] = [raw]
    elif isinstance(raw, list):
        if not raw:
            raise InvalidRequestError(f"`{param}` is an empty list; send at least one string",
                                      param=param)
        if all(_is_int(v) for v in raw):
            items = [list(raw)]
        elif all(isinstance(v, str) for v in raw) or all(_is_id_list(v) for v in raw):
            items = list(raw)
        else:
            raise InvalidRequestError(
                f"`{param}` must be a string, a list of strings, a list of token ids or a list of "
                "token-id lists (not a mix)", param=param)
    else:
        raise InvalidRequestError(
            f"`{param}` must be a string or a list of strings, not {type(raw).__name__}",
            param=param)
    if len(items) > max_items:
        raise InvalidRequestError(
            f"`{param}` has {len(items)} items; at most {max_items} are allowed per request, "
            "split it into several requests", param=param)
    for i, item in enumerate(items):
        if len(item) == 0:
            where = param if len(items) == 1 else f"{param}[{i}]"
            raise InvalidRequestError(f"`{where}` is empty; every input must have some text",
                                      param=param)
    return items


def check_token_ids(items: Sequence[RawItem], vocab_size: int, param: str = "input") -> None:
    """Every token id must exist in the model's vocabulary."""
    for i, item in enumerate(items):
        if isinstance(item, str):
            continue
        bad = [t for t in item if t < 0 or t >= vocab_size]
        if bad:
            raise InvalidRequestError(
                f"`{param}[{i}]` holds token id {bad[0]}, outside this model's vocabulary "
                f"(0..{vocab_size - 1}); send text, or ids from this model's tokenizer",
                param=param)


def parse_encoding_format(request: Mapping[str, Any]) -> str:
    value = request.get("encoding_format") or "float"
    if value not in ENCODING_FORMATS:
        raise InvalidRequestError(
            f"`encoding_format` must be one of {', '.join(ENCODING_FORMATS)}, not {value!r}",
            param="encoding_format")
    return value


def parse_truncate(request: Mapping[str, Any]) -> bool:
    """The ``truncate`` option (alias ``truncation``); false when absent."""
    for key in ("truncate", "truncation"):
        value = request.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise InvalidRequestError(f"`{key}` must be true or false", param=key)
        return value
    return False


def parse_dimensions(request: Mapping[str, Any], full: int, matryoshka: bool,
                     model: str = "this model") -> Optional[int]:
    """The requested vector size, or None for the full size; validated against the family."""
    value = request.get("dimensions")
    if value is None or value == full:
        return None
    if not _is_int(value) or value < 1:
        raise InvalidRequestError("`dimensions` must be a positive integer", param="dimensions")
    if not matryoshka:
        raise InvalidRequestError(
            f"{model} does not support `dimensions` (it was not trained for shorter vectors); "
            f"omit it or pass {full}", param="dimensions")
    if value > full:
        raise InvalidRequestError(
            f"`dimensions` is {value}, more than {model}'s {full}; pass at most {full}",
            param="dimensions")
    return value


def too_long_error(index: int, n_tokens: int, limit: int, count: int,
                   param: str = "input") -> InvalidRequestError:
    """The 400 for an input over the model's token limit."""
    where = param if count == 1 else f"{param}[{index}]"
    return InvalidRequestError(
        f"`{where}` has {n_tokens} tokens, more than this model's limit of {limit} tokens; "
        "shorten it, or pass \"truncate\": true to cut it to the limit", param=param)


def vector_to_base64(vector: Sequence[float]) -> str:
    """Little-endian float32 bytes, base64-encoded: what the OpenAI SDK decodes."""
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def family_flag(family: Mapping[str, Any], key: str) -> Any:
    """A family field, looked up at the top level and under ``extra``."""
    if key in family:
        return family[key]
    extra = family.get("extra")
    return extra.get(key) if isinstance(extra, Mapping) else None


@dataclass
class RerankParams:
    """A validated rerank request."""

    query: str
    documents: List[str]
    top_n: int
    return_documents: bool
    return_len: bool
    max_chunks_per_doc: Optional[int]


def _document_text(doc: Any, index: int) -> str:
    if isinstance(doc, Mapping):
        doc = doc.get("text")
    if not isinstance(doc, str):
        raise InvalidRequestError(
            f"`documents[{index}]` must be a string (or an object with a `text` string)",
            param="documents")
    return doc


def _optional_bool(request: Mapping[str, Any], key: str, default: bool) -> bool:
    value = request.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequestError(f"`{key}` must be true or false", param=key)
    return value


def _optional_positive(request: Mapping[str, Any], key: str) -> Optional[int]:
    value = request.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise InvalidRequestError(f"`{key}` must be a positive integer", param=key)
    return value


def parse_rerank(request: Mapping[str, Any], max_items: int = DEFAULT_MAX_ITEMS) -> RerankParams:
    """Validate ``{query, documents, top_n, return_documents, return_len, max_chunks_per_doc}``."""
    query = request.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequestError("`query` must be a non-empty string", param="query")
    docs = request.get("documents")
    if not isinstance(docs, list) or not docs:
        raise InvalidRequestError("`documents` must be a non-empty list of strings",
                                  param="documents")
    if len(docs) > max_items:
        raise InvalidRequestError(
            f"`documents` has {len(docs)} items; at most {max_items} are allowed per request",
            param="documents")
    texts = [_document_text(d, i) for i, d in enumerate(docs)]
    top_n = _optional_positive(request, "top_n")
    return RerankParams(
        query=query,
        documents=texts,
        top_n=min(top_n, len(texts)) if top_n else len(texts),
        return_documents=_optional_bool(request, "return_documents", False),
        return_len=_optional_bool(request, "return_len", False),
        max_chunks_per_doc=_optional_positive(request, "max_chunks_per_doc"),
    )


def usage(tokens: int) -> Dict[str, int]:
    return {"prompt_tokens": tokens, "total_tokens": tokens}
