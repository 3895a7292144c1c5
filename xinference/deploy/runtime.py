"""How a server process runs its event loop: uvloop, and its own xoscar socket folder.

xoscar names the unix sockets between a pool and its sub-processes after
``pid << (16 + n)`` in one folder under ``~/.xoscar`` that every process of the
user shares (containers sharing a home, several servers on one host). Each
server process here gets its own folder instead (unless ``XOSCAR_DIR`` is set),
inherited by its model processes and removed when it exits, so no other
process can ever take over one of its sockets.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from typing import Any, Coroutine


def _private_xoscar_dir() -> str | None:
    """Point XOSCAR_DIR at a new folder (returned) unless the user chose one.

    Not once xoscar is imported: it would keep the old folder and its model
    processes would look in the new one.
    """
    if os.environ.get("XOSCAR_DIR") or "xoscar.constants" in sys.modules:
        return None
    folder = tempfile.mkdtemp(prefix="xinf-xoscar-")
    os.environ["XOSCAR_DIR"] = folder
    return folder


def _loop_factory():
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return None
    return uvloop.new_event_loop


def run_server(main: Coroutine[Any, Any, Any]) -> Any:
    """Run a server's coroutine to its end on uvloop (when installed); returns its result.

    Must run before ``xoscar`` is imported in this process (it reads
    ``XOSCAR_DIR`` at import).
    """
    folder = _private_xoscar_dir()
    from ..core import pool_setup  # noqa: F401 - keeps torch out of this process's pool

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(main)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
