"""A stand-in Hugging Face hub on 127.0.0.1 for the download tests.

It serves the routes ``huggingface_hub`` uses to download (runtime notes §7):
``GET /api/models/{repo}[/revision/{rev}]`` (repo info with ``sha`` and
``siblings``), ``GET /api/models/{repo}/tree/{rev}`` (file list) and
``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` (file metadata and bytes, with
``Range`` support for resumed downloads). Unknown repos, revisions and files
get 404s with the hub's ``X-Error-Code`` header. Every request is recorded, and
failures can be injected (``fail``) or the body slowed down (``chunk_delay``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

Content = Union[bytes, Path]

_INFO = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$")
_TREE = re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
CHUNK = 256 * 1024


class FakeRepo:
    """A repository: file name -> bytes or a path on disk (served without copying)."""

    def __init__(self, files: Dict[str, Content]):
        self.files = dict(files)
        digest = hashlib.sha1(json.dumps(sorted(self.files)).encode()).hexdigest()
        self.sha = digest
        self._etags: Dict[str, str] = {}

    def size(self, name: str) -> int:
        content = self.files[name]
        return len(content) if isinstance(content, bytes) else content.stat().st_size

    def etag(self, name: str) -> str:
        if name not in self._etags:
            content = self.files[name]
            digest = hashlib.sha256()
            if isinstance(content, bytes):
                digest.update(content)
            else:
                with open(content, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
            self._etags[name] = digest.hexdigest()
        return self._etags[name]

    def read(self, name: str, start: int, end: int) -> bytes:
        content = self.files[name]
        if isinstance(content, bytes):
            return content[start:end]
        with open(content, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start)


class FakeHub:
    """``with FakeHub({"org/repo": FakeRepo(...)}) as hub:`` serves at ``hub.url``."""

    def __init__(self, repos: Dict[str, FakeRepo], chunk_delay: float = 0.0):
        self.repos = repos
        self.chunk_delay = chunk_delay
        self.requests: List[Tuple[str, str]] = []
        self._failures: List[List] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, method: str, path_suffix: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` ``method`` requests whose path ends with ``path_suffix``."""
        with self._lock:
            self._failures.append([method, path_suffix, status, times])

    def count(self, method: Optional[str] = None, contains: str = "") -> int:
        with self._lock:
            return sum(1 for m, p in self.requests
                       if (method is None or m == method) and contains in p)

    def _take_failure(self, method: str, path: str) -> Optional[int]:
        with self._lock:
            self.requests.append((method, path))
            for failure in self._failures:
                if failure[0] == method and path.endswith(failure[1]) and failure[3] > 0:
                    failure[3] -= 1
                    return failure[2]
        return None

    def start(self) -> "FakeHub":
        handler = type("FakeHubHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    """Answers as the hub does; ``hub`` is set on the subclass made by ``FakeHub.start``."""

    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def _route(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        status = self.hub._take_failure(method, path)
        if status is not None:
            return self._json(status, {"error": f"injected {status}"})
        match = _RESOLVE.match(path)
        if match:
            return self._resolve(method, *match.groups())
        match = _TREE.match(path)
        if match and method == "GET":
            return self._tree(*match.groups())
        match = _INFO.match(path)
        if match and method == "GET":
            return self._info(match.group(1), match.group(2) or "main")
        self._json(404, {"error": "no such route"})

    def _repo(self, repo_id: str, revision: str) -> Optional[FakeRepo]:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if revision not in ("main", repo.sha):
            self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def _info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        siblings = [{"rfilename": name, "size": repo.size(name)} for name in repo.files]
        self._json(200, {"id": repo_id, "modelId": repo_id, "sha": repo.sha,
                         "private": False, "siblings": siblings, "tags": []})

    def _tree(self, repo_id: str, revision: str, sub: Optional[str]) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        prefix = (sub or "").strip("/")
        entries = [{"type": "file", "path": name, "size": repo.size(name),
                    "oid": hashlib.sha1(name.encode()).hexdigest()}
                   for name in repo.files if not prefix or name.startswith(prefix + "/")]
        self._json(200, entries)

    def _resolve(self, method: str, repo_id: str, revision: str, name: str) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if name not in repo.files:
            return self._json(404, {"error": "Entry not found"},
                              {"X-Error-Code": "EntryNotFound"})
        size = repo.size(name)
        start, end = _byte_range(self.headers.get("Range"), size)
        headers = {"ETag": f'"{repo.etag(name)}"', "X-Repo-Commit": repo.sha,
                   "Content-Length": str(end - start), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        status = 200
        if (start, end) != (0, size):
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method == "GET":
            self._send_body(repo, name, start, end)

    def _send_body(self, repo: FakeRepo, name: str, start: int, end: int) -> None:
        position = start
        while position < end:
            block = repo.read(name, position, min(end, position + CHUNK))
            self.wfile.write(block)
            position += len(block)
            if self.hub.chunk_delay:
                time.sleep(self.hub.chunk_delay)

    def _json(self, status: int, body, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _byte_range(header: Optional[str], size: int) -> Tuple[int, int]:
    """``(start, end)`` (end exclusive) of a ``Range: bytes=N-[M]`` header, or the whole file."""
    match = re.match(r"bytes=(\d+)-(\d*)$", (header or "").strip())
    if not match:
        return 0, size
    start = min(int(match.group(1)), size)
    end = int(match.group(2)) + 1 if match.group(2) else size
    return start, min(end, size)
