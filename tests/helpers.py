"""Small helpers the tiers share: ports, polling, a settable clock, async shorthands.

Importable as ``helpers`` from any test (tests/ is on ``sys.path`` through its conftest).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any, AsyncIterator, Callable, List


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, server: Any = None,
               interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after
    ``timeout`` seconds naming ``what``. ``server``: an object with ``process`` (a Popen)
    and ``log()``; waiting stops at once if it exits, and failures show its log."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        if server is not None and server.process.poll() is not None:
            raise AssertionError(f"server exited early while waiting for {what}:\n{server.log()}")
        time.sleep(interval)
    log = f"\n{server.log()}" if server is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} "
                         f"(last: {last!r}){log}")


class Clock:
    """A clock for code that takes one (``clock()`` -> seconds); moved by ``advance``."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(coro: Any) -> Any:
    """Run a coroutine to its end on a new event loop (for sync tests)."""
    return asyncio.run(coro)


async def collect(stream: AsyncIterator[Any]) -> List[Any]:
    """Every item of an async iterator."""
    return [item async for item in stream]


def imported_by(statement: str) -> List[str]:
    """The modules a fresh interpreter has loaded once it ran ``statement``."""
    code = f"{statement}; import sys as _s, json as _j; print(_j.dumps(sorted(_s.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])
