"""The process's main xoscar pool and the hooks that watch its sub-processes.

An actor has no handle on the pool that hosts it, so the bootstrap code stores
it here; the worker uses it to start and stop one sub-process per replica.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable, Dict, Optional

logger = logging.getLogger(__name__)

_main_pool = None
_down_handlers: Dict[str, Callable[[str, str], None]] = {}


def set_main_pool(pool) -> None:
    global _main_pool
    _main_pool = pool


def get_main_pool():
    if _main_pool is None:
        raise RuntimeError("no xoscar main pool in this process")
    return _main_pool


def watch_sub_pool(address: str, handler: Callable[[str, str], None]) -> None:
    """Call ``handler(address, reason)`` once if the sub-process at ``address`` dies."""
    _down_handlers[address] = handler


def unwatch_sub_pool(address: str) -> None:
    _down_handlers.pop(address, None)


def exit_reason(returncode: Optional[int]) -> str:
    """Describe a process's end from its return code (negative: killed by a signal)."""
    if returncode is None:
        return "the model process stopped responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the model process was killed by {name}"
    return f"the model process exited with code {returncode}"


def on_process_down(pool, address: str) -> None:
    """xoscar's ``on_process_down`` hook: report once, then stop watching."""
    handler = _down_handlers.pop(address, None)
    process = pool.sub_processes.get(address)
    reason = exit_reason(getattr(process, "returncode", None))
    logger.warning("Sub-process %s is down: %s", address, reason)
    if handler is not None:
        handler(address, reason)
    asyncio.get_event_loop().create_task(_forget(pool, address))


async def _forget(pool, address: str) -> None:
    try:
        await pool.remove_sub_pool(address, force=True)
    except Exception:  # noqa: BLE001 - already dead; only the bookkeeping is left
        pool.sub_processes.pop(address, None)
