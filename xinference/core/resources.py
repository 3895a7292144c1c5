"""What a worker has: CPU, memory and GPUs, as plain data that crosses processes.

A worker collects a :class:`WorkerResources` with :func:`collect_local_resources`
when it registers and with each heartbeat; it travels to the supervisor as the
plain dict of :meth:`WorkerResources.to_dict`. Memory is always in bytes.
GPU indexes are NVML's (physical) indexes, the numbers a worker writes into a
model process's ``CUDA_VISIBLE_DEVICES`` (set ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
so CUDA numbers devices the way NVML does).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from ..errors import InvalidRequestError

logger = logging.getLogger(__name__)

GIB = 1 << 30
_UNSET: Any = object()


def format_bytes(n: int) -> str:
    """``8589934592`` -> ``"8.0 GiB"``: how messages show memory."""
    return f"{n / GIB:.1f} GiB"


def host_of(address: str) -> str:
    """The host part of ``"host:port"`` (``"[::1]:80"`` -> ``"::1"``); ``address`` if no port."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def _field(data: Mapping[str, Any], key: str, kind: type, what: str):
    if key not in data or data[key] is None:
        raise InvalidRequestError(f"{what} lacks {key!r}", param=key)
    try:
        return kind(data[key])
    except (TypeError, ValueError):
        raise InvalidRequestError(
            f"{what} has {key}={data[key]!r}, which is not a {kind.__name__}", param=key
        ) from None


@dataclass
class GpuInfo:
    """One GPU as NVML reports it; ``utilization`` is a percentage (0-100)."""

    index: int
    name: str = ""
    memory_total: int = 0
    memory_free: int = 0
    utilization: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GpuInfo":
        """Rebuild from :meth:`to_dict`; a missing or mistyped field raises InvalidRequestError."""
        what = "a GPU entry"
        return cls(
            index=_field(data, "index", int, what),
            name=str(data.get("name") or ""),
            memory_total=_field(data, "memory_total", int, what),
            memory_free=_field(data, "memory_free", int, what),
            utilization=float(data.get("utilization") or 0.0),
        )


@dataclass
class WorkerResources:
    """A worker's resources at ``collected_at`` (wall-clock seconds)."""

    address: str
    host: str
    cpu_count: int
    memory_total: int
    memory_available: int
    gpus: List[GpuInfo] = field(default_factory=list)
    collected_at: float = field(default_factory=time.time)

    def gpu(self, index: int) -> Optional[GpuInfo]:
        """The GPU with NVML index ``index``, or ``None``."""
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu
        return None

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["gpus"] = [g.to_dict() for g in self.gpus]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WorkerResources":
        """Rebuild from :meth:`to_dict`; a missing or mistyped field raises InvalidRequestError."""
        what = "a worker's resource report"
        address = _field(data, "address", str, what)
        gpus = data.get("gpus") or []
        if not isinstance(gpus, (list, tuple)):
            raise InvalidRequestError(f"{what} has gpus={gpus!r}, which is not a list",
                                      param="gpus")
        return cls(
            address=address,
            host=str(data.get("host") or host_of(address)),
            cpu_count=_field(data, "cpu_count", int, what),
            memory_total=_field(data, "memory_total", int, what),
            memory_available=_field(data, "memory_available", int, what),
            gpus=[GpuInfo.from_dict(g) for g in gpus],
            collected_at=float(data.get("collected_at") or time.time()),
        )


def parse_visible_devices(value: Optional[str]) -> Optional[List[str]]:
    """``CUDA_VISIBLE_DEVICES`` as a list of entries; ``None`` when unset (all visible)."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _is_visible(nvml: Any, handle: Any, index: int, visible: Optional[List[str]]) -> bool:
    if visible is None:
        return True
    if str(index) in visible:
        return True
    uuids = [entry for entry in visible if not entry.isdigit()]
    if not uuids:
        return False
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    return any(uuid.startswith(entry) for entry in uuids)


def _read_gpu(nvml: Any, handle: Any, index: int, nvml_error: type) -> GpuInfo:
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml_error:
        utilization = 0.0
    return GpuInfo(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total=int(memory.total),
        memory_free=int(memory.free),
        utilization=utilization,
    )


def _load_nvml() -> Any:
    try:
        import pynvml  # provided by nvidia-ml-py
    except ImportError:
        return None
    return pynvml


def collect_gpus(nvml: Any = None, visible_devices: Any = _UNSET) -> List[GpuInfo]:
    """The GPUs NVML sees (filtered by ``CUDA_VISIBLE_DEVICES``); ``[]`` without NVML or devices.

    ``nvml`` is the ``pynvml`` module or an object with the same functions (tests
    inject one); ``visible_devices`` overrides ``CUDA_VISIBLE_DEVICES``.
    """
    nvml = nvml if nvml is not None else _load_nvml()
    if nvml is None:
        return []
    if visible_devices is _UNSET:
        visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = parse_visible_devices(visible_devices)
    nvml_error = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver or no device: a CPU worker
        logger.debug("NVML unavailable: %s", exc)
        return []
    try:
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            if _is_visible(nvml, handle, index, visible):
                gpus.append(_read_gpu(nvml, handle, index, nvml_error))
        return gpus
    except nvml_error as exc:
        logger.warning("reading GPUs through NVML failed: %s", exc)
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - nothing to release
            pass


def collect_local_resources(
    address: str, host: Optional[str] = None, nvml: Any = None, visible_devices: Any = _UNSET
) -> WorkerResources:
    """This machine's resources for the worker at ``address`` (CPU and memory via psutil)."""
    import psutil

    memory = psutil.virtual_memory()
    host = host or host_of(address) or socket.gethostname()
    return WorkerResources(
        address=address,
        host=host,
        cpu_count=psutil.cpu_count(logical=True) or 1,
        memory_total=int(memory.total),
        memory_available=int(memory.available),
        gpus=collect_gpus(nvml, visible_devices),
    )
