"""The model cache on this host: completion markers, listing and removal.

A download goes into ``cache_path(...)``, that is
``<XINFERENCE_HOME>/cache/<type>/<name>-<format>-<size>b[-<quant>]``, and is described
by a marker file, ``.xinference_download.json``, inside that folder. The marker is
written with ``"complete": false`` before the first byte arrives and rewritten with
``"complete": true`` only after every file is in place, so a download that was
interrupted is never taken as complete. A folder with no marker was not made by a
download (files put there by hand); it is used as it is and not listed.

Each cached download has a ``model_version``, ``<name>--<size>B--<format>--<quantization>``
(the size part is left out when the spec has none); ``xinference cached`` lists them and
``xinference remove-cache --model_version ...`` deletes one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..errors import InvalidRequestError, ModelNotFoundError
from .registry import ModelFamily, ModelSpec

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: a lock per process only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

MARKER = ".xinference_download.json"
_LOCAL_LOCKS: Dict[str, threading.Lock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


class CacheBusyError(InvalidRequestError):
    """The cache folder is locked by a download in progress."""


def model_version(family: ModelFamily, spec: ModelSpec, quantization: Optional[str]) -> str:
    """``<name>--<size>B--<format>--<quantization>``: how the cache names one download."""
    parts = [family.model_name]
    if spec.model_size_in_billions:
        parts.append(f"{spec.model_size_in_billions}B")
    parts += [spec.model_format, quantization or "none"]
    return "--".join(parts)


def read_marker(folder: Path) -> Optional[Dict[str, Any]]:
    """The marker of a cache folder, or ``None`` if it has none (or it cannot be read)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_marker(folder: Path, data: Dict[str, Any]) -> None:
    """Write the marker atomically (a reader sees the old one or the new one, never half)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{MARKER}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, folder / MARKER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def target_of(folder: Path, marker: Dict[str, Any]) -> Path:
    """The file (one-file download) or folder the engine loads."""
    file_name = marker.get("file_name")
    return Path(folder) / file_name if file_name else Path(folder)


def is_complete(folder: Path, target: Path) -> bool:
    """True when a download into ``folder`` finished and ``target`` is still there."""
    marker = read_marker(folder)
    return bool(marker and marker.get("complete")) and Path(target).exists()


def folder_size(path: Path) -> int:
    """Bytes under ``path`` (files that vanish while counting are skipped)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                continue
    return total


@contextlib.contextmanager
def folder_lock(folder: Path, blocking: bool = True) -> Iterator[None]:
    """Hold the lock of a cache folder (across processes where ``fcntl`` exists).

    With ``blocking=False`` a held lock raises :class:`CacheBusyError` at once.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    if fcntl is None:  # pragma: no cover
        with _LOCAL_LOCKS_GUARD:
            lock = _LOCAL_LOCKS.setdefault(str(lock_path), threading.Lock())
        if not lock.acquire(blocking):
            raise _busy(folder)
        try:
            yield
        finally:
            lock.release()
        return
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise _busy(folder) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _busy(folder: Path) -> CacheBusyError:
    return CacheBusyError(f"{folder} is being downloaded right now; try again when the "
                          "download has finished", param="model_version")


def _cached_folders(cache_root: Path) -> Iterator[tuple]:
    """``(folder, marker)`` for every folder under ``<cache_root>/<type>/`` with a marker."""
    root = Path(cache_root)
    if not root.is_dir():
        return
    for type_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in type_dir.iterdir() if p.is_dir()):
            marker = read_marker(folder)
            if marker is not None:
                yield folder, marker


def _entry(folder: Path, marker: Dict[str, Any]) -> Dict[str, Any]:
    target = target_of(folder, marker)
    return {
        "model_name": marker.get("model_name"),
        "model_type": marker.get("model_type"),
        "model_format": marker.get("model_format"),
        "model_size_in_billions": marker.get("model_size_in_billions"),
        "quantization": marker.get("quantization"),
        "model_version": marker.get("model_version"),
        "model_hub": marker.get("model_hub"),
        "model_id": marker.get("model_id"),
        "path": str(folder),
        "real_path": str(target.resolve()),
        "actual_size": folder_size(folder),
        "cache_status": bool(marker.get("complete")) and target.exists(),
    }


def list_cached_models(cache_root: Path, model_name: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every download in the cache (finished or not), optionally only ``model_name``'s.

    ``actual_size`` is in bytes; ``cache_status`` is true only for a finished download
    whose files are still there.
    """
    wanted = model_name.lower() if model_name else None
    return [_entry(folder, marker) for folder, marker in _cached_folders(cache_root)
            if wanted is None or str(marker.get("model_name", "")).lower() == wanted]


def cached_version_paths(cache_root: Path, model_version: str) -> List[str]:
    """The folders ``remove_cached_version`` would delete; 404 when there is none."""
    paths = [str(folder) for folder, marker in _cached_folders(cache_root)
             if marker.get("model_version") == model_version]
    if not paths:
        raise ModelNotFoundError(
            f"No cached model version {model_version!r} on this host; `xinference cached` "
            "lists the cached ones", param="model_version")
    return paths


def remove_cached_version(cache_root: Path, model_version: str) -> List[str]:
    """Delete every folder of ``model_version``; refuses (400) one that is downloading now."""
    removed = []
    for path in cached_version_paths(cache_root, model_version):
        folder = Path(path)
        with folder_lock(folder, blocking=False):
            shutil.rmtree(folder)
        removed.append(path)
        logger.info("Removed the cached model %s at %s", model_version, folder)
    return removed
