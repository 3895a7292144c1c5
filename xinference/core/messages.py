"""Typed messages that cross process boundaries between gateway, supervisor and workers.

They travel through xoscar as pickled dataclasses; each has ``to_dict`` for
the REST answers built from it. :class:`ReplicaState` is the one replica
state enum of the whole package (the supervisor's state machine in
``cluster_state`` and the REST answers use it alike).
"""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ..model.engines.base import EngineConfig

# Keys of POST /v1/models that are ours; every other key is an engine option.
LAUNCH_FIELDS = (
    "model_name", "model_type", "model_uid", "model_engine", "model_format",
    "model_size_in_billions", "quantization", "replica", "n_gpu", "n_worker", "worker_ip",
    "gpu_idx", "request_limits", "enable_thinking", "enable_virtual_env",
    "virtual_env_packages", "virtual_env_find_links", "envs", "model_path",
    "peft_model_config", "replica_config", "context_length", "trust_remote_code",
)


class ReplicaState(str, enum.Enum):
    """``LAUNCHING -> READY -> FAILED | LOST -> TERMINATING -> removed``; LOST -> READY again."""

    LAUNCHING = "LAUNCHING"
    READY = "READY"
    FAILED = "FAILED"
    LOST = "LOST"
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
class ModelManifest:
    """What a restarted supervisor needs to rebuild a model from the replicas workers report.

    Every replica's spec carries one; the supervisor bumps ``revision`` and
    pushes the new manifest to the workers whenever the replica set changes,
    so the newest reported manifest is the model's current desired state.
    """

    request: LaunchRequest
    family: Dict[str, Any]
    replica: int
    removed: List[int] = field(default_factory=list)
    revision: int = 0
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class ReplicaSpec:
    """One replica for a worker to start: the engine config plus its process environment."""

    replica_uid: str
    engine_config: EngineConfig
    envs: Dict[str, str] = field(default_factory=dict)
    gpu_idx: Optional[List[int]] = None
    index: int = 0
    manifest: Optional[ModelManifest] = None


@dataclass
class ReplicaReport:
    """A replica a worker runs (or is loading), as it tells the supervisor when registering."""

    replica_uid: str
    model_uid: str
    index: int
    gpu_idx: List[int] = field(default_factory=list)
    ready: bool = True
    address: Optional[str] = None
    pid: Optional[int] = None
    spec: Optional[ReplicaSpec] = None


def model_status(states: Sequence[str]) -> str:
    """A model's status from its replicas' states: READY if any replica can serve."""
    for state in ("READY", "LAUNCHING", "LOST", "FAILED"):
        if state in states:
            return state
    return ReplicaState.TERMINATING.value


@dataclass
class ModelRecord:
    """A launched model as the supervisor tracks it (its replicas live in the cluster state)."""

    model_uid: str
    request: LaunchRequest
    engine_config: EngineConfig
    family: Dict[str, Any]
    created: int = field(default_factory=lambda: int(time.time()))
    revision: int = 0

    def describe(self, replicas: List[Dict[str, Any]]) -> Dict[str, Any]:
        """The ``GET /v1/models/{uid}`` answer, given the replicas' dicts."""
        cfg = self.engine_config
        errors = [r["error"] for r in replicas if r.get("error") and r["status"] != "READY"]
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
            "replica": len(replicas),
            "status": model_status([r["status"] for r in replicas]),
            "replicas": replicas,
            "created": self.created,
        }
        if self.family.get("dimensions"):
            out["dimensions"] = self.family["dimensions"]
            out["max_tokens"] = self.family.get("max_tokens")
        if errors:
            out["error"] = errors[0]
        return out

    def list_entry(self, replicas: List[Dict[str, Any]]) -> Dict[str, Any]:
        """One item of ``GET /v1/models``: OpenAI's model object plus our fields."""
        desc = self.describe(replicas)
        desc.pop("replicas")
        return {"id": self.model_uid, "object": "model", "created": self.created,
                "owned_by": "xinference", **desc}

    def manifest(self, replica: int, removed: Sequence[int]) -> ModelManifest:
        return ModelManifest(self.request, self.family, replica, sorted(removed), self.revision,
                             self.created)

    @classmethod
    def from_spec(cls, spec: ReplicaSpec) -> "ModelRecord":
        """Rebuild a model's record from one of its replicas' specs (supervisor restart)."""
        manifest = spec.manifest
        config = EngineConfig(**{**asdict(spec.engine_config), "replica_id": "0",
                                 "model_path": manifest.request.model_path or "",
                                 "gpu_idx": manifest.request.gpu_idx})
        return cls(config.model_uid, manifest.request, config, manifest.family,
                   manifest.created, manifest.revision)
