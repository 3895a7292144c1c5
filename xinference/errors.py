"""The one family of domain errors.

Engines, actors and registries raise these; the gateway maps them to an HTTP
status and OpenAI's error body in one place (``xinference.api.errors``).
They survive an xoscar hop (xoscar keeps the class and ``args``), so the
message is rebuilt from ``args`` rather than from ``str(exc)``, which xoscar
prefixes with the actor's address.
"""

from __future__ import annotations

from typing import Optional


class XinferenceError(Exception):
    """Base class: ``message`` says what went wrong and, for user errors, what to fix."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message, param, code)
        self.message = message
        self.param = param
        self.code = code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (self.__class__, (self.message, self.param, self.code))


class InvalidRequestError(XinferenceError):
    """The request is malformed or asks for something impossible (HTTP 400)."""

    status_code = 400
    error_type = "invalid_request_error"


class ModelNotFoundError(XinferenceError):
    """No running model, registration or family by that name or uid (HTTP 404)."""

    status_code = 404
    error_type = "not_found_error"


class DuplicateModelError(InvalidRequestError):
    """A model uid or registration name is already taken (HTTP 400)."""


class EngineUnavailableError(InvalidRequestError):
    """No engine can run the model as asked; the message gives each engine's reason."""


class ResourceExhaustedError(XinferenceError):
    """The cluster cannot hold what was asked; the message says what is short (HTTP 503)."""

    status_code = 503
    error_type = "resource_exhausted"


class ModelLaunchError(XinferenceError):
    """A model failed while loading; the message carries the engine's cause (HTTP 500)."""

    status_code = 500
    error_type = "model_launch_error"


class ModelUnavailableError(XinferenceError):
    """The model exists but no replica can serve now (failed, dead or loading) (HTTP 503)."""

    status_code = 503
    error_type = "model_unavailable"


class RequestAbortedError(XinferenceError):
    """The request was aborted by the client or by an abort call (HTTP 499-style, sent as 400)."""

    status_code = 400
    error_type = "request_aborted"


def unwrap_error(exc: BaseException) -> BaseException:
    """Return the domain error inside ``exc`` if xoscar wrapped it, else ``exc`` itself."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 8:
        if isinstance(current, XinferenceError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return exc
