"""``python -m benchmarks.run [--quick] [--only NAME[,NAME]] [--json PATH]``.

Starts a real ``xinference-local`` on a free 127.0.0.1 port, launches the
packaged models through REST, builds the same engines in this process, runs the
measurements and prints one table (served, direct, ratio, target) plus a JSON
file. Everything started here is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

from .common import DEFAULT_JSON, Report, format_table, machine_facts, package_versions

SECTIONS = ("startup", "overhead", "streaming", "concurrency", "embeddings", "audio")
PACKAGES = ("xinference", "xoscar", "fastapi", "starlette", "uvicorn", "pydantic", "httpx",
            "uvloop", "httptools", "orjson", "xllamacpp", "torch", "transformers",
            "sentence-transformers", "faster-whisper", "ctranslate2", "hibari-tts", "av")
# Modules whose first import compiles most bytecode; warmed once so timings mean steady state.
WARM_IMPORTS = ("xinference.deploy.local", "xinference.api.app", "xinference.core.supervisor",
                "xinference.core.worker", "xllamacpp", "sentence_transformers",
                "xinference.model.engines.st_embedding")

logger = logging.getLogger("benchmarks")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer requests and shorter windows (about 3 minutes)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated measurements to run, of: {', '.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--threads", type=int, default=1,
                        help="engine threads, the same on both sides (default 1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    args.sections = selected_sections(args.only, parser)
    return args


def selected_sections(only: str, parser: Optional[argparse.ArgumentParser] = None) -> List[str]:
    """The measurements named in ``--only`` (all when empty), in the run's order."""
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        message = f"unknown measurement {unknown[0]!r}; choose from {', '.join(SECTIONS)}"
        if parser is not None:
            parser.error(message)
        raise ValueError(message)
    return [s for s in SECTIONS if not names or s in names]


def warm_bytecode() -> None:
    """Compile and cache the heavy imports once, in a child, if they have no .pyc yet."""
    missing = []
    for name in WARM_IMPORTS:
        spec = importlib.util.find_spec(name.split(".")[0])
        origin = getattr(spec, "origin", None) if spec else None
        if origin and origin.endswith(".py"):
            if not os.path.exists(importlib.util.cache_from_source(origin)):
                missing.append(name)
    if missing:
        print(f"compiling bytecode for {', '.join(missing)} (first run only)", flush=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        code = "; ".join(f"import {name}" for name in WARM_IMPORTS)
        subprocess.run([sys.executable, "-c", code], env=env, timeout=600, check=False)


@contextmanager
def native_stderr_to(path: Path):
    """Send what engines write to file descriptor 2 (llama.cpp, torch) to ``path``.

    Python's own messages (progress, tracebacks, logging) stay on the terminal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    terminal = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 2)
    os.close(log)
    previous = sys.stderr
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        os.close(terminal)
        sys.stderr.close()
        sys.stderr = previous


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_sections(bench, sections: List[str]) -> None:
    for name in sections:
        started = time.perf_counter()
        print(f"== {name} ...", flush=True)
        try:
            if bench.server is not None:
                bench.settle()
            importlib.import_module(f"benchmarks.{name}").run(bench)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed measurement does not stop the rest
            traceback.print_exc()
            bench.report.error(name, f"{type(exc).__name__}: {exc}")
            if bench.server is not None:
                bench.report.details.setdefault("server_log_tail", bench.server.log_tail())
        print(f"   {name} took {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    engine_log = args.json.with_suffix(".engines.log")
    with native_stderr_to(engine_log):
        code = run(args)
    print(f"engine messages of this process: {engine_log}")
    return code


def run(args: argparse.Namespace) -> int:
    """Run the selected measurements, print the table, write the JSON; the exit code."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The server and this process keep compiled bytecode, like a pip-installed deployment.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    signal.signal(signal.SIGTERM, _interrupt)

    from .context import Bench, Plan

    report = Report(meta={"args": {"quick": args.quick, "only": args.sections,
                                   "threads": args.threads},
                          "machine_start": machine_facts(), "packages": package_versions(PACKAGES)})
    bench = Bench(Plan(quick=args.quick, threads=args.threads), report)
    started, code = time.perf_counter(), 0
    try:
        warm_bytecode()
        run_sections(bench, args.sections)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr, flush=True)
        report.error("run", "interrupted")
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            bench.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    report.meta["machine_end"] = machine_facts()
    report.meta["seconds"] = round(time.perf_counter() - started, 1)
    report.rows.sort(key=lambda r: r.section[:1])  # sections are numbered 1-5
    print()
    print(format_table(report.rows))
    for skip in report.skipped:
        print(f"skipped: [{skip['section']}] {skip['reason']}")
    for error in report.errors:
        print(f"error: [{error['section']}] {error['message']}")
    path = report.write_json(args.json)
    print(f"\n{len(report.rows)} figures in {report.meta['seconds']} s; JSON: {path}")
    return code or (1 if report.errors else 0)


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Engine threads (llama.cpp, torch schedulers) must not keep the process alive.
    os._exit(exit_code)
