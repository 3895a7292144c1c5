"""The two clients: same calls (:class:`~xinference.client.restful_api.ClientAPI`),
different runners."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .restful_api import ClientAPI
from .transport import DEFAULT_TIMEOUT, AsyncRunner, SyncRunner, normalize_base_url


def _headers(api_key: Optional[str]) -> Dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client(ClientAPI):
    """Blocking client of an Xinference server.

    ``Client("http://127.0.0.1:9997", api_key=None)``; ``timeout`` (seconds or an
    ``httpx.Timeout``; default: 10 s to connect, no read limit, as model launches
    and long generations take time) and ``transport`` (an ``httpx`` transport,
    e.g. for tests) are optional. Failed calls raise
    :class:`~xinference.client.XinferenceClientError`, a ``RuntimeError``.
    Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, base_url: str, api_key: Optional[str] = None, *,
                 timeout: Any = DEFAULT_TIMEOUT, transport: Any = None):
        self._runner = SyncRunner(normalize_base_url(base_url), _headers(api_key),
                                  timeout, transport)

    def close(self) -> None:
        """Close the connections (handles from :meth:`get_model` stop working)."""
        self._runner.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncClient(ClientAPI):
    """The asyncio twin of :class:`Client`: every method returns an awaitable.

    Streams (``generate_config={"stream": True}``) are awaited to an async
    iterator: ``async for chunk in await model.chat(...)``.
    """

    def __init__(self, base_url: str, api_key: Optional[str] = None, *,
                 timeout: Any = DEFAULT_TIMEOUT, transport: Any = None):
        self._runner = AsyncRunner(normalize_base_url(base_url), _headers(api_key),
                                   timeout, transport)

    async def close(self) -> None:
        """Close the connections."""
        await self._runner.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


RESTfulClient = Client
AsyncRESTfulClient = AsyncClient
