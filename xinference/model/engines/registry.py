"""The lazy engine table and the matching rules, as data.

Importing this module imports no engine: each entry names its class as
``"module:Class"`` and is imported only in the model's own process, by
:func:`load_engine_class`. :func:`check_engine` answers whether an engine can
run a given family/spec/quantization here, with the reason when it cannot.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Type

from ...errors import EngineUnavailableError, InvalidRequestError


@dataclass(frozen=True)
class EngineEntry:
    """One engine: where its class is, and the rules for what it can run."""

    name: str
    target: str
    model_types: Tuple[str, ...]
    formats: Tuple[str, ...]
    requires: Tuple[str, ...]
    extra: str
    quantizations: Optional[Dict[str, Tuple[str, ...]]] = None
    platforms: Optional[Tuple[str, ...]] = None
    needs_cuda: bool = False
    families: Optional[Tuple[str, ...]] = None
    auto_select: bool = True


_PKG = "xinference.model.engines"

# Families vLLM runs: the architectures of vLLM's supported-models list (as written in our
# family files' ``model_family``), then Xinference's family names (what custom registrations
# put in ``model_family``). Lower case: matching lower-cases the family.
_VLLM_FAMILIES = (
    "llama", "llama4", "mistral", "mixtral", "qwen", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
    "gemma", "gemma2", "gemma3", "phi", "phi3", "phimoe", "deepseek", "deepseek_v2",
    "deepseek_v3", "baichuan", "chatglm", "glm", "glm4", "glm4_moe", "internlm2", "internlm3",
    "yi", "falcon", "gpt2", "gpt_neox", "gptj", "gpt_bigcode", "opt", "bloom", "mpt",
    "starcoder2", "minicpm", "minicpm3", "cohere", "cohere2", "dbrx", "jamba", "olmo", "olmo2",
    "granite", "exaone", "orion", "stablelm", "nemotron", "xverse", "aquila",
    "llama-2-chat", "llama-3-instruct", "llama-3.1-instruct", "llama-3.2-instruct",
    "llama-3.3-instruct", "code-llama-instruct", "baichuan-2-chat", "internlm2-chat",
    "internlm2.5-chat", "qwen-chat", "qwen1.5-chat", "qwen2-instruct", "qwen2.5-instruct",
    "qwen2.5-coder-instruct", "qwq-32b", "yi-chat", "yi-1.5-chat", "yi-coder-chat",
    "mistral-instruct-v0.1", "mistral-instruct-v0.2", "mistral-instruct-v0.3",
    "mixtral-instruct-v0.1", "mixtral-8x22b-instruct-v0.1", "chatglm3", "glm4-chat",
    "codegeex4", "deepseek-chat", "deepseek-coder-instruct", "deepseek-v3", "deepseek-r1",
    "deepseek-r1-distill-qwen", "deepseek-r1-distill-llama", "gemma-it", "gemma-2-it",
    "gemma-3-1b-it", "gemma-3-it", "phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct",
    "orion-chat", "minicpm3-4b",
)
# SGLang's supported-models list, same conventions.
_SGLANG_FAMILIES = (
    "llama", "llama4", "mistral", "mixtral", "qwen", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
    "gemma", "gemma2", "gemma3", "phi3", "deepseek", "deepseek_v2", "deepseek_v3", "baichuan",
    "chatglm", "glm4", "glm4_moe", "internlm2", "yi", "minicpm", "minicpm3", "olmo", "olmo2",
    "granite", "exaone", "cohere", "dbrx", "grok", "stablelm", "xverse",
    "llama-2-chat", "llama-3-instruct", "llama-3.1-instruct", "llama-3.2-instruct",
    "llama-3.3-instruct", "qwen1.5-chat", "qwen2-instruct", "qwen2.5-instruct",
    "qwen2.5-coder-instruct", "qwq-32b", "mistral-instruct-v0.3", "mixtral-instruct-v0.1",
    "deepseek-v3", "deepseek-r1", "deepseek-r1-distill-qwen", "deepseek-r1-distill-llama",
    "gemma-2-it", "gemma-3-it", "glm4-chat", "internlm2.5-chat", "yi-1.5-chat",
)

# Order is preference: the first engine that can run a spec is chosen when none is asked for.
ENGINES: Tuple[EngineEntry, ...] = (
    EngineEntry("vLLM", f"{_PKG}.vllm_engine:VLLMEngine", ("LLM",), ("pytorch", "awq", "gptq"),
                ("vllm",), "vllm",
                quantizations={"pytorch": ("none",), "awq": ("Int4",),
                               "gptq": ("Int3", "Int4", "Int8")},
                platforms=("linux",), needs_cuda=True, families=_VLLM_FAMILIES),
    EngineEntry("SGLang", f"{_PKG}.sglang_engine:SGLangEngine", ("LLM",),
                ("pytorch", "awq", "gptq"), ("sglang",), "sglang",
                quantizations={"pytorch": ("none",), "awq": ("Int4",), "gptq": ("Int4", "Int8")},
                platforms=("linux",), needs_cuda=True, families=_SGLANG_FAMILIES),
    EngineEntry("llama.cpp", f"{_PKG}.llama_cpp:LlamaCppEngine", ("LLM",), ("ggufv2",),
                ("xllamacpp",), "llama_cpp"),
    EngineEntry("Transformers", f"{_PKG}.transformers_llm:TransformersEngine", ("LLM",),
                ("pytorch", "ggufv2"), ("torch", "transformers"), "transformers"),
    # Apple silicon normally; Linux CPUs too with mlx[cpu] (what the mlx extra installs).
    EngineEntry("MLX", f"{_PKG}.mlx_engine:MLXEngine", ("LLM",), ("mlx",), ("mlx_lm", "mlx"), "mlx",
                platforms=("darwin", "linux")),
    EngineEntry("sentence_transformers", f"{_PKG}.st_embedding:SentenceTransformersEmbedding",
                ("embedding",), ("pytorch",), ("torch", "sentence_transformers"), "embedding"),
    EngineEntry("sentence_transformers", f"{_PKG}.st_rerank:SentenceTransformersRerank",
                ("rerank",), ("pytorch",), ("torch", "sentence_transformers"), "rerank"),
    EngineEntry("diffusers", "xinference.model.image.diffusers_engine:DiffusersImageEngine",
                ("image",), ("diffusers",), ("torch", "diffusers", "PIL"), "image"),
    EngineEntry("faster_whisper", "xinference.model.audio.whisper_ct2:FasterWhisperEngine",
                ("audio",), ("ctranslate2",), ("faster_whisper",), "audio",
                families=("whisper",)),
    EngineEntry("transformers", "xinference.model.audio.whisper_hf:TransformersWhisperEngine",
                ("audio",), ("pytorch",), ("torch", "transformers", "av"), "transformers,audio",
                families=("whisper",)),
    EngineEntry("hibari", "xinference.model.audio.hibari_tts:HibariEngine", ("audio",),
                ("onnx",), ("hibari", "av"), "audio", families=("hibari",)),
    EngineEntry("fake", f"{_PKG}.fake:FakeEngine", ("LLM", "embedding", "rerank"), (),
                (), "", auto_select=False),
)


def engines_for_type(model_type: str) -> List[EngineEntry]:
    return [e for e in ENGINES if model_type in e.model_types]


def find_engine(model_type: str, name: str) -> EngineEntry:
    """The entry for ``name`` (any capitalisation); a clear 400 if there is none."""
    for entry in engines_for_type(model_type):
        if entry.name.lower() == name.lower():
            return entry
    known = ", ".join(e.name for e in engines_for_type(model_type) if e.auto_select)
    raise InvalidRequestError(
        f"Unknown engine {name!r} for {model_type} models; known engines: {known}",
        param="model_engine",
    )


def _package_missing(entry: EngineEntry) -> Optional[str]:
    for module in entry.requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return (f"the Python package for {module!r} is not installed; "
                    f"install it with: pip install 'xinference[{entry.extra}]'")
    return None


def has_cuda_device() -> bool:
    """A CUDA device is visible, judged without importing torch."""
    gpus = "/proc/driver/nvidia/gpus"
    return os.path.isdir(gpus) and bool(os.listdir(gpus))


def check_engine(entry: EngineEntry, model_format: str, quantization: Optional[str],
                 model_family: Optional[str] = None,
                 explicit: bool = False) -> Optional[str]:
    """None if ``entry`` can run this spec here, else the reason it cannot."""
    if not explicit and not entry.auto_select:
        return "only used when asked for by name"
    if entry.formats and model_format.lower() not in [f.lower() for f in entry.formats]:
        return f"does not run the {model_format!r} format (runs: {', '.join(entry.formats)})"
    if entry.quantizations is not None:
        allowed = entry.quantizations.get(model_format.lower(), ())
        if (quantization or "none").lower() not in [q.lower() for q in allowed]:
            return (f"does not run {model_format} with quantization {quantization!r} "
                    f"(allowed: {', '.join(allowed) or 'none'})")
    if entry.platforms and not any(sys.platform.startswith(p) for p in entry.platforms):
        return f"runs only on {', '.join(entry.platforms)} (this is {sys.platform})"
    if entry.needs_cuda and not has_cuda_device():
        return "needs a CUDA GPU and none is visible on this machine"
    if entry.families is not None and model_family and model_family.lower() not in entry.families:
        return f"does not support the {model_family!r} model family"
    return _package_missing(entry)


def choose_engine(model_type: str, model_format: str, quantization: Optional[str],
                  model_family: Optional[str], requested: Optional[str]) -> EngineEntry:
    """The requested engine if it can run the spec, else the best one that can.

    Raises :class:`EngineUnavailableError` listing every engine's reason.
    """
    if requested:
        entry = find_engine(model_type, requested)
        reason = check_engine(entry, model_format, quantization, model_family, explicit=True)
        if reason:
            raise EngineUnavailableError(f"Engine {entry.name} cannot run this model: {reason}",
                                         param="model_engine")
        return entry
    reasons = []
    for entry in engines_for_type(model_type):
        reason = check_engine(entry, model_format, quantization, model_family)
        if reason is None:
            return entry
        if entry.auto_select:
            reasons.append(f"{entry.name}: {reason}")
    raise EngineUnavailableError(
        f"No engine can run {model_format} ({quantization or 'no quantization'}) here. "
        + "; ".join(reasons), param="model_engine")


def load_engine_class(entry: EngineEntry) -> Type:
    """Import the engine's class (only ever called in the model's own process)."""
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineUnavailableError(
            f"Engine {entry.name} could not be imported ({exc}); "
            f"install it with: pip install 'xinference[{entry.extra}]'") from None
    return getattr(module, class_name)
