"""A real ``xinference-local`` in a subprocess: start, launch models by REST, measure, stop.

The server gets a free 127.0.0.1 port and a temporary XINFERENCE_HOME, runs in
its own session (a Ctrl-C in the terminal reaches the benchmark, which then stops
the server itself), and is always stopped with bounded waits: SIGINT, then
SIGKILL for it and every process it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx
import psutil

STOP_GRACE_SECONDS = 20.0
READY_TIMEOUT_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss_mb(pid: int) -> Dict[str, float]:
    """Resident memory (MB) of ``pid`` and of each of its descendants, and the sum."""
    root = psutil.Process(pid)
    out = {"main": root.memory_info().rss / 2**20, "children": {}}
    for child in root.children(recursive=True):
        try:
            out["children"][str(child.pid)] = child.memory_info().rss / 2**20
        except psutil.Error:
            continue
    out["total"] = out["main"] + sum(out["children"].values())
    return out


class LocalServer:
    """One ``xinference-local --no-default-model`` for the whole run."""

    def __init__(self, env: Optional[Dict[str, str]] = None, log_level: str = "WARNING"):
        self.home = Path(tempfile.mkdtemp(prefix="xinf-bench-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "server.out"
        self._env = env or {}
        self._log_level = log_level
        self.process: Optional[subprocess.Popen] = None
        self._seen: Dict[int, psutil.Process] = {}
        self.ready_seconds: Optional[float] = None

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Spawn the server; returns seconds until ``GET /v1/models`` answers 200."""
        env = dict(os.environ, XINFERENCE_HOME=str(self.home), **self._env)
        env.pop("XINFERENCE_ENDPOINT", None)
        cmd = [sys.executable, "-m", "xinference.deploy.local", "--no-default-model",
               "-H", "127.0.0.1", "-p", str(self.port), "--log-level", self._log_level]
        with open(self.log_path, "w") as out:
            started = time.perf_counter()
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        self._remember()
        deadline = started + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"xinference-local exited early:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.base_url}/v1/models").status_code == 200:
                        self.ready_seconds = time.perf_counter() - started
                        return self.ready_seconds
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
        raise RuntimeError(f"xinference-local was not ready within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _remember(self) -> None:
        """Note every process of the server's tree, so that stop() can reap them all."""
        if self.process is None:
            return
        try:
            root = psutil.Process(self.process.pid)
            self._seen.setdefault(root.pid, root)
            for child in root.children(recursive=True):
                self._seen.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def launch(self, body: Dict[str, Any], timeout: float = 300.0) -> Dict[str, Any]:
        """``POST /v1/models`` (waits until READY); adds ``seconds`` to the answer."""
        started = time.perf_counter()
        resp = httpx.post(f"{self.base_url}/v1/models", json=body, timeout=timeout)
        seconds = time.perf_counter() - started
        if resp.status_code != 200:
            raise RuntimeError(f"launch of {body.get('model_name')} failed "
                               f"({resp.status_code}): {resp.text[:2000]}")
        self._remember()
        info = httpx.get(f"{self.base_url}/v1/models/{resp.json()['model_uid']}", timeout=10)
        status = info.json().get("status") if info.status_code == 200 else info.text
        if status != "READY":
            raise RuntimeError(f"{body.get('model_name')} is {status} after its launch")
        return {**resp.json(), "seconds": seconds}

    def terminate(self, model_uid: str, timeout: float = 60.0) -> None:
        httpx.delete(f"{self.base_url}/v1/models/{model_uid}", timeout=timeout)

    def rss(self) -> Dict[str, float]:
        self._remember()
        return tree_rss_mb(self.process.pid)

    def pids(self) -> List[int]:
        self._remember()
        return sorted(self._seen)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGINT (the server stops its models), then SIGKILL whatever is left."""
        if self.process is None:
            return
        self._remember()
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGINT)
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for proc in self._seen.values():
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs([p for p in self._seen.values()], timeout=5)
        if self.process.poll() is None:
            self.process.wait(timeout=5)
        self.process = None
        shutil.rmtree(self.home, ignore_errors=True)
