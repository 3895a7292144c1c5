"""Two thin runners that execute a :class:`~xinference.client.calls.Call`.

:class:`SyncRunner` uses ``httpx.Client`` and returns results;
:class:`AsyncRunner` uses ``httpx.AsyncClient`` and returns coroutines. Error
mapping, decoding and SSE parsing are shared; only the I/O differs.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, Optional

import httpx

from .calls import Call
from .errors import XinferenceClientError, connection_error, error_from_response
from .sse import aiter_events, iter_events

DEFAULT_TIMEOUT = httpx.Timeout(None, connect=10.0)


def normalize_base_url(base_url: str) -> str:
    """``127.0.0.1:9997/`` -> ``http://127.0.0.1:9997`` (scheme added, trailing slash dropped)."""
    url = (base_url or "").strip()
    if not url:
        raise XinferenceClientError("the endpoint is empty; pass e.g. http://127.0.0.1:9997")
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


class _Runner:
    """What both runners share: headers, error mapping and decoding."""

    def __init__(self, http: Any, base_url: str):
        self.http = http
        self.base_url = base_url

    def set_token(self, token: str) -> None:
        """Send ``Authorization: Bearer <token>`` from now on."""
        self.http.headers["Authorization"] = f"Bearer {token}"

    def _build(self, call: Call) -> httpx.Request:
        try:
            return self.http.build_request(**call.request_kwargs())
        except httpx.InvalidURL as exc:
            raise XinferenceClientError(f"invalid endpoint {self.base_url!r}: {exc}",
                                        action=call.action) from None

    def _unreachable(self, call: Call, exc: Exception) -> XinferenceClientError:
        return connection_error(self.base_url, call.method, call.path, call.action, exc)

    @staticmethod
    def _error(call: Call, response: httpx.Response) -> XinferenceClientError:
        return error_from_response(response.status_code, _json_or_text(response),
                                   response.text, response.reason_phrase, call.action)

    def _result(self, call: Call, response: httpx.Response) -> Any:
        if response.is_error:
            raise self._error(call, response)
        if call.raw:
            data: Any = response.content
        elif not response.content:
            data = None
        else:
            try:
                data = response.json()
            except ValueError:
                raise XinferenceClientError(
                    f"the server answered with something that is not JSON: "
                    f"{response.text[:200]!r}", status_code=response.status_code,
                    action=call.action) from None
        return call.parse(data) if call.parse is not None else data


class SyncRunner(_Runner):
    """Executes calls with ``httpx.Client``."""

    is_async = False

    def __init__(self, base_url: str, headers: dict, timeout: Any = DEFAULT_TIMEOUT,
                 transport: Optional[httpx.BaseTransport] = None):
        http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout,
                            transport=transport)
        super().__init__(http, base_url)

    def run(self, call: Call) -> Any:
        """Send ``call``; return its parsed result, or an iterator of events if it streams."""
        request = self._build(call)
        try:
            response = self.http.send(request, stream=call.stream)
            if call.stream and response.is_error:
                try:
                    response.read()
                finally:
                    response.close()
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc) from None
        if call.stream and not response.is_error:
            return self._events(call, response)
        return self._result(call, response)

    def _events(self, call: Call, response: httpx.Response) -> Iterator[Any]:
        try:
            if call.raw:  # a raw stream (speech): its bytes as they come
                yield from response.iter_bytes()
                return
            yield from iter_events(response.iter_lines(), call.action)
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc) from None
        finally:
            response.close()

    def close(self) -> None:
        self.http.close()


class AsyncRunner(_Runner):
    """Executes calls with ``httpx.AsyncClient``; :meth:`run` returns a coroutine."""

    is_async = True

    def __init__(self, base_url: str, headers: dict, timeout: Any = DEFAULT_TIMEOUT,
                 transport: Optional[httpx.AsyncBaseTransport] = None):
        http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout,
                                 transport=transport)
        super().__init__(http, base_url)

    async def run(self, call: Call) -> Any:
        """Send ``call``; return its parsed result, or an async iterator if it streams."""
        request = self._build(call)
        try:
            response = await self.http.send(request, stream=call.stream)
            if call.stream and response.is_error:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc) from None
        if call.stream and not response.is_error:
            return self._events(call, response)
        return self._result(call, response)

    async def _events(self, call: Call, response: httpx.Response) -> AsyncIterator[Any]:
        try:
            if call.raw:  # a raw stream (speech): its bytes as they come
                async for chunk in response.aiter_bytes():
                    yield chunk
                return
            async for event in aiter_events(response.aiter_lines(), call.action):
                yield event
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc) from None
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.http.aclose()
