"""The transformers engine for LLMs: torch on CPU (or CUDA), with continuous batching.

Loads a Hugging Face folder (``pytorch`` format) or a GGUF file (``ggufv2``;
transformers de-quantizes it on load, which needs ``accelerate`` and
``gguf``). Requests from every caller go to one :class:`BatchScheduler`
(see :mod:`xinference.model.llm.batch_scheduler` for the batching design and
why it is ours rather than transformers' ``ContinuousBatchingManager``).
Request preparation (chat template, stop strings, budgets, reasoning and tool
calls) is :class:`DeltaEngine`'s, shared with vLLM, SGLang and MLX; this class
loads the weights and turns the scheduler's steps into deltas, with a JSON
grammar (llguidance) for ``response_format`` and forced tool calls.

Options (``EngineConfig.options``): ``n_threads`` (torch intra-op threads,
default 1: more threads on a busy small machine is far slower), ``device``
(``cpu``/``cuda``/..., default: cuda when present), ``dtype`` (default float32
on CPU, the checkpoint's own on GPU), ``trust_remote_code``.

A family with the ``vision`` ability is loaded as an image-text-to-text model with
its processor, and its chats may carry images (:mod:`.transformers_vision`).
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from typing import Any, AsyncIterator, Dict, List, Optional

from ...errors import ModelLaunchError, XinferenceError
from ...settings import get_settings
from ..llm.grammar import JsonGrammar
from .delta_engine import Delta, DeltaEngine, Job


def _dtype(name: Optional[str], device: str):
    import torch

    if name in (None, "", "auto"):
        return torch.float32 if device == "cpu" else "auto"
    try:
        return getattr(torch, str(name).replace("torch.", ""))
    except AttributeError:
        raise ModelLaunchError(f"Unknown dtype {name!r}; use float32, bfloat16 or float16",
                               param="dtype") from None


def _domain_error(exc: BaseException) -> BaseException:
    if isinstance(exc, XinferenceError):
        return exc
    return XinferenceError(f"Generation failed: {type(exc).__name__}: {exc}")


def _post(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, index: int, out: Any) -> None:
    loop.call_soon_threadsafe(queue.put_nowait, (index, out))


class TransformersEngine(DeltaEngine):
    """Chat and completions on a transformers causal LM; see the module docstring."""

    engine_name = "Transformers"

    def __init__(self, config):
        super().__init__(config)
        self.model = None
        self.scheduler = None
        self._grammar: Optional[JsonGrammar] = None
        self.n_threads = int(config.options.get("n_threads") or 1)
        self.processor: Any = None
        self.reads_images = "vision" in ((config.family or {}).get("model_ability") or [])

    @property
    def _stop_ids(self):
        return self.stop_ids

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        import torch

        torch.set_num_threads(self.n_threads)
        options = self.config.options
        device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer, self.model = self._load_weights(device, _dtype(options.get("dtype"), device))
        self.model.eval()
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        text_config = self.model.config.get_text_config()  # a vision model's language part
        self._setup_text(tokenizer, getattr(text_config, "max_position_embeddings", None),
                         eos if isinstance(eos, (list, tuple)) else [eos])
        if gen is not None and getattr(gen, "do_sample", False):
            for key in ("temperature", "top_p", "top_k"):
                if getattr(gen, key, None) is not None:
                    self.defaults[key] = getattr(gen, key)
        vocab = max(len(tokenizer), getattr(text_config, "vocab_size", 0) or 0)
        self._grammar = JsonGrammar(tokenizer, vocab, self.stop_ids)
        from ..llm.batch_scheduler import BatchScheduler

        settings = get_settings()
        self.scheduler = BatchScheduler(self.model, settings.batch_size, settings.batch_interval,
                                        n_threads=self.n_threads, device=device)
        self.scheduler.start()

    def _load_weights(self, device: str, dtype: Any):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = self.config.model_path
        remote = bool(self.config.options.get("trust_remote_code"))
        kwargs: Dict[str, Any] = {"trust_remote_code": remote}
        if os.path.isfile(path):
            if not path.lower().endswith(".gguf"):
                raise ModelLaunchError(f"{path} is a file but not a GGUF file", param="model_path")
            kwargs["gguf_file"] = os.path.basename(path)
            path = os.path.dirname(path) or "."
        if self.reads_images:
            from .transformers_vision import load_vision_model

            if "gguf_file" in kwargs:
                raise ModelLaunchError("vision models on transformers load from a Hugging Face "
                                       "folder, not a GGUF file", param="model_path")
            self.processor, model = load_vision_model(path, dtype, kwargs)
            return self.processor.tokenizer, model.to(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
        except (OSError, ValueError, ImportError, KeyError) as exc:
            raise ModelLaunchError(f"transformers could not load {self.config.model_path}: {exc}",
                                   param="model_path") from None
        return tokenizer, model.to(device)

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
            self.scheduler = None
        self.model = None

    def _loaded(self) -> bool:
        return self.scheduler is not None

    def describe(self) -> Dict[str, Any]:
        facts = {"engine": "Transformers", "n_threads": self.n_threads,
                 "context_length": self.context_length, "continuous_batching": True,
                 "vision": self.processor is not None}
        if self.scheduler is not None:
            facts.update(self.scheduler.stats())
        return facts

    # ------------------------------------------------------------- tokenizer
    def _decode(self, ids: List[int]) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True,
                                         clean_up_tokenization_spaces=False)

    def _token_text(self, token: int) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode([token], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------- generating
    def _forced_format(self, family_format: str) -> str:
        return "hermes" if family_format == "hermes" else "json"

    def _chat_inputs(self, prompt: str, request: Dict[str, Any]) -> Dict[str, Any]:
        if self.processor is None:
            return super()._chat_inputs(prompt, request)
        from .transformers_vision import chat_inputs, request_images

        pictures = request_images(request)  # decoded outside the lock the decoding thread takes
        with self._tokenizer_lock:
            return chat_inputs(self.processor, prompt, pictures, self.model.dtype)

    def count_chat_tokens(self, request: Dict[str, Any]) -> int:
        """Prompt tokens of a chat request; a vision model's include its image tokens."""
        if self.processor is None:
            return super().count_chat_tokens(request)
        return sum(map(len, self._chat_job(dict(request, n=1)).prompts))

    def _prepare(self, job: Job) -> None:
        if job.schema is None:
            job.backend = None
        elif job.forced:
            job.backend = self._grammar.compile_calls(job.schema, job.tool_format or "json")
        else:
            job.backend = self._grammar.compile(job.schema)

    def _streams(self, job: Job) -> List[AsyncIterator[Delta]]:
        return [self._steps(job)]

    async def _steps(self, job: Job) -> AsyncIterator[Delta]:
        """Every choice's steps from the batch scheduler, as deltas."""
        from ..llm.batch_scheduler import Sequence

        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        seqs = []
        for p, (prompt, budget) in enumerate(zip(job.prompts, job.budgets)):
            for c in range(job.params.n):
                index = p * job.params.n + c
                constraint = self._grammar.matcher(job.backend) if job.backend else None
                seqs.append(Sequence(prompt, job.params.for_choice(c), budget, self.stop_ids,
                                     self._decode, self._token_text,
                                     partial(_post, loop, queue, index), constraint,
                                     job.inputs[p] if job.inputs else None))
        scheduler = self.scheduler
        try:
            for seq in seqs:
                scheduler.submit(seq)
            remaining = len(seqs)
            while remaining:
                index, out = await queue.get()
                if out.error is not None:
                    raise _domain_error(out.error)
                remaining -= out.finish_reason is not None
                yield Delta(index, out.text, [out.logprob] if out.logprob is not None else [],
                            out.finish_reason, out.completion_tokens, out.stop_sequence)
        finally:
            for seq in seqs:
                if not seq.done:
                    scheduler.cancel(seq)
