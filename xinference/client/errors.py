"""Errors the client raises: one class, a ``RuntimeError`` as Xinference users expect."""

from __future__ import annotations

from typing import Any, Optional


class XinferenceClientError(RuntimeError):
    """A call failed. ``message`` is the server's own message when it sent one.

    ``status_code`` is the HTTP status (``None`` when the server was not reached
    or the error arrived inside a stream); ``error_type``, ``param`` and ``code``
    come from the server's ``{"error": {...}}`` body when present.
    """

    def __init__(self, message: str, *, status_code: Optional[int] = None,
                 action: Optional[str] = None, error_type: Optional[str] = None,
                 param: Optional[str] = None, code: Optional[str] = None):
        self.message = message
        self.status_code = status_code
        self.action = action
        self.error_type = error_type
        self.param = param
        self.code = code
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.action:
            return self.message
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"Failed to {self.action}{status}: {self.message}"


class XinferenceConnectionError(XinferenceClientError):
    """The server could not be reached, or the connection broke mid-answer."""


def _format_validation(detail: list) -> str:
    parts = []
    for item in detail:
        if isinstance(item, dict):
            where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
            msg = item.get("msg", "invalid value")
            parts.append(f"{where}: {msg}" if where else str(msg))
        else:
            parts.append(str(item))
    return "; ".join(parts)


def message_from_body(body: Any) -> Optional[str]:
    """The human message inside an error body (``detail`` or ``error.message``), if any."""
    if not isinstance(body, dict):
        return None
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        return _format_validation(detail)
    error = body.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    return None


def error_from_response(status_code: int, body: Any, text: str, reason: str,
                        action: str) -> XinferenceClientError:
    """Build the error for a non-2xx answer from its decoded body (or raw text)."""
    message = message_from_body(body)
    if message is None:
        snippet = " ".join(text.split())[:300]
        message = snippet or reason or "no details in the answer"
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    return XinferenceClientError(message, status_code=status_code, action=action,
                                 error_type=error.get("type"), param=error.get("param"),
                                 code=error.get("code"))


def error_from_stream(error: Any, action: str) -> XinferenceClientError:
    """Build the error for a ``data: {"error": ...}`` event received mid-stream."""
    if isinstance(error, dict):
        return XinferenceClientError(str(error.get("message") or error), action=action,
                                     error_type=error.get("type"), param=error.get("param"),
                                     code=error.get("code"))
    return XinferenceClientError(str(error), action=action)


def connection_error(base_url: str, method: str, path: str, action: str,
                     exc: Exception) -> XinferenceConnectionError:
    """Explain a transport failure, naming the endpoint that could not be reached."""
    kind = type(exc).__name__
    detail = str(exc) or kind
    if "Timeout" in kind:
        text = (f"the Xinference server at {base_url} did not answer in time "
                f"({method} {path}): {detail}")
    else:
        text = (f"cannot reach the Xinference server at {base_url} ({method} {path}): "
                f"{detail}. Check that the server is running and the endpoint is right")
    return XinferenceConnectionError(text, action=action)
