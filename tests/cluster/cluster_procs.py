"""Helpers for the multi-process cluster tests: start/stop real processes, a chat load."""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import httpx
import psutil
from helpers import free_port

MODEL_NAME = "smollm2-135m-instruct"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: str

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()[-6000:]

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Cluster:
    """A supervisor and workers as OS processes sharing one temporary XINFERENCE_HOME."""

    home: str
    env: Dict[str, str]
    port: int = field(default_factory=free_port)
    supervisor_port: int = field(default_factory=free_port)
    supervisor: Optional[Proc] = None
    workers: List[Proc] = field(default_factory=list)
    _all: List[Proc] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: List[str]) -> Proc:
        log_path = os.path.join(self.home, f"{name}-{len(self._all)}.out")
        with open(log_path, "w") as out:
            popen = subprocess.Popen([sys.executable, "-m", *args], stdout=out,
                                     stderr=subprocess.STDOUT, env=self.env)
        proc = Proc(name, popen, log_path)
        self._all.append(proc)
        return proc

    def start_supervisor(self) -> Proc:
        self.supervisor = self._spawn("supervisor", [
            "xinference.deploy.supervisor", "-H", "127.0.0.1", "-p", str(self.port),
            "--supervisor-port", str(self.supervisor_port)])
        return self.supervisor

    def start_worker(self) -> Proc:
        worker = self._spawn(f"worker{len(self.workers)}", [
            "xinference.deploy.worker", "-e", self.base_url, "-H", "127.0.0.1"])
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} (pid {p.popen.pid}) =====\n{p.log()}" for p in self._all)

    def notable_log_lines(self, limit: int = 80) -> str:
        """The warnings and errors of every process's xinference.log (for a failed test)."""
        lines = []
        for path in sorted(glob.glob(os.path.join(self.home, "logs", "*", "xinference.log"))):
            with open(path, errors="replace") as fh:
                lines += [f"{os.path.basename(os.path.dirname(path))}: {line.rstrip()}"
                          for line in fh if " WARNING " in line or " ERROR " in line]
        return "\n".join(lines[-limit:])

    def model_processes(self, worker: Proc) -> List[psutil.Process]:
        """The live replica processes (xoscar sub-pools) a worker started."""
        try:
            children = psutil.Process(worker.popen.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                and "start_sub_pool" in " ".join(c.cmdline())]

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every process still running (and its children), SIGKILL what outlives it."""
        descendants = []
        for proc in self._all:
            try:
                descendants += psutil.Process(proc.popen.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
            if proc.alive():
                proc.popen.send_signal(signal.SIGCONT)
                proc.popen.terminate()
        deadline = time.monotonic() + timeout
        for proc in self._all:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)
        for child in descendants:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


@dataclass
class Outcome:
    kind: str  # ok | cut (failed after its first event) | unreachable | failed
    started: float
    ended: float
    detail: str = ""


class ChatLoad:
    """Threads sending chat requests (streaming and plain) until stopped; records every outcome.

    ``unreachable``: the gateway refused the connection (nothing was sent); ``cut``:
    the answer broke after its first event; ``failed``: anything else that is not the
    exact echo of the prompt.
    """

    def __init__(self, base_url: str, model_uid: str, threads: int = 3):
        self.base_url = base_url
        self.model_uid = model_uid
        self.outcomes: List[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _loop(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60, trust_env=False) as client:
            count = 0
            while not self._stop.is_set() and count < 5000:
                count += 1
                prompt = f"thread {index} request {count} says hello"
                stream = index != 0
                started = time.monotonic()
                kind, detail = self._one(client, prompt, stream)
                with self._lock:
                    self.outcomes.append(Outcome(kind, started, time.monotonic(), detail))
                if kind == "unreachable":
                    time.sleep(0.1)

    def _one(self, client: httpx.Client, prompt: str, stream: bool):
        body = {"model": self.model_uid, "stream": stream,
                "messages": [{"role": "user", "content": prompt}]}
        got_event = False
        try:
            if not stream:
                resp = client.post("/v1/chat/completions", json=body)
                if resp.status_code != 200:
                    return "failed", f"{resp.status_code} {resp.text[:300]}"
                text = resp.json()["choices"][0]["message"]["content"]
                return ("ok", "") if text == f"echo: {prompt}" else ("failed", f"wrong: {text}")
            with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    return "failed", f"{resp.status_code} {resp.read()[:300]!r}"
                text = ""
                for line in resp.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[len("data: "):])
                    if "error" in event:
                        return ("cut" if got_event else "failed"), event["error"]["message"]
                    got_event = True
                    if event["choices"]:
                        text += event["choices"][0]["delta"].get("content") or ""
            return ("ok", "") if text == f"echo: {prompt}" else ("failed", f"wrong: {text!r}")
        except httpx.ConnectError as exc:
            return "unreachable", str(exc)
        except httpx.TransportError as exc:
            return ("cut" if got_event else "dropped"), f"{type(exc).__name__}: {exc}"

    def between(self, start: float, end: float) -> List[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.started >= start and o.started < end]

    def summary(self, outcomes: List[Outcome]) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
        return counts
