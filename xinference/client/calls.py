"""A REST call described as data, so one description serves the sync and async clients."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union
from urllib.parse import quote

_UNSET = object()


@dataclass(frozen=True)
class Call:
    """One HTTP request and how to read its answer.

    ``action`` completes "Failed to ..." in error messages. ``parse`` turns the
    decoded JSON (or the raw bytes when ``raw``) into the method's result.
    ``stream`` asks for an SSE answer: the result is then an iterator of chunks (with
    ``raw`` too, of the body's bytes as they come: streamed speech).
    """

    method: str
    path: str
    action: str
    json: Any = None
    params: Optional[Dict[str, Any]] = None
    files: Any = None
    data: Optional[Dict[str, Any]] = None
    stream: bool = False
    raw: bool = False
    parse: Optional[Callable[[Any], Any]] = None
    timeout: Any = _UNSET

    def with_parse(self, parse: Optional[Callable[[Any], Any]]) -> "Call":
        """The same request with another way of reading its answer."""
        return dataclasses.replace(self, parse=parse)

    def request_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``httpx.Client.build_request``."""
        kwargs: Dict[str, Any] = {"method": self.method, "url": self.path}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params:
            kwargs["params"] = self.params
        if self.files is not None:
            kwargs["files"] = self.files
        if self.data is not None:
            kwargs["data"] = self.data
        if self.timeout is not _UNSET:
            kwargs["timeout"] = self.timeout
        return kwargs


def seg(value: Any) -> str:
    """One URL path segment, percent-encoded (uids may hold any character)."""
    return quote(str(value), safe="")


def drop_none(mapping: Dict[str, Any]) -> Dict[str, Any]:
    """The mapping without its ``None`` values."""
    return {key: value for key, value in mapping.items() if value is not None}


def size_to_wire(size: Union[int, float, str, None]) -> Union[int, str, None]:
    """Model sizes travel as an int or a string: ``1.0`` -> ``1``, ``1.5`` -> ``"1.5"``."""
    if isinstance(size, float):
        return int(size) if size.is_integer() else str(size)
    return size


def bool_param(value: Optional[bool]) -> Optional[str]:
    """A query-string boolean as the server reads it (``true``/``false``), ``None`` kept."""
    if value is None:
        return None
    return "true" if value else "false"
