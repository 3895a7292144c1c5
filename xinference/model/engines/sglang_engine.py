"""The SGLang engine adapter: pytorch, AWQ and GPTQ models on CUDA GPUs, through ``sglang.Engine``.

Written against SGLang's public offline-engine API: ``sglang.Engine(**server_args)``
(keyword arguments are ``sglang.srt.server_args.ServerArgs`` fields),
``await engine.async_generate(input_ids=..., sampling_params={...}, stream=True,
return_logprob=..., top_logprobs_num=..., rid=...)`` yielding
``{"text", "meta_info": {"id", "finish_reason", "completion_tokens",
"output_token_logprobs", "output_top_logprobs"}, "index"}`` dicts, and
``engine.tokenizer_manager.abort_request(rid)``. SGLang needs Linux and a CUDA
GPU, so this adapter is **untested on real hardware here**: its unit tests
check the argument mapping and the output translation against stand-ins for
the ``sglang`` modules, nothing more.

- Launch options become ``ServerArgs`` fields, typed from the field's
  annotation or default (``mem_fraction_static``, ``context_length``,
  ``tp_size``, ``max_running_requests``, ``dtype``, ...); an unknown name is a
  400 naming it. Defaults set here: ``tp_size`` = the replica's GPU count,
  ``context_length`` = the launch context length, ``quantization`` from the
  model format, ``log_level`` = ``error``.
- Requests: prompts are rendered and tokenized here and sent as ``input_ids``.
  Sampling maps to SGLang's sampling-params dict (``max_new_tokens``,
  ``temperature``, ``top_p``, ``top_k``, ``stop``, ``stop_token_ids``, ``n``,
  penalties, ``logit_bias``, ``sampling_seed`` for ``seed``, which needs an
  SGLang that has it); ``response_format`` maps to ``json_schema``.
  SGLang's streamed text and logprobs are cumulative unless the server runs
  with incremental output; both are handled.
"""

from __future__ import annotations

import importlib
import json
import secrets
from typing import Any, AsyncIterator, Dict, List, Optional

from ...errors import InvalidRequestError, ModelLaunchError, RequestAbortedError
from ..llm import protocol as P
from .delta_engine import (Delta, DeltaEngine, Job, coerce_options, dataclass_fields, gpu_count,
                           import_gpu_engine)

_MANAGED = ("model_path",)


def import_sglang() -> Any:
    """The ``sglang`` module, or :class:`EngineUnavailableError` saying what is missing."""
    return import_gpu_engine("sglang", "SGLang", "sglang")


def server_arg_values(config: Any, fields: Dict[str, Any]) -> Dict[str, Any]:
    """``sglang.Engine`` keyword arguments for ``config`` (defaults, then launch options)."""
    values: Dict[str, Any] = {"model_path": config.model_path, "tp_size": gpu_count(config),
                              "served_model_name": config.model_uid, "log_level": "error"}
    if config.context_length:
        values["context_length"] = int(config.context_length)
    fmt = (config.model_format or "").lower()
    if fmt in ("awq", "gptq"):
        values["quantization"] = fmt
    values.update(coerce_options(config.options, fields, "SGLang", "sglang ServerArgs", _MANAGED))
    return {k: v for k, v in values.items() if k in fields}


def sampling_values(job: Job, index: int, stop_ids: List[int]) -> Dict[str, Any]:
    """SGLang's sampling-params dict for prompt ``index`` of ``job``."""
    p = job.params
    values: Dict[str, Any] = {
        "max_new_tokens": job.budgets[index], "n": p.n, "temperature": p.temperature,
        "top_p": p.top_p, "top_k": p.top_k or -1, "presence_penalty": p.presence_penalty,
        "frequency_penalty": p.frequency_penalty, "repetition_penalty": p.repetition_penalty,
        "ignore_eos": p.ignore_eos, "skip_special_tokens": True,
    }
    if p.stop:
        values["stop"] = list(p.stop)
    ids = sorted(set(p.stop_token_ids) | set(stop_ids))
    if ids:
        values["stop_token_ids"] = ids
    if p.logit_bias:
        values["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
    if p.seed is not None:
        values["sampling_seed"] = p.seed
    if job.schema is not None:
        values["json_schema"] = json.dumps(job.schema)
    return values


def _finish(meta: Dict[str, Any]) -> Optional[str]:
    reason = meta.get("finish_reason")
    if reason is None:
        return None
    kind = reason.get("type") if isinstance(reason, dict) else str(reason)
    if kind == "abort":
        message = reason.get("message") if isinstance(reason, dict) else None
        if isinstance(reason, dict) and reason.get("status_code") == 400:
            raise InvalidRequestError(f"SGLang refused the request: {message}")
        raise RequestAbortedError(f"SGLang aborted the request{': ' + message if message else ''}")
    return kind if kind in ("stop", "length") else "stop"


def _logprobs(tokens: List[Any], tops: List[Any], top: int, text_of) -> List[P.TokenLogprob]:
    out = []
    for i, (logprob, token, *rest) in enumerate(tokens):
        text = rest[0] if rest and rest[0] is not None else text_of(token)
        alts = [(r[2] if len(r) > 2 and r[2] is not None else text_of(r[1]), r[0])
                for r in (tops[i] if i < len(tops) and tops[i] else [])][:top]
        out.append(P.TokenLogprob(text, logprob, alts))
    return out


class StreamReader:
    """Turns SGLang's streamed dicts (cumulative or incremental) into :class:`Delta` objects."""

    def __init__(self, base: int, top: Optional[int], incremental: bool, text_of):
        self.base, self.top, self.incremental, self.text_of = base, top, incremental, text_of
        self.text_seen: Dict[int, int] = {}
        self.tokens_seen: Dict[int, int] = {}

    def read(self, chunk: Dict[str, Any]) -> Delta:
        index = int(chunk.get("index") or 0)
        meta = chunk.get("meta_info") or {}
        text = chunk.get("text") or ""
        if not self.incremental:
            text, self.text_seen[index] = text[self.text_seen.get(index, 0):], len(text)
        lps: List[P.TokenLogprob] = []
        if self.top is not None:
            tokens = meta.get("output_token_logprobs") or []
            tops = meta.get("output_top_logprobs") or []
            if not self.incremental:
                seen = self.tokens_seen.get(index, 0)
                tokens, tops, self.tokens_seen[index] = tokens[seen:], tops[seen:], len(tokens)
            lps = _logprobs(tokens, tops, self.top, self.text_of)
        reason = meta.get("finish_reason")
        matched = reason.get("matched") if isinstance(reason, dict) else None
        return Delta(self.base + index, text, lps, _finish(meta),
                     int(meta.get("completion_tokens") or 0),
                     matched if isinstance(matched, str) else None)


class SGLangEngine(DeltaEngine):
    """An LLM served by SGLang; see the module docstring (untested on real hardware here)."""

    engine_name = "SGLang"

    def __init__(self, config):
        super().__init__(config)
        self.engine: Any = None

    def load(self) -> None:
        sglang = import_sglang()
        server_args = importlib.import_module("sglang.srt.server_args")
        values = server_arg_values(self.config, dataclass_fields(server_args.ServerArgs))
        try:
            self.engine = sglang.Engine(**values)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLaunchError(
                f"SGLang could not load {self.config.model_path}: {exc}") from None
        manager = getattr(self.engine, "tokenizer_manager", None)
        tokenizer = getattr(manager, "tokenizer", None)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                values.get("tokenizer_path") or self.config.model_path,
                trust_remote_code=bool(values.get("trust_remote_code")))
        self._setup_text(tokenizer, getattr(manager, "context_len", None))

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()
        self.tokenizer = None

    def describe(self) -> Dict[str, Any]:
        facts = super().describe()
        facts["tp_size"] = gpu_count(self.config)
        return facts

    def _loaded(self) -> bool:
        return self.engine is not None and self.tokenizer is not None

    def _prepare(self, job: Job) -> None:
        stop_ids = sorted(self.stop_ids)
        job.backend = [sampling_values(job, i, stop_ids) for i in range(len(job.prompts))]

    def _streams(self, job: Job) -> List[AsyncIterator[Delta]]:
        return [self._stream(job, i) for i in range(len(job.prompts))]

    def _incremental(self) -> bool:
        args = getattr(self.engine, "server_args", None)
        return bool(getattr(args, "incremental_streaming_output", False)
                    or getattr(args, "stream_output", False))

    async def _stream(self, job: Job, index: int) -> AsyncIterator[Delta]:
        want = job.params.logprobs
        kwargs: Dict[str, Any] = {"input_ids": job.prompts[index], "stream": True,
                                  "sampling_params": job.backend[index], "return_logprob": want}
        if want and job.params.top_logprobs:
            kwargs["top_logprobs_num"] = job.params.top_logprobs
        if job.params.n == 1:
            kwargs["rid"] = f"{job.request_id}-{index}-{secrets.token_hex(4)}"
            job.backend_ids.append(kwargs["rid"])
        reader = StreamReader(index * job.params.n, job.params.top_logprobs if want else None,
                              self._incremental(), self._token_text)
        async for chunk in await self.engine.async_generate(**kwargs):
            rid = (chunk.get("meta_info") or {}).get("id")
            if rid and rid not in job.backend_ids:
                job.backend_ids.append(rid)
            yield reader.read(chunk)

    async def _stop(self, job: Job) -> None:
        manager = getattr(self.engine, "tokenizer_manager", None)
        for rid in job.backend_ids:
            if manager is not None:
                manager.abort_request(rid)
