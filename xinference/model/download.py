"""Downloading a model's files from a hub into the cache.

:func:`ensure_model_files` is what a worker calls before it starts a model's process:
an explicit ``model_path``, a spec's ``model_uri`` and an installed offline package
win and never touch the network; a finished download in the cache is used as it is;
otherwise the files are downloaded from the hub, then used.

The hub is the spec's own ``model_hub`` when it names ModelScope or CSGHub, else
``XINFERENCE_MODEL_SRC`` (default ``huggingface``):

- ``huggingface``: ``huggingface_hub`` (``HF_ENDPOINT`` picks the server, ``HF_TOKEN``
  opens private or gated repositories). A ``ggufv2`` spec downloads the one GGUF file of
  its quantization; other formats download the repository, leaving out the weights of
  other formats (``*.gguf``, ONNX, and ``*.bin`` when ``*.safetensors`` are there).
- ``modelscope``: ``modelscope`` (``MODELSCOPE_ENDPOINT`` picks the server).
- ``csghub``: not supported yet (a clear error).

Transient failures (hub unreachable, HTTP 408/429/5xx) are retried up to
``XINFERENCE_DOWNLOAD_MAX_ATTEMPTS`` times, resuming what was already fetched; others
(repository, revision or file not found, access denied) fail at once. Every failure is a
:class:`ModelLaunchError` naming the model, the hub, the repository and the cause. While
a download runs, the log gets its progress (percent and bytes) every few seconds. See
:mod:`xinference.model.cache` for the completion marker.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import ModelLaunchError
from ..settings import MODEL_SOURCES, Settings, get_settings
from . import cache
from .files import cache_path, offline_package_path, resolve_model_path
from .registry import ModelFamily, ModelSpec

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 5.0
RETRY_BASE_DELAY = 1.0
RETRY_MAX_DELAY = 30.0
_DEFAULT_ENDPOINTS = {"huggingface": ("HF_ENDPOINT", "https://huggingface.co"),
                      "modelscope": ("MODELSCOPE_ENDPOINT", "https://www.modelscope.cn"),
                      "csghub": ("", "")}
_OTHER_FORMATS = ["*.gguf", "*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot",
                  "*.tflite", "*.mlmodel", "coreml/*"]
_TORCH_BINS = ["*.bin", "*.pt", "*.pth"]


@dataclass
class DownloadJob:
    """One download: where from (hub, repository, revision), what, and where to."""

    model_name: str
    hub: str
    repo_id: str
    revision: Optional[str]
    folder: Path
    file_name: Optional[str]
    record: Dict[str, Any]
    endpoint: str = ""
    total_bytes: Optional[int] = None
    files: List[str] = field(default_factory=list)
    commit: Optional[str] = None

    @property
    def target(self) -> Path:
        return self.folder / self.file_name if self.file_name else self.folder

    def error(self, cause: str, param: Optional[str] = None) -> ModelLaunchError:
        where = f"{self.hub} ({self.endpoint})" if self.endpoint else self.hub
        return ModelLaunchError(
            f"Could not download {self.model_name} from {where}, repository {self.repo_id!r} "
            f"at revision {self.revision or 'default'}: {cause}", param=param)


def choose_hub(spec: ModelSpec, settings: Settings) -> str:
    """The spec's own hub when it names one other than Hugging Face, else XINFERENCE_MODEL_SRC."""
    hub = (spec.model_hub or "huggingface").lower()
    if hub == "huggingface":
        hub = settings.model_src
    if hub not in MODEL_SOURCES:
        raise ModelLaunchError(f"Unknown model hub {spec.model_hub!r}; expected one of "
                               f"{', '.join(MODEL_SOURCES)}", param="model_hub")
    return hub


def hub_endpoint(hub: str) -> str:
    """The server a hub's client will talk to (its endpoint variable, or its default)."""
    variable, default = _DEFAULT_ENDPOINTS[hub]
    return (os.environ.get(variable) or default).rstrip("/") if variable else default


def ensure_model_files(family: ModelFamily, spec: ModelSpec, quantization: Optional[str],
                       cache_root: Path, model_path: Optional[str] = None,
                       settings: Optional[Settings] = None,
                       progress_interval: float = PROGRESS_INTERVAL) -> str:
    """The file (GGUF) or folder the engine should load, downloading it first if need be."""
    if model_path or spec.model_uri or not spec.model_id:
        return resolve_model_path(family, spec, quantization, cache_root, model_path)
    file_name = spec.file_name(quantization)
    if spec.offline_package:
        root = offline_package_path(spec.offline_package)
        target = root / file_name if root is not None and file_name else root
        if target is not None and target.exists():
            return str(target)
    folder = cache_path(cache_root, family, spec, quantization)
    target = folder / file_name if file_name else folder
    if cache.read_marker(folder) is None and target.exists():
        return str(target)  # put there by hand, not by a download
    return download_model(family, spec, quantization, cache_root, settings, progress_interval)


def download_model(family: ModelFamily, spec: ModelSpec, quantization: Optional[str],
                   cache_root: Path, settings: Optional[Settings] = None,
                   progress_interval: float = PROGRESS_INTERVAL) -> str:
    """Download a spec's files into the cache (unless a finished download is there)."""
    settings = settings or get_settings()
    if not spec.model_id:
        raise ModelLaunchError(f"{family.model_name} has no model_id to download from",
                               param="model_id")
    job = _make_job(family, spec, quantization, cache_root, choose_hub(spec, settings))
    if cache.is_complete(job.folder, job.target):
        return str(job.target)
    fetch = _fetcher(job)
    with cache.folder_lock(job.folder):
        if cache.is_complete(job.folder, job.target):
            return str(job.target)
        cache.write_marker(job.folder, dict(job.record, complete=False, started=time.time()))
        try:
            _run_attempts(job, fetch, max(1, settings.download_max_attempts), progress_interval)
        except ModelLaunchError:
            _discard_if_empty(job.folder)
            raise
        cache.write_marker(job.folder, dict(
            job.record, complete=True, finished=time.time(), commit=job.commit,
            files=job.files))
    return str(job.target)


def _discard_if_empty(folder: Path) -> None:
    """Remove a failed download's folder when no byte of the model arrived (keeps resumables)."""
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if path.is_file() and (not relative[0].startswith(".") or path.suffix == ".incomplete"):
            return
    shutil.rmtree(folder, ignore_errors=True)


def _make_job(family: ModelFamily, spec: ModelSpec, quantization: Optional[str],
              cache_root: Path, hub: str) -> DownloadJob:
    file_name = spec.file_name(quantization)
    record = {"model_name": family.model_name, "model_type": family.model_type,
              "model_format": spec.model_format,
              "model_size_in_billions": spec.model_size_in_billions,
              "quantization": quantization,
              "model_version": cache.model_version(family, spec, quantization),
              "model_hub": hub, "model_id": spec.model_id,
              "model_revision": spec.model_revision, "file_name": file_name}
    revision = spec.model_revision or ("main" if hub == "huggingface" else None)
    return DownloadJob(family.model_name, hub, spec.model_id, revision,
                       cache_path(cache_root, family, spec, quantization), file_name, record,
                       endpoint=hub_endpoint(hub))


def _fetcher(job: DownloadJob) -> Callable[[DownloadJob], None]:
    if job.hub == "csghub":
        raise job.error("downloads from CSGHub are not supported yet; set "
                        "XINFERENCE_MODEL_SRC=huggingface or modelscope, or point the spec at "
                        "local files with model_uri", param="model_hub")
    if job.hub == "huggingface":
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise job.error("HF_HUB_OFFLINE is set in this worker's environment and the files "
                            "are not in the cache; unset it to download, or give model_path")
        return _fetch_huggingface
    return _fetch_modelscope


def _run_attempts(job: DownloadJob, fetch: Callable[[DownloadJob], None], attempts: int,
                  progress_interval: float) -> None:
    for attempt in range(1, attempts + 1):
        try:
            with _Progress(job, progress_interval):
                fetch(job)
            return
        except ModelLaunchError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified, then retried or reported
            transient, cause, param = classify_error(exc)
            if not transient:
                raise job.error(cause, param) from None
            if attempt == attempts:
                raise job.error(f"{cause} (gave up after {attempts} attempts; "
                                "XINFERENCE_DOWNLOAD_MAX_ATTEMPTS sets how many)") from None
            delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
            logger.warning("Download of %s from %s failed (attempt %d of %d): %s; retrying in "
                           "%.1f s", job.repo_id, job.hub, attempt, attempts, cause, delay)
            time.sleep(delay)


class _Progress:
    """Logs how far a download is (bytes in its folder against the expected total)."""

    def __init__(self, job: DownloadJob, interval: float):
        self.job = job
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"download-progress-{job.model_name}")
        self._started = 0.0
        self._last = 0

    def __enter__(self) -> "_Progress":
        self._started = time.monotonic()
        self._last = cache.folder_size(self.job.folder)
        logger.info("Downloading %s from %s: %s (revision %s) into %s", self.job.model_name,
                    self.job.hub, self.job.repo_id, self.job.revision or "default",
                    self.job.folder)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if exc_type is None:
            size = cache.folder_size(self.job.folder)
            logger.info("Downloaded %s (%s) from %s in %.1f s", self.job.model_name,
                        _human(size), self.job.hub, time.monotonic() - self._started)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def report(self) -> None:
        done = cache.folder_size(self.job.folder)
        total = self.job.total_bytes
        if not total and done == self._last:
            return  # nothing new to say (size unknown, or not known yet)
        self._last = done
        if total:
            percent = min(100, int(done * 100 / total))
            logger.info("Downloading %s: %d%% (%s of %s)", self.job.model_name, percent,
                        _human(min(done, total)), _human(total))
        else:
            logger.info("Downloading %s: %s so far", self.job.model_name, _human(done))


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def weight_ignore_patterns(file_names: List[str]) -> List[str]:
    """Patterns of files a non-GGUF download skips: other formats' weights."""
    patterns = list(_OTHER_FORMATS)
    if any(name.endswith(".safetensors") for name in file_names):
        patterns += _TORCH_BINS
    return patterns


def _fetch_huggingface(job: DownloadJob) -> None:
    try:
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise job.error("huggingface_hub is not installed: pip install 'xinference[hub]'") \
            from None
    disable_progress_bars()  # the log gets our own progress lines instead
    info = HfApi(endpoint=job.endpoint).model_info(job.repo_id, revision=job.revision,
                                                   files_metadata=True)
    sizes = {s.rfilename: s.size or 0 for s in (info.siblings or [])}
    job.commit = info.sha
    if job.file_name:
        if job.file_name not in sizes:
            raise job.error(_missing_file(job.file_name, sizes), param="model_file_name_template")
        job.files, job.total_bytes = [job.file_name], sizes[job.file_name]
        hf_hub_download(job.repo_id, job.file_name, revision=info.sha, local_dir=job.folder,
                        endpoint=job.endpoint)
        return
    ignore = weight_ignore_patterns(list(sizes))
    job.files = [n for n in sizes if not any(fnmatch.fnmatch(n, p) for p in ignore)]
    job.total_bytes = sum(sizes[n] for n in job.files)
    snapshot_download(job.repo_id, revision=info.sha, local_dir=job.folder,
                      endpoint=job.endpoint, ignore_patterns=ignore)


def _missing_file(file_name: str, sizes: Dict[str, int]) -> str:
    ggufs = sorted(n for n in sizes if n.endswith(".gguf"))
    known = f"; its GGUF files are: {', '.join(ggufs[:8])}" if ggufs else ""
    return (f"the repository has no file {file_name!r} (HTTP 404): check the quantization and "
            f"model_file_name_template{known}")


def _fetch_modelscope(job: DownloadJob) -> None:
    try:
        from modelscope.hub.file_download import model_file_download
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        raise job.error("modelscope is not installed: pip install 'xinference[hub]'") from None
    if job.file_name:
        job.files = [job.file_name]
        model_file_download(job.repo_id, job.file_name, revision=job.revision,
                            local_dir=str(job.folder))
        return
    snapshot_download(job.repo_id, revision=job.revision, local_dir=str(job.folder),
                      ignore_patterns=list(_OTHER_FORMATS))
    job.files = sorted(str(p.relative_to(job.folder)) for p in job.folder.rglob("*")
                       if p.is_file() and not p.name.startswith("."))


def _status_of(exc: BaseException) -> Optional[int]:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


_NOT_FOUND = {
    "GatedRepoError": ("the repository is gated: accept its terms on the hub and set HF_TOKEN "
                       "on the worker", "model_id"),
    "RepositoryNotFoundError": ("the repository was not found (HTTP 404): check model_id, or "
                                "the hub (XINFERENCE_MODEL_SRC); a private repository also "
                                "needs a token (HF_TOKEN)", "model_id"),
    "RevisionNotFoundError": ("the revision was not found (HTTP 404): check model_revision",
                              "model_revision"),
    "NoValidRevisionError": ("the revision was not found: check model_revision",
                             "model_revision"),
    "RemoteEntryNotFoundError": ("a file is missing from the repository (HTTP 404)",
                                 "model_file_name_template"),
    "NotExistError": ("the repository or file does not exist on the hub (404): check model_id",
                      "model_id"),
    "OfflineModeIsEnabled": ("HF_HUB_OFFLINE is set in this worker's environment; unset it "
                             "to download", None),
}
_UNREACHABLE = {"ConnectError", "TransportError", "NetworkError", "TimeoutException",
                "ConnectionError", "TimeoutError", "RequestTimeoutError"}


def classify_error(exc: BaseException) -> Tuple[bool, str, Optional[str]]:
    """``(transient, cause, param)`` of a hub client's exception (chained causes included)."""
    current: Optional[BaseException] = exc
    for _ in range(6):
        if current is None:
            break
        names = [c.__name__ for c in type(current).__mro__]
        for name in names:
            if name in _NOT_FOUND:
                return (False, *_NOT_FOUND[name])
        status = _status_of(current)
        if status is not None:
            return _classify_status(status, current)
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return False, "no space left on the device that holds the cache", None
        if "ServerError" in names:
            return True, f"the hub reported a server error ({_first_line(current)})", None
        if _UNREACHABLE.intersection(names):
            cause = f"{type(current).__name__}: {_first_line(current)}"
            return True, f"the hub is unreachable ({cause})", None
        current = current.__cause__ or current.__context__
    if isinstance(exc, OSError):
        return True, f"{type(exc).__name__}: {_first_line(exc)}", None
    return False, f"{type(exc).__name__}: {_first_line(exc)}", None


def _classify_status(status: int, exc: BaseException) -> Tuple[bool, str, Optional[str]]:
    if status == 404:
        return False, "not found (HTTP 404): check model_id and model_revision", "model_id"
    if status in (401, 403):
        return (False, f"access denied (HTTP {status}): a private or gated repository needs a "
                "token on the worker (HF_TOKEN for Hugging Face)", "model_id")
    if status in (408, 429) or status >= 500:
        return True, f"the hub answered HTTP {status} ({_first_line(exc)})", None
    return False, f"the hub answered HTTP {status} ({_first_line(exc)})", None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
