"""Typed messages that cross process boundaries between gateway, supervisor and workers.

They travel through xoscar as pickled dataclasses; each has ``to_dict`` for
the REST answers built from it.
"""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from ..model.engines.base import EngineConfig

# Keys of POST /v1/models that are ours; every other key is an engine option.
LAUNCH_FIELDS = (
    "model_name", "model_type", "model_uid", "model_engine", "model_format",
    "model_size_in_billions", "quantization", "replica", "n_gpu", "n_worker", "worker_ip",
    "gpu_idx", "request_limits", "enable_thinking", "enable_virtual_env",
    "virtual_env_packages", "virtual_env_find_links", "envs", "model_path",
    "peft_model_config", "replica_config", "context_length", "trust_remote_code",
)


class ReplicaStatus(str, enum.Enum):
    LAUNCHING = "LAUNCHING"
    READY = "READY"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"


@dataclass
class LaunchRequest:
    """What a user asked for when launching a model (REST body / CLI options / SDK call)."""

    model_name: str
    model_type: str = "LLM"
    model_uid: Optional[str] = None
    model_engine: Optional[str] = None
    model_format: Optional[str] = None
    model_size_in_billions: Optional[str] = None
    quantization: Optional[str] = None
    replica: int = 1
    n_gpu: Optional[Any] = "auto"
    worker_ip: Optional[str] = None
    gpu_idx: Optional[List[int]] = None
    enable_thinking: Optional[bool] = None
    context_length: Optional[int] = None
    model_path: Optional[str] = None
    envs: Dict[str, str] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ReplicaSpec:
    """One replica for a worker to start: the engine config plus its process environment."""

    replica_uid: str
    engine_config: EngineConfig
    envs: Dict[str, str] = field(default_factory=dict)
    gpu_idx: Optional[List[int]] = None


@dataclass
class ReplicaInfo:
    """Where a replica runs and in what state; ``error`` says why it failed."""

    replica_uid: str
    replica_id: int
    worker_address: str
    status: ReplicaStatus = ReplicaStatus.LAUNCHING
    address: Optional[str] = None
    pid: Optional[int] = None
    error: Optional[str] = None
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out


@dataclass
class ModelRecord:
    """A launched model as the supervisor tracks it."""

    model_uid: str
    request: LaunchRequest
    engine_config: EngineConfig
    family: Dict[str, Any]
    replicas: List[ReplicaInfo] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def status(self) -> str:
        states = {r.status for r in self.replicas}
        if ReplicaStatus.READY in states:
            return ReplicaStatus.READY.value
        if ReplicaStatus.LAUNCHING in states:
            return ReplicaStatus.LAUNCHING.value
        if ReplicaStatus.FAILED in states:
            return ReplicaStatus.FAILED.value
        return ReplicaStatus.TERMINATING.value

    def describe(self) -> Dict[str, Any]:
        """The ``GET /v1/models/{uid}`` answer."""
        cfg = self.engine_config
        errors = [r.error for r in self.replicas if r.error]
        out = {
            "model_uid": self.model_uid,
            "model_type": cfg.model_type,
            "model_name": cfg.model_name,
            "model_engine": cfg.engine,
            "model_format": cfg.model_format,
            "model_size_in_billions": cfg.model_size_in_billions,
            "quantization": cfg.quantization,
            "model_lang": self.family.get("model_lang", []),
            "model_ability": self.family.get("model_ability", []),
            "model_description": self.family.get("model_description", ""),
            "context_length": cfg.context_length,
            "replica": len(self.replicas),
            "status": self.status,
            "replicas": [r.to_dict() for r in self.replicas],
            "created": self.created,
        }
        if self.family.get("dimensions"):
            out["dimensions"] = self.family["dimensions"]
            out["max_tokens"] = self.family.get("max_tokens")
        if errors:
            out["error"] = errors[0]
        return out

    def list_entry(self) -> Dict[str, Any]:
        """One item of ``GET /v1/models``: OpenAI's model object plus our fields."""
        desc = self.describe()
        desc.pop("replicas")
        return {"id": self.model_uid, "object": "model", "created": self.created,
                "owned_by": "xinference", **desc}
