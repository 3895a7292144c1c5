"""The data plane: unary inference calls from the gateway straight to a replica's process.

xoscar carries everything else (launches, streams, control), but a unary call
through it costs 0.25 ms when the call is instant and 0.7-1 ms when the model
computes for 20 ms, against 0.03 and 0.1-0.25 ms for a bare framed socket on
the same machine. So each model process also listens on one TCP port of its
pool's host (and on a unix socket, for a gateway on the same host), and the
gateway sends its unary calls there (the model actor's ``serve``).

Wire format, one request at a time per connection: a frame is a 4-byte
big-endian length and a payload. The request payload is the pickled
``(method, call)``; the answer's is one status byte (0: the JSON bytes the
method returned follow; 1: the pickled exception it raised follows). Closing
the connection while a call runs cancels the call in the model process, as
cancelling an xoscar call does. Like xoscar's own ports, these accept pickles
from whoever can reach them: keep the cluster's network private.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
from typing import Any, Awaitable, Callable, Collection, Dict, List, Optional

logger = logging.getLogger(__name__)

# The model actor's methods the data plane may call.
UNARY_METHODS = frozenset({"serve"})
_OK, _ERROR = b"\x00", b"\x01"
_HEADER = 4
MAX_IDLE_CONNECTIONS = 32

Dispatch = Callable[[str, Any], Awaitable[bytes]]


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(_HEADER, "big") + payload


class _Frames:
    """Cuts a byte stream into frame payloads."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> List[bytes]:
        self._buffer += data
        out = []
        while len(self._buffer) >= _HEADER:
            size = int.from_bytes(self._buffer[:_HEADER], "big")
            if len(self._buffer) < _HEADER + size:
                break
            out.append(bytes(self._buffer[_HEADER:_HEADER + size]))
            del self._buffer[:_HEADER + size]
        return out


def _pickled_error(exc: BaseException) -> bytes:
    """The exception as the gateway can load it: built-in and xinference classes travel as
    they are; others (an engine's own, e.g. torch's, unknown to the gateway) as their text."""
    module = type(exc).__module__
    if module != "builtins" and not module.startswith("xinference."):
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    try:
        return pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot travel is sent as its text
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


class _ServerConnection(asyncio.Protocol):
    def __init__(self, dispatch: Dispatch, methods: Collection[str]):
        self._dispatch = dispatch
        self._methods = methods
        self._frames = _Frames()
        self._transport: Optional[asyncio.Transport] = None
        self._task: Optional[asyncio.Task] = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        for payload in self._frames.feed(data):
            self._task = asyncio.ensure_future(self._answer(payload))

    def connection_lost(self, exc) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _answer(self, payload: bytes) -> None:
        try:
            method, request = pickle.loads(payload)
            if method not in self._methods:
                raise ValueError(f"the data plane does not serve {method!r}")
            out = _OK + await self._dispatch(method, request)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - the caller gets the exception itself
            out = _ERROR + _pickled_error(exc)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_frame(out))


class DataPlaneServer:
    """A replica's listening sockets: a TCP port on its host, and a unix socket beside it."""

    def __init__(self, tcp: asyncio.AbstractServer, unix: Optional[asyncio.AbstractServer],
                 unix_path: Optional[str]):
        self._servers = [s for s in (tcp, unix) if s is not None]
        self.port: int = tcp.sockets[0].getsockname()[1]
        self.unix_path = unix_path

    def address(self) -> Dict[str, Any]:
        return {"port": self.port, "unix_path": self.unix_path}

    def close(self) -> None:
        for server in self._servers:
            server.close()
        if self.unix_path:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)


async def serve(dispatch: Dispatch, host: str, unix_path: Optional[str] = None,
                methods: Collection[str] = UNARY_METHODS) -> DataPlaneServer:
    """Listen on a free port of ``host`` (and on ``unix_path`` when given and possible).

    Each request runs ``dispatch(method, request)``. A client on the same host uses
    the unix socket: a loopback TCP send cost the sender 0.19 ms here, a good share
    of what the data plane adds.
    """
    loop = asyncio.get_running_loop()
    factory = lambda: _ServerConnection(dispatch, methods)  # noqa: E731
    tcp = await loop.create_server(factory, host, 0)
    unix = None
    if unix_path and hasattr(loop, "create_unix_server"):
        try:
            unix = await loop.create_unix_server(factory, unix_path)
        except OSError as exc:
            logger.info("No unix socket for the data plane at %s: %s", unix_path, exc)
            unix_path = None
    return DataPlaneServer(tcp, unix, unix_path if unix else None)


class _ClientConnection(asyncio.Protocol):
    def __init__(self):
        self._frames = _Frames()
        self._waiter: Optional[asyncio.Future] = None
        self.transport: Optional[asyncio.Transport] = None
        self._lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for payload in self._frames.feed(data):
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(payload)

    def connection_lost(self, exc) -> None:
        self._lost = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError(
                "the replica's process closed the connection before answering"))

    @property
    def usable(self) -> bool:
        return not self._lost and self.transport is not None and not self.transport.is_closing()

    async def ask(self, payload: bytes) -> bytes:
        if not self.usable:
            raise ConnectionResetError("the replica's process closed the connection")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(_frame(payload))
        return await self._waiter


class DataPlaneClient:
    """Calls one replica's data plane over a small pool of kept-alive connections."""

    def __init__(self, host: str, port: int, unix_path: Optional[str] = None,
                 max_idle: int = MAX_IDLE_CONNECTIONS):
        self.host, self.port = host, port
        # The replica's unix socket is usable when its file is here: same host.
        self.unix_path = unix_path if unix_path and os.path.exists(unix_path) else None
        self._max_idle = max_idle
        self._idle: List[_ClientConnection] = []

    async def _connection(self) -> _ClientConnection:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn
        loop = asyncio.get_running_loop()
        if self.unix_path:
            try:
                _, conn = await loop.create_unix_connection(_ClientConnection, self.unix_path)
                return conn
            except OSError:
                self.unix_path = None  # e.g. a file left by a process of another host
        _, conn = await loop.create_connection(_ClientConnection, self.host, self.port)
        return conn

    async def call(self, method: str, request: Any) -> bytes:
        """The JSON bytes ``method(request)`` returned in the replica, or its exception.

        Connection failures raise ``ConnectionError`` (the gateway's sign that the
        replica is gone); cancelling the call closes its connection, which cancels
        the work in the replica.
        """
        conn = await self._connection()
        try:
            answer = await conn.ask(pickle.dumps((method, request)))
        except BaseException:
            conn.transport.close()
            raise
        if len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.transport.close()
        if answer[:1] == _OK:
            return answer[1:]
        raise pickle.loads(answer[1:])

    def close(self) -> None:
        for conn in self._idle:
            conn.transport.close()
        self._idle.clear()
