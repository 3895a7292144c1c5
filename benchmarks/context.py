"""What every measurement shares: options, the report, the server, the direct engines."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import psutil

from . import direct
from .common import Report, cpu_delta
from .server import LocalServer

logger = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class Plan:
    """How much work each measurement does: ``quick`` or full."""

    quick: bool
    threads: int = 1

    @property
    def overhead_requests(self) -> int:
        return 100 if self.quick else 400

    @property
    def stream_runs(self) -> int:
        return 3 if self.quick else 8

    @property
    def stream_tokens(self) -> int:
        return 128

    @property
    def concurrency_levels(self):
        return (1, 4, 16, 64)

    @property
    def concurrency_warmup(self) -> float:
        return 1.5 if self.quick else 3.0

    @property
    def concurrency_seconds(self) -> float:
        return 3.0 if self.quick else 10.0

    @property
    def concurrency_tokens(self) -> int:
        return 16

    @property
    def embed_requests(self) -> int:
        return 256

    @property
    def embed_max_sentences(self) -> int:
        return 8 if self.quick else 32

    @property
    def embed_rounds(self) -> int:
        return 1 if self.quick else 2


class Bench:
    """The run's shared state; models are launched and built on first use."""

    def __init__(self, plan: Plan, report: Report):
        self.plan = plan
        self.report = report
        self.cases = direct.cases(plan.threads)
        self.loop = direct.Loop()
        self.server: Optional[LocalServer] = None
        self.served: Dict[str, Dict[str, Any]] = {}
        self.direct: Dict[str, direct.DirectEngine] = {}
        self.rss: Dict[str, Any] = {}

    @property
    def base_url(self) -> str:
        return self.ensure_server().base_url

    def ensure_server(self) -> LocalServer:
        if self.server is None:
            server = LocalServer()
            self.server = server
            server.start()
            self.rss["idle"] = server.rss()
            logger.info("server ready in %.2f s on %s", server.ready_seconds, server.base_url)
        return self.server

    def cpu(self) -> Dict[str, float]:
        """CPU seconds used so far by the gateway, the model processes and this process."""
        def used(proc: psutil.Process) -> float:
            times = proc.cpu_times()
            return times.user + times.system

        out = {"gateway": 0.0, "models": 0.0, "bench": used(psutil.Process())}
        if self.server is not None and self.server.process is not None:
            root = psutil.Process(self.server.process.pid)
            out["gateway"] = used(root)
            for child in root.children(recursive=True):
                try:
                    out["models"] += used(child)
                except psutil.Error:
                    continue
        return out

    def settle(self, timeout: float = 30.0, idle_cores: float = 0.15,
               interval: float = 0.25) -> float:
        """Wait until the server tree and this process are (nearly) idle; seconds waited.

        Work left over from closed streams (a cancelled request still queued in an
        engine) must not run during the next measurement.
        """
        started = time.perf_counter()
        before, quiet = self.cpu(), 0
        while time.perf_counter() - started < timeout and quiet < 2:
            time.sleep(interval)
            after = self.cpu()
            busy = sum(after[k] - before.get(k, 0.0) for k in after) / interval
            quiet = quiet + 1 if busy < idle_cores else 0
            before = after
        return time.perf_counter() - started

    def metered(self, fn: Callable[[], Any]) -> Tuple[Any, Dict[str, float]]:
        """``fn()`` and the CPU seconds each process role used meanwhile (see :meth:`cpu`)."""
        before = self.cpu()
        result = fn()
        return result, cpu_delta(before, self.cpu(), scale=1.0)

    def ensure_served(self, key: str) -> Dict[str, Any]:
        """Launch case ``key`` on the server (once); returns the launch answer."""
        if key not in self.served:
            server = self.ensure_server()
            before = set(server.pids())
            info = server.launch(self.cases[key].launch_body())
            new = [p for p in server.pids() if p not in before]
            info["pids"] = new
            self.served[key] = info
            logger.info("served %s ready in %.2f s", key, info["seconds"])
        return self.served[key]

    def ensure_direct(self, key: str) -> direct.DirectEngine:
        """Build case ``key`` in this process (once)."""
        if key not in self.direct:
            built = direct.build(self.cases[key])
            self.direct[key] = built
            logger.info("direct %s: import %.2f s, load %.2f s", key, built.import_seconds,
                        built.load_seconds)
        return self.direct[key]

    def release(self, key: str) -> None:
        """Stop case ``key`` on both sides (frees memory and threads for what follows)."""
        built = self.direct.pop(key, None)
        if built is not None:
            try:
                built.engine.close()
            except Exception:  # noqa: BLE001 - the process ends soon anyway
                logger.warning("closing direct %s failed", key, exc_info=True)
        if key in self.served and self.server is not None:
            try:
                self.server.terminate(self.cases[key].uid)
            except Exception:  # noqa: BLE001
                logger.warning("terminating served %s failed", key, exc_info=True)
            self.served.pop(key)

    def close(self) -> None:
        """Close every direct engine and stop the server (bounded)."""
        for key in list(self.direct):
            built = self.direct.pop(key)
            try:
                built.engine.close()
            except Exception:  # noqa: BLE001
                logger.warning("closing direct %s failed", key, exc_info=True)
        try:
            self.loop.close()
        except Exception:  # noqa: BLE001
            logger.warning("closing the event loop failed", exc_info=True)
        if self.server is not None:
            self.server.stop()
            self.server = None
