"""The vLLM engine adapter: pytorch, AWQ and GPTQ models on CUDA GPUs, through vLLM's async engine.

Written against vLLM's public API (``vllm.AsyncEngineArgs``,
``vllm.AsyncLLMEngine.from_engine_args`` (``AsyncLLM`` in vLLM v1),
``generate(prompt, sampling_params, request_id)``, ``abort``, and
``vllm.sampling_params.SamplingParams`` with ``RequestOutputKind.DELTA``).
vLLM needs Linux and a CUDA GPU, so this adapter is **untested on real
hardware here**: its unit tests check the argument mapping and the output
translation against stand-ins for the ``vllm`` modules, nothing more.

- Launch options (``EngineConfig.options``, strings from the CLI) become
  ``AsyncEngineArgs`` fields, typed from the field's annotation or default
  (``gpu_memory_utilization``, ``max_model_len``, ``tensor_parallel_size``,
  ``max_num_seqs``, ``enforce_eager``, ``dtype``, ...). An unknown name is a
  400 naming it. Defaults set here: ``tensor_parallel_size`` = the replica's
  GPU count, ``max_model_len`` = the launch context length, ``quantization``
  = ``awq``/``gptq`` from the model format.
- Requests: prompts are rendered and tokenized here (same chat template,
  reasoning and tool-call parsing as every engine) and sent as token ids.
  ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``, ``max_tokens``/
  ``max_completion_tokens``, ``n``, penalties, ``logit_bias``, ``logprobs``/
  ``top_logprobs`` map to ``SamplingParams``; ``response_format`` maps to
  vLLM's structured outputs (``StructuredOutputsParams``, or
  ``GuidedDecodingParams`` on older vLLM).
"""

from __future__ import annotations

import importlib
import secrets
from typing import Any, AsyncIterator, Dict, List, Optional

from ...errors import InvalidRequestError, ModelLaunchError, RequestAbortedError
from ..llm import protocol as P
from .delta_engine import (Delta, DeltaEngine, Job, coerce_options, dataclass_fields, gpu_count,
                           import_gpu_engine)

_MANAGED = ("model",)


def import_vllm() -> Any:
    """The ``vllm`` module, or :class:`EngineUnavailableError` saying what is missing."""
    return import_gpu_engine("vllm", "vLLM", "vllm")


def engine_arg_values(config: Any, fields: Dict[str, Any]) -> Dict[str, Any]:
    """The ``AsyncEngineArgs`` keyword arguments for ``config`` (defaults, then launch options)."""
    values: Dict[str, Any] = {"model": config.model_path,
                              "tensor_parallel_size": gpu_count(config),
                              "served_model_name": config.model_uid,
                              "disable_log_stats": True}
    if config.context_length:
        values["max_model_len"] = int(config.context_length)
    fmt = (config.model_format or "").lower()
    if fmt in ("awq", "gptq"):
        values["quantization"] = fmt
    values.update(coerce_options(config.options, fields, "vLLM", "vllm.AsyncEngineArgs", _MANAGED))
    return {k: v for k, v in values.items() if k in fields}


def sampling_values(job: Job, index: int, stop_ids: List[int]) -> Dict[str, Any]:
    """``SamplingParams`` keyword arguments for prompt ``index`` of ``job`` (minus the schema)."""
    p = job.params
    values: Dict[str, Any] = {
        "n": p.n, "temperature": p.temperature, "top_p": p.top_p, "top_k": p.top_k or -1,
        "seed": p.seed, "presence_penalty": p.presence_penalty,
        "frequency_penalty": p.frequency_penalty, "repetition_penalty": p.repetition_penalty,
        "max_tokens": job.budgets[index], "stop": list(p.stop) or None,
        "stop_token_ids": sorted(set(p.stop_token_ids) | set(stop_ids)) or None,
        "ignore_eos": p.ignore_eos, "logit_bias": dict(p.logit_bias) or None,
    }
    if p.logprobs:
        values["logprobs"] = p.top_logprobs
    return values


def make_sampling_params(vllm: Any, values: Dict[str, Any], schema: Optional[dict]) -> Any:
    """``vllm.SamplingParams`` streaming deltas, with ``schema`` enforced when given."""
    module = importlib.import_module("vllm.sampling_params")
    values = dict(values, output_kind=module.RequestOutputKind.DELTA)
    if schema is not None:
        if hasattr(module, "StructuredOutputsParams"):
            values["structured_outputs"] = module.StructuredOutputsParams(json=schema)
        elif hasattr(module, "GuidedDecodingParams"):
            values["guided_decoding"] = module.GuidedDecodingParams(json=schema)
        else:
            raise InvalidRequestError("response_format needs a newer vLLM (with guided decoding)",
                                      param="response_format")
    try:
        return vllm.SamplingParams(**values)
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"vLLM refused the sampling parameters: {exc}") from None


def _text(token: int, logprob: Any, text_of) -> str:
    decoded = getattr(logprob, "decoded_token", None)
    return decoded if decoded is not None else text_of(token)


def token_logprobs(entries: Any, token_ids: List[int], top: int, text_of) -> List[P.TokenLogprob]:
    """vLLM's per-token ``{token_id: Logprob}`` dicts as :class:`TokenLogprob` entries."""
    out = []
    for token, entry in zip(token_ids, entries or []):
        chosen = entry.get(token)
        ranked = sorted(entry.items(), key=lambda kv: kv[1].logprob, reverse=True)[:top]
        out.append(P.TokenLogprob(_text(token, chosen, text_of),
                                  chosen.logprob if chosen is not None else float("-inf"),
                                  [(_text(t, lp, text_of), lp.logprob) for t, lp in ranked]))
    return out


def deltas_of(output: Any, base: int, counts: Dict[int, int], top: Optional[int],
              text_of) -> List[Delta]:
    """A DELTA-kind ``RequestOutput`` as :class:`Delta` objects (choice = base + output index)."""
    deltas = []
    for o in output.outputs:
        index = base + o.index
        ids = list(o.token_ids or [])
        counts[index] = counts.get(index, 0) + len(ids)
        reason = o.finish_reason
        if reason == "abort":
            raise RequestAbortedError("vLLM aborted the request")
        lps = token_logprobs(o.logprobs, ids, top, text_of) if top is not None else []
        matched = getattr(o, "stop_reason", None)  # the stop string, when one ended it
        deltas.append(Delta(index, o.text or "", lps, reason, counts[index],
                            matched if isinstance(matched, str) else None))
    return deltas


class VLLMEngine(DeltaEngine):
    """An LLM served by vLLM; see the module docstring (untested on real hardware here)."""

    engine_name = "vLLM"

    def __init__(self, config):
        super().__init__(config)
        self.engine: Any = None
        self._vllm: Any = None

    def load(self) -> None:
        vllm = import_vllm()
        fields = dataclass_fields(vllm.AsyncEngineArgs)
        args = vllm.AsyncEngineArgs(**engine_arg_values(self.config, fields))
        try:
            self.engine = vllm.AsyncLLMEngine.from_engine_args(args)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLaunchError(f"vLLM could not load {self.config.model_path}: {exc}") from None
        self._vllm = vllm
        model_config = getattr(self.engine, "model_config", None)
        self._setup_text(self._load_tokenizer(args), getattr(model_config, "max_model_len", None))

    def _load_tokenizer(self, args: Any) -> Any:
        tokenizer = getattr(self.engine, "tokenizer", None)
        if hasattr(tokenizer, "encode") and hasattr(tokenizer, "chat_template"):
            return tokenizer
        from transformers import AutoTokenizer

        path = getattr(args, "tokenizer", None) or self.config.model_path
        trust = bool(getattr(args, "trust_remote_code", False))
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust)

    def close(self) -> None:
        engine, self.engine = self.engine, None
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        self.tokenizer = None

    def describe(self) -> Dict[str, Any]:
        facts = super().describe()
        facts["tensor_parallel_size"] = gpu_count(self.config)
        return facts

    def _loaded(self) -> bool:
        return self.engine is not None and self.tokenizer is not None

    def _prepare(self, job: Job) -> None:
        stop_ids = sorted(self.stop_ids)
        job.backend = [
            make_sampling_params(self._vllm, sampling_values(job, i, stop_ids), job.schema)
            for i in range(len(job.prompts))]

    def _streams(self, job: Job) -> List[AsyncIterator[Delta]]:
        return [self._stream(job, i) for i in range(len(job.prompts))]

    async def _stream(self, job: Job, index: int) -> AsyncIterator[Delta]:
        request_id = f"{job.request_id}-{index}-{secrets.token_hex(4)}"
        job.backend_ids.append(request_id)
        top = job.params.top_logprobs if job.params.logprobs else None
        counts: Dict[int, int] = {}
        prompt = {"prompt_token_ids": job.prompts[index]}
        async for output in self.engine.generate(prompt, job.backend[index], request_id):
            for delta in deltas_of(output, index * job.params.n, counts, top, self._token_text):
                yield delta

    async def _stop(self, job: Job) -> None:
        for request_id in job.backend_ids:
            if self.engine is not None:
                await self.engine.abort(request_id)
