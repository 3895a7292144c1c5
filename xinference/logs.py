"""Logging for every process: console plus a rotating file under XINFERENCE_HOME/logs."""

from __future__ import annotations

import logging
import logging.handlers
import time
from pathlib import Path

from .settings import Settings

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 100 * 1024 * 1024
BACKUPS = 30


def new_log_file(settings: Settings, role: str) -> Path:
    """``<home>/logs/<role>_<ms>/xinference.log`` (role: local, supervisor or worker)."""
    folder = settings.logs_dir / f"{role}_{int(time.time() * 1000)}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "xinference.log"


def configure_process_logging(log_file: str, level: str = "INFO", console: bool = False) -> None:
    """Send this process's logs to ``log_file`` (rotating 100 MB x 30), and to stderr if asked."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    formatter = logging.Formatter(LOG_FORMAT)
    for handler in list(root.handlers):
        if getattr(handler, "_xinference", False):
            root.removeHandler(handler)
    file_handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handlers = [file_handler]
    if console:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._xinference = True  # type: ignore[attr-defined]
        root.addHandler(handler)
