"""Serving the REST gateway with uvicorn on the caller's event loop.

uvicorn re-raises a captured Ctrl-C once it has stopped serving, which would
interrupt the model clean-up that follows. Here SIGINT/SIGTERM only ask the
server to stop, and they stay caught until the process has cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Awaitable, Callable, Optional

import click
import uvicorn

logger = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    """A uvicorn server whose signals request a stop and nothing more."""

    @contextlib.contextmanager
    def capture_signals(self):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_stop)
        yield

    def _request_stop(self) -> None:
        if self.should_exit:
            click.echo("Already stopping; please wait for the models to stop.", err=True)
        self.should_exit = True


async def run_gateway(app, host: str, port: int, log_level: str, banner: str,
                      on_started: Optional[Callable[[], Awaitable[None]]] = None) -> None:
    """Serve ``app`` until a signal (or ``server.should_exit``); print ``banner`` when up."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(),
                            access_log=False, lifespan="off", timeout_graceful_shutdown=3)
    server = GatewayServer(config)

    async def when_started() -> None:
        while not server.started and not server.should_exit:
            await asyncio.sleep(0.02)
        if server.started:
            click.echo(banner)
            if on_started is not None:
                await on_started()

    watcher = asyncio.create_task(when_started())
    try:
        await server.serve()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
