"""The one mapping from errors to HTTP: status code plus OpenAI's error body.

Every error answer carries ``{"error": {"message", "type", "param", "code"}}``
(what the OpenAI SDK reads) and ``"detail"`` (what Xinference's client reads),
for JSON responses and, as one SSE event, for streams.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import XinferenceError, unwrap_error

logger = logging.getLogger(__name__)

_CONNECTION_ERRORS = ("ServerClosed", "ActorNotExist", "ConnectionRefusedError",
                      "ConnectionResetError", "BrokenPipeError")


def error_body(message: str, error_type: str, param: Optional[str] = None,
               code: Optional[Any] = None) -> Dict[str, Any]:
    return {"detail": message,
            "error": {"message": message, "type": error_type, "param": param, "code": code}}


def classify(exc: BaseException) -> Tuple[int, Dict[str, Any]]:
    """Status code and body for any exception raised while serving a request."""
    inner = unwrap_error(exc)
    if isinstance(inner, XinferenceError):
        return inner.status_code, error_body(inner.message, inner.error_type, inner.param,
                                             inner.code)
    name = type(inner).__name__
    if name in _CONNECTION_ERRORS:
        return 503, error_body("The model's process is not reachable (it may have crashed); "
                               "`xinference list` shows its status", "model_unavailable")
    logger.error("Unexpected error while serving a request", exc_info=inner)
    return 500, error_body(f"Internal error: {name}: {_strip_address(str(inner))}",
                           "server_error")


def _strip_address(message: str) -> str:
    if message.startswith("[address="):
        end = message.find("] ")
        if end != -1:
            return message[end + 2:]
    return message


def validation_message(exc: RequestValidationError) -> Tuple[str, Optional[str]]:
    """One readable sentence per validation problem, and the first offending field."""
    parts, first = [], None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        first = first or field
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts), first


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    status, body = classify(exc)
    return JSONResponse(body, status_code=status)


async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = validation_message(exc)
    return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)


async def _on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    error_type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(error_body(str(exc.detail), error_type), status_code=exc.status_code)


def install_error_handlers(app) -> None:
    """Route every error the app can raise through :func:`classify`."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(XinferenceError, _on_domain_error)
    for name in _CONNECTION_ERRORS:
        cls = _connection_error_class(name)
        if cls is not None:
            app.add_exception_handler(cls, _on_domain_error)
    app.add_exception_handler(Exception, _on_domain_error)


def _connection_error_class(name: str):
    import builtins

    import xoscar.errors

    return getattr(xoscar.errors, name, None) or getattr(builtins, name, None)
