"""``xinference-worker``: one host's worker, in its own process and xoscar main pool.

It checks that the supervisor answers (``XINFERENCE_HEALTH_CHECK_*``), learns its
actor address from ``GET {endpoint}/v1/address``, registers with its resources
and sends heartbeats; each model replica it is given runs in a sub-process.
Ctrl-C or SIGTERM stops its replicas and tells the supervisor it is leaving.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Optional

import click

from ..settings import Settings, get_settings, refuse_unsupported
from .runtime import run_server
from .supervisor import LOG_LEVELS, pool_address

logger = logging.getLogger("xinference")


class SupervisorUnreachable(Exception):
    """The startup health check gave up on the supervisor."""


async def check_supervisor(endpoint: str, settings: Settings) -> Optional[str]:
    """The supervisor's actor address, tried as the health-check settings say.

    Tries ``XINFERENCE_HEALTH_CHECK_FAILURE_THRESHOLD`` times, each within
    ``_TIMEOUT`` seconds, ``_INTERVAL`` seconds apart. With
    ``XINFERENCE_DISABLE_HEALTH_CHECK`` it does not wait: None, and the worker
    keeps looking for the supervisor in the background.
    """
    from ..core.worker import resolve_supervisor

    if settings.disable_health_check:
        return None
    attempts = max(1, settings.health_check_failure_threshold)
    last: Optional[BaseException] = None
    for attempt in range(attempts):
        try:
            return await resolve_supervisor(endpoint, settings.health_check_timeout)
        except Exception as exc:  # noqa: BLE001 - reported after the last attempt
            last = exc
            logger.info("Supervisor at %s not answering (attempt %d of %d): %s", endpoint,
                        attempt + 1, attempts, exc)
        if attempt + 1 < attempts:
            await asyncio.sleep(settings.health_check_interval)
    raise SupervisorUnreachable(
        f"the supervisor at {endpoint} did not answer {attempts} health check(s) "
        f"({type(last).__name__}: {last}); start xinference-supervisor first or check -e")


def start_metrics_exporter(host: str, port: int) -> None:
    """Serve the worker's counters in Prometheus' text format on ``host:port``."""
    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY, GaugeMetricFamily

    from ..core.worker import WORKER_METRICS

    class _Collector:
        def collect(self):
            for name, value in WORKER_METRICS.items():
                yield GaugeMetricFamily(f"xinference_worker_{name}", f"Worker {name}", value=value)

    REGISTRY.register(_Collector())
    start_http_server(port, addr=host)


async def serve(endpoint: str, host: str, worker_port: Optional[int],
                metrics_port: Optional[int], log_level: str) -> None:
    """Run the worker until SIGINT/SIGTERM (or the supervisor's stop-cluster)."""
    import xoscar as xo

    from ..core import pool as pool_hooks
    from ..core.worker import WorkerActor
    from ..logs import configure_process_logging, new_log_file

    settings = get_settings()
    log_file = new_log_file(settings, "worker")
    configure_process_logging(str(log_file), log_level, console=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    supervisor_address = await check_supervisor(endpoint, settings)
    pool = await xo.create_actor_pool(pool_address(host, worker_port), n_process=0,
                                      auto_recover=False,
                                      on_process_down=pool_hooks.on_process_down)
    pool_hooks.set_main_pool(pool)
    worker = await xo.create_actor(WorkerActor, supervisor_address, str(log_file), log_level,
                                   endpoint=endpoint, host=host, address=pool.external_address,
                                   uid=WorkerActor.default_uid())
    if metrics_port:
        start_metrics_exporter(host, metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    click.echo(f"Xinference worker at {pool.external_address}, supervisor {endpoint}, "
               f"logs: {log_file}")
    try:
        await stop.wait()
    finally:
        await _leave(worker)
        await pool.stop()


async def _leave(worker) -> None:
    import xoscar as xo

    try:
        await asyncio.wait_for(worker.leave(), 20)
        await asyncio.wait_for(xo.destroy_actor(worker), 5)
    except Exception:  # noqa: BLE001
        logger.warning("The worker did not stop cleanly")


@click.command(help="Run a worker that joins the supervisor at --endpoint.")
@click.option("--log-level", default="INFO", show_default=True, type=LOG_LEVELS)
@click.option("-e", "--endpoint", default=None,
              help="The supervisor's REST endpoint, e.g. http://10.0.0.1:9997 "
                   "(default: XINFERENCE_ENDPOINT).")
@click.option("-H", "--host", default="127.0.0.1", show_default=True,
              help="Address this worker binds to and announces.")
@click.option("--worker-port", default=None, type=int,
              help="Port of the worker's actor pool (random if not given).")
@click.option("--metrics-exporter-port", default=None, type=int,
              help="Serve Prometheus metrics of this worker on this port.")
def main(log_level: str, endpoint: Optional[str], host: str, worker_port: Optional[int],
         metrics_exporter_port: Optional[int]) -> None:
    try:
        settings = get_settings()
        refuse_unsupported()
    except ValueError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    endpoint = (endpoint or settings.endpoint).rstrip("/")
    try:
        run_server(serve(endpoint, host, worker_port, metrics_exporter_port, log_level.upper()))
    except SupervisorUnreachable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
