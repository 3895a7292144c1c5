"""5. Start-up: server ready, launch to READY, resident memory.

Served: seconds from spawning ``xinference-local --no-default-model`` to a 200
on ``GET /v1/models``; seconds of ``POST /v1/models`` (it answers when the
replica is READY); RSS of the server idle and of the server plus its model
processes. Direct twins: importing and loading the same engine class in this
process, and the RSS that loading added here.
"""

from __future__ import annotations

import subprocess
import sys
import time

from .common import Row, Target
from .context import Bench

SECTION = "5 start-up and memory"
LABELS = {"llama": "SmolLM2 on llama.cpp", "minilm": "all-MiniLM-L6-v2"}


def bare_import_seconds() -> float:
    """A fresh interpreter importing what the server imports, without starting anything."""
    code = ("import xinference.deploy.local, xinference.api.app, "
            "xinference.core.supervisor, xinference.core.worker")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    return time.perf_counter() - started


def run(bench: Bench) -> None:
    fresh = bench.server is None
    server = bench.ensure_server()
    rows = [Row(SECTION, "xinference-local ready (GET /v1/models)", "s",
                server.ready_seconds if fresh else None, bare_import_seconds(),
                Target("served_max", 3.0), note="direct: a bare interpreter importing the same")]
    launched = {}
    for key in ("llama", "minilm"):
        already = key in bench.served
        info = bench.ensure_served(key)
        launched[key] = None if already else info["seconds"]
    rss_loaded = server.rss()
    for key in ("llama", "minilm"):
        built = bench.ensure_direct(key)
        rows.append(Row(SECTION, f"launch -> READY: {LABELS[key]}", "s", launched[key],
                        built.import_seconds + built.load_seconds,
                        note="direct: import + load in this process"))
    idle = bench.rss["idle"]
    rows.append(Row(SECTION, "RSS idle server (server tree)", "MB", idle["total"],
                    target=Target("served_max", 300)))
    rows.append(Row(SECTION, "RSS server + 2 model processes", "MB", rss_loaded["total"]))
    for key in ("llama", "minilm"):
        pids = [str(p) for p in bench.served[key]["pids"]]
        mb = sum(rss_loaded["children"].get(p, 0.0) for p in pids) or None
        rows.append(Row(SECTION, f"RSS model process: {LABELS[key]}", "MB", mb,
                        bench.direct[key].rss_delta_mb,
                        note="direct: RSS added by loading it in this process"))
    bench.report.add(*rows)
    bench.report.details["startup"] = {
        "ready_seconds": server.ready_seconds, "rss_idle": idle, "rss_loaded": rss_loaded,
        "launch_seconds": launched,
        "direct": {k: {"import_seconds": d.import_seconds, "load_seconds": d.load_seconds,
                       "rss_delta_mb": d.rss_delta_mb} for k, d in bench.direct.items()}}
