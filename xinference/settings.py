"""Every ``XINFERENCE_*`` environment variable, typed, with its default.

Code reads settings through :func:`get_settings` (or builds a :class:`Settings`
from an explicit mapping in tests); nothing else in the package reads
``XINFERENCE_*`` variables from ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

DEFAULT_ENDPOINT = "http://127.0.0.1:9997"
MODEL_SOURCES = ("huggingface", "modelscope", "csghub")
LAUNCH_STRATEGIES = ("IDLE_FIRST_LAUNCH_STRATEGY", "SPREAD_LAUNCH_STRATEGY", "PACK_LAUNCH_STRATEGY")


class SettingsError(ValueError):
    """An ``XINFERENCE_*`` variable holds a value that cannot be used."""


def _env_name(field_name: str) -> str:
    return "XINFERENCE_" + field_name.upper()


@dataclass(frozen=True)
class Settings:
    """Typed view of the ``XINFERENCE_*`` variables (field ``home`` <- ``XINFERENCE_HOME``)."""

    home: Path = field(default_factory=lambda: Path.home() / ".xinference")
    endpoint: str = DEFAULT_ENDPOINT
    model_src: str = "huggingface"
    health_check_failure_threshold: int = 5
    health_check_interval: float = 5.0
    health_check_timeout: float = 10.0
    disable_health_check: bool = False
    disable_metrics: bool = False
    download_max_attempts: int = 3
    sse_ping_attempts_seconds: float = 600.0
    max_tokens: Optional[int] = None
    allowed_ips: Optional[str] = None
    batch_size: int = 32
    batch_interval: float = 0.003
    allow_multi_replica_per_gpu: bool = True
    launch_strategy: str = "IDLE_FIRST_LAUNCH_STRATEGY"
    enable_virtual_env: bool = True
    virtual_env_skip_installed: bool = True
    csg_token: Optional[str] = None
    csg_endpoint: str = "https://hub-stg.opencsg.com/"
    model_actor_auto_recover_limit: int = 3
    heartbeat_interval: float = 2.0
    worker_lost_timeout: float = 10.0
    responses_store_size: int = 1000
    responses_store_max_bytes: int = 256 << 20
    responses_store_ttl: float = 86400.0
    text_to_image_batching_size: Optional[str] = None
    image_url_ttl: float = 3600.0
    image_url_store_max_bytes: int = 256 << 20
    image_request_max_bytes: int = 32 << 20
    image_fetch_hosts: Optional[str] = None
    image_fetch_timeout: float = 10.0
    image_max_bytes: int = 10 << 20
    image_max_count: int = 8

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """Read every field from ``environ`` (default ``os.environ``); unset keeps the default."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(_env_name(f.name))
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.model_src not in MODEL_SOURCES:
            raise SettingsError(
                f"XINFERENCE_MODEL_SRC={self.model_src!r} is not one of {', '.join(MODEL_SOURCES)}"
            )
        if self.launch_strategy not in LAUNCH_STRATEGIES:
            raise SettingsError(
                f"XINFERENCE_LAUNCH_STRATEGY={self.launch_strategy!r} is not one of "
                f"{', '.join(LAUNCH_STRATEGIES)}"
            )
        if self.batch_size < 1:
            raise SettingsError("XINFERENCE_BATCH_SIZE must be at least 1")
        if self.model_actor_auto_recover_limit < 0:
            raise SettingsError("XINFERENCE_MODEL_ACTOR_AUTO_RECOVER_LIMIT must be 0 or more")
        self._validate_images()
        if self.image_max_bytes < 1 or self.image_max_count < 0 or self.image_fetch_timeout <= 0:
            raise SettingsError("XINFERENCE_IMAGE_MAX_BYTES and XINFERENCE_IMAGE_FETCH_TIMEOUT "
                                "must be positive, XINFERENCE_IMAGE_MAX_COUNT 0 or more")

    def _validate_images(self) -> None:
        """The /v1/images settings (see docs/images.md)."""
        if self.image_url_ttl <= 0 or self.image_url_store_max_bytes < 1:
            raise SettingsError("XINFERENCE_IMAGE_URL_TTL and XINFERENCE_IMAGE_URL_STORE_MAX_BYTES "
                                "must be positive")
        if self.image_request_max_bytes < 1:
            raise SettingsError("XINFERENCE_IMAGE_REQUEST_MAX_BYTES must be positive")
        _ = self.text_to_image_pixel_budget

    @property
    def text_to_image_pixel_budget(self) -> int:
        """XINFERENCE_TEXT_TO_IMAGE_BATCHING_SIZE as pixels per pipeline call: "1024*1024",
        "1024x1024" or a number of pixels; unset: 1024*1024."""
        raw = (self.text_to_image_batching_size or "").strip()
        if not raw:
            return 1024 * 1024
        sides = raw.lower().replace("x", "*").split("*")
        try:
            pixels = 1
            for side in sides:
                pixels *= int(side)
        except ValueError:
            pixels = 0
        if len(sides) > 2 or pixels < 1:
            raise SettingsError(f"XINFERENCE_TEXT_TO_IMAGE_BATCHING_SIZE={raw!r} is not a pixel "
                                "count such as 1024*1024")
        return pixels

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def registrations_dir(self) -> Path:
        return self.home / "model" / "registrations"

    @property
    def virtualenv_dir(self) -> Path:
        return self.home / "virtualenv" / "v4"


def _convert(name: str, type_name: str, raw: str):
    type_name = str(type_name)
    try:
        if "bool" in type_name:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "int" in type_name:
            return int(raw)
        if "float" in type_name:
            return float(raw)
        if "Path" in type_name:
            return Path(raw).expanduser()
        return raw
    except ValueError:
        raise SettingsError(
            f"{_env_name(name)}={raw!r} is not a valid "
            f"{type_name.replace('Optional[', '').rstrip(']')}"
        ) from None


# Variables accepted for Xinference's sake that nothing acts on yet: a server refuses to
# start with one of them set rather than ignore it.
NOT_YET_SUPPORTED = {
    "allowed_ips": "an IP allow-list is not enforced yet; bind to 127.0.0.1 (the default) "
                   "or filter clients with a firewall",
    "virtual_env_skip_installed": "per-model virtualenvs are not built yet",
    "csg_token": "downloads from CSGHub are not supported yet",
    "csg_endpoint": "downloads from CSGHub are not supported yet",
}


def refuse_unsupported(environ: Optional[Mapping[str, str]] = None) -> None:
    """Raise :class:`SettingsError` naming the first variable of :data:`NOT_YET_SUPPORTED`
    that is set (servers call this at start, so no setting is silently ignored)."""
    environ = os.environ if environ is None else environ
    for name, why in NOT_YET_SUPPORTED.items():
        if environ.get(_env_name(name), "").strip():
            raise SettingsError(f"{_env_name(name)} is set, but {why}; unset it to start")


_cached: Optional[Settings] = None


def get_settings(refresh: bool = False) -> Settings:
    """The process-wide settings, read from the environment once (``refresh`` re-reads)."""
    global _cached
    if _cached is None or refresh:
        _cached = Settings.from_env()
    return _cached
