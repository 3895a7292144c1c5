"""``xinference-supervisor``: the cluster's supervisor and its REST gateway, in one process.

The supervisor actor lives in this process's xoscar main pool (on
``--supervisor-port``, random if not given); the REST API serves on ``-p`` from
the same event loop. Workers find the actor address at ``GET /v1/address``.
Stopping the supervisor (Ctrl-C, SIGTERM) leaves the models running on their
workers: they register again, with their replicas, when a supervisor is back.
``xinference stop-cluster`` stops everything.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Optional

import click

from ..settings import get_settings, refuse_unsupported
from .runtime import run_server

logger = logging.getLogger("xinference")

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def actor_host(host: str) -> str:
    """The host to put in an actor address: a wildcard bind becomes this machine's main IP."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def pool_address(host: str, port: Optional[int]) -> str:
    host = actor_host(host)
    return f"{host}:{port}" if port else host


async def start_supervisor(host: str, port: Optional[int]):
    """The main pool with the SupervisorActor; returns (pool, supervisor ref)."""
    import xoscar as xo

    from ..core.supervisor import SupervisorActor

    settings = get_settings()
    pool = await xo.create_actor_pool(pool_address(host, port), n_process=0, auto_recover=False)
    supervisor = await xo.create_actor(
        SupervisorActor, rejoin_window=settings.worker_lost_timeout,
        address=pool.external_address, uid=SupervisorActor.default_uid())
    return pool, supervisor


async def serve(host: str, port: int, supervisor_port: Optional[int], log_level: str) -> None:
    """Run the supervisor and the REST API until SIGINT/SIGTERM (or stop-cluster)."""
    import xoscar as xo

    from ..api.app import create_app
    from ..logs import configure_process_logging, new_log_file
    from .http_server import run_gateway

    settings = get_settings()
    log_file = new_log_file(settings, "supervisor")
    configure_process_logging(str(log_file), log_level, console=True)
    pool, supervisor = await start_supervisor(host, supervisor_port)
    app = create_app(pool.external_address, settings)
    banner = (f"Xinference supervisor: http://{host}:{port}/v1  actors: "
              f"{pool.external_address}  logs: {log_file}")
    try:
        await run_gateway(app, host, port, log_level, banner)
    finally:
        try:
            await asyncio.wait_for(xo.destroy_actor(supervisor), 5)
        except Exception:  # noqa: BLE001
            logger.warning("The supervisor actor did not stop cleanly")
        await pool.stop()


@click.command(help="Run the cluster's supervisor and its REST API; start workers with "
                    "`xinference-worker -e http://HOST:PORT`.")
@click.option("--log-level", default="INFO", show_default=True, type=LOG_LEVELS)
@click.option("-H", "--host", default="127.0.0.1", show_default=True,
              help="Address the REST API and the supervisor bind to.")
@click.option("-p", "--port", default=9997, show_default=True, type=int,
              help="Port of the REST API.")
@click.option("--supervisor-port", default=None, type=int,
              help="Port of the supervisor's actor pool (random if not given).")
def main(log_level: str, host: str, port: int, supervisor_port: Optional[int]) -> None:
    try:
        get_settings()
        refuse_unsupported()
    except ValueError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    try:
        run_server(serve(host, port, supervisor_port, log_level.upper()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
