"""``xinference-local``: supervisor, worker and REST gateway in one process.

Model replicas still run in their own sub-processes. The embedded default chat
model is launched in the background once the API answers, so ``/v1/models``
is ready at once and the model joins it when loaded.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Optional

import click

from ..settings import get_settings, refuse_unsupported
from .runtime import run_server

logger = logging.getLogger("xinference")

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_ENGINE = "llama.cpp"


async def start_cluster(log_file: str, log_level: str):
    """Start the main pool with a supervisor and a worker in it; returns (pool, supervisor ref).

    The worker registers and heartbeats like a remote one, in-process; this
    returns once it is registered, so a launch right away finds it.
    """
    import xoscar as xo

    from ..core import pool as pool_hooks
    from ..core.supervisor import SupervisorActor
    from ..core.worker import WorkerActor

    pool = await xo.create_actor_pool("127.0.0.1", n_process=0, auto_recover=False,
                                      on_process_down=pool_hooks.on_process_down)
    pool_hooks.set_main_pool(pool)
    address = pool.external_address
    supervisor = await xo.create_actor(SupervisorActor, address=address,
                                       uid=SupervisorActor.default_uid())
    await xo.create_actor(WorkerActor, address, log_file, log_level, address=address,
                          uid=WorkerActor.default_uid())
    for _ in range(200):
        if any(w["address"] == address for w in await supervisor.list_workers()):
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("the local worker did not register with the supervisor")
    return pool, supervisor


async def _launch_default(supervisor, model_name: str) -> None:
    try:
        result = await supervisor.launch_model(
            {"model_name": model_name, "model_engine": DEFAULT_ENGINE, "model_uid": model_name})
        click.echo(f"Default model ready: {result['model_uid']} ({result['model_engine']})")
    except Exception as exc:  # noqa: BLE001 - the server keeps running without it
        logger.error("The default model %s could not be launched: %s", model_name, exc)
        click.echo(f"Error: the default model {model_name} could not be launched: {exc}",
                   err=True)


async def serve(host: str, port: int, log_level: str, default_model: Optional[str]) -> None:
    """Run until interrupted; stop every model process on the way out."""
    from ..api.app import create_app
    from ..logs import configure_process_logging, new_log_file
    from .http_server import run_gateway

    settings = get_settings()
    log_file = new_log_file(settings, "local")
    configure_process_logging(str(log_file), log_level, console=True)
    pool, supervisor = await start_cluster(str(log_file), log_level)
    app = create_app(pool.external_address, settings)
    base = f"http://{host}:{port}"

    async def launch_default() -> None:
        if default_model:
            await _launch_default(supervisor, default_model)

    try:
        await run_gateway(app, host, port, log_level,
                          f"Xinference API: {base}/v1  (docs: {base}/docs)  logs: {log_file}",
                          on_started=launch_default)
    finally:
        click.echo("Stopping models...")
        await shutdown(pool, supervisor)


async def shutdown(pool, supervisor, timeout: float = 15.0) -> None:
    """Terminate every model, then stop the pool; kill what is left after ``timeout``."""
    import xoscar as xo

    try:
        await xo.wait_for(supervisor.terminate_all(), timeout)
    except Exception:  # noqa: BLE001 - whatever is left is killed below
        logger.warning("Some models did not stop within %.0f s; killing them", timeout)
    leftovers = list(pool.sub_processes.values())
    try:
        await asyncio.wait_for(pool.stop(), timeout=5)
    except Exception:  # noqa: BLE001
        logger.warning("The actor pool did not stop cleanly")
    for process in leftovers:
        if getattr(process, "returncode", 0) is None:
            process.kill()


def run_local(host: str = "127.0.0.1", port: int = 9997, log_level: str = "INFO",
              default_model: Optional[str] = DEFAULT_MODEL) -> None:
    """Serve until Ctrl-C (used by ``xinference-local`` and by ``xinference`` with no verb)."""
    try:
        run_server(serve(host, port, log_level, default_model))
    except KeyboardInterrupt:
        pass


@click.command(help="Run supervisor, worker and REST API in one process, with the embedded "
                    f"default chat model ({DEFAULT_MODEL} on {DEFAULT_ENGINE}).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("-H", "--host", default="127.0.0.1", show_default=True,
              help="Address the REST API binds to.")
@click.option("-p", "--port", default=9997, show_default=True, type=int,
              help="Port of the REST API.")
@click.option("--default-model", default=DEFAULT_MODEL, show_default=True,
              help="Chat model launched at start (its uid is its name).")
@click.option("--no-default-model", is_flag=True, help="Start with no model launched.")
def main(log_level: str, host: str, port: int, default_model: str,
         no_default_model: bool) -> None:
    try:
        get_settings()
        refuse_unsupported()
    except ValueError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    run_local(host, port, log_level.upper(), None if no_default_model else default_model)


if __name__ == "__main__":
    main()
