"""The MLX engine: models in MLX format (or plain safetensors folders) through ``mlx_lm``.

Runs on Apple silicon, and on Linux CPUs with ``mlx[cpu]``
(``pip install 'xinference[mlx]'`` installs ``mlx-lm[cpu]``). Weights load with
``mlx_lm.load``; tokens come from ``mlx_lm.generate.generate_step`` with
``mlx_lm.sample_utils`` samplers and logits processors. Decoding, stop strings
and stop tokens are ours (the shared :mod:`xinference.model.llm` pieces), so
``ignore_eos``, ``stop_token_ids`` and logprobs (from the step's log-softmax)
work as on the other engines; ``response_format`` is enforced by masking each
step's logits with an llguidance grammar (:mod:`xinference.model.llm.grammar`).

Requests run one at a time on one generation thread (no batching: concurrent
requests queue), so ``seed`` seeds MLX's global generator right before each
choice and the same seed gives the same output. Closing a stream (or
:meth:`abort`) stops the thread at the next token. Presence and frequency
penalties are mlx-lm's, which look at the last 20 tokens.

Options: ``max_kv_size``, ``prefill_step_size``, ``kv_bits``, ``kv_group_size``,
``quantized_kv_start`` (passed to ``generate_step``), ``trust_remote_code``,
``adapter_path`` and ``lazy`` (passed to ``mlx_lm.load``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Set

from ...errors import EngineUnavailableError, ModelLaunchError, ModelUnavailableError
from ..llm import protocol as P
from ..llm.detokenize import IncrementalDetokenizer
from ..llm.params import SamplingParams
from ..llm.stop import StopStringMatcher
from .delta_engine import Delta, DeltaEngine, Job, coerce_options

OPTIONS = {
    "max_kv_size": ("Optional[int]", None), "prefill_step_size": ("int", 2048),
    "kv_bits": ("Optional[int]", None), "kv_group_size": ("int", 64),
    "quantized_kv_start": ("int", 5000), "trust_remote_code": ("bool", False),
    "adapter_path": ("Optional[str]", None), "lazy": ("bool", False),
}
_STEP_OPTIONS = ("max_kv_size", "prefill_step_size", "kv_bits", "kv_group_size",
                 "quantized_kv_start")
_DONE = object()
_SEED_MASK = (1 << 64) - 1


def config_fixes(model_dir: str) -> Dict[str, Any]:
    """Overrides for ``config.json`` fields mlx-lm reads differently from transformers.

    transformers 5 saves ``rope_parameters.rope_theta`` where mlx-lm looks for a
    top-level ``rope_theta`` (and would silently use its own default).
    """
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    rope = config.get("rope_parameters")
    if "rope_theta" not in config and isinstance(rope, dict) and "rope_theta" in rope:
        return {"rope_theta": rope["rope_theta"]}
    return {}


class GrammarMask:
    """An mlx-lm logits processor that keeps only the tokens an llguidance matcher allows."""

    def __init__(self, matcher: Any, prompt_len: int):
        self.matcher = matcher
        self.consumed = prompt_len

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx
        import numpy as np

        for token in tokens[self.consumed:].tolist():
            self.matcher.consume_token(token)
        self.consumed = tokens.size
        allowed = np.frombuffer(self.matcher.compute_logit_bias(), dtype=np.uint8)
        keep = np.zeros(logits.shape[-1], dtype=bool)
        n = min(keep.shape[0], allowed.shape[0])
        keep[:n] = allowed[:n] > 0
        return mx.where(mx.array(keep), logits, -float("inf"))


class _Choice:
    """One choice's text pipeline: tokens in, :class:`Delta` objects out."""

    def __init__(self, engine: "MLXEngine", index: int, prompt: List[int], params: SamplingParams,
                 budget: int):
        self.engine, self.index, self.params, self.budget = engine, index, params, budget
        eos = set() if params.ignore_eos else set(engine.stop_ids)
        self.stop_ids = eos | set(params.stop_token_ids)
        self.detok = IncrementalDetokenizer(engine._decode, context=prompt[-4:])
        self.stopper = StopStringMatcher(params.stop)
        self.count = 0

    def accept(self, token: int, logprobs: Any) -> Delta:
        self.count += 1
        if token in self.stop_ids:
            return Delta(self.index, self.tail(), [], "stop", self.count)
        text, stopped = self.stopper.feed(self.detok.add(token))
        entries = [self.engine._logprob(token, logprobs, self.params.top_logprobs)] \
            if self.params.logprobs and not stopped else []
        finish = "stop" if stopped else None
        if finish is None and self.count >= self.budget:
            text, finish = text + self.tail(), "length"
        return Delta(self.index, text, entries, finish, self.count,
                     self.stopper.matched if stopped else None)

    def tail(self) -> str:
        """Text still held back by the detokenizer and the stop matcher, at the end."""
        text, stopped = self.stopper.feed(self.detok.flush())
        return text if stopped else text + self.stopper.flush()


class MLXEngine(DeltaEngine):
    """An LLM on MLX (Apple silicon, or CPU with ``mlx[cpu]``); see the module docstring."""

    engine_name = "MLX"

    def __init__(self, config):
        super().__init__(config)
        self.model: Any = None
        self.vocab_size = 0
        self.tokens_generated = 0
        self.active = 0
        self._step_options: Dict[str, Any] = {}
        self._executor: Optional[ThreadPoolExecutor] = None
        self._grammar: Any = None
        self._cancels: Set[threading.Event] = set()

    def load(self) -> None:
        try:
            import mlx.core  # noqa: F401
            from mlx_lm import load as mlx_load
        except ImportError as exc:
            raise EngineUnavailableError(
                f"MLX is not installed or cannot run here ({exc}); install it with: "
                "pip install 'xinference[mlx]' (mlx-lm[cpu] on Linux)") from None
        options = coerce_options(self.config.options, OPTIONS, "MLX", "the MLX engine's options")
        self._step_options = {k: v for k, v in options.items()
                              if k in _STEP_OPTIONS and v is not None}
        path = self.config.model_path
        if not os.path.isdir(path):
            raise ModelLaunchError(f"MLX needs a model folder; {path!r} is not one",
                                   param="model_path")
        try:
            self.model, wrapper, model_config = mlx_load(
                path, model_config=config_fixes(path), adapter_path=options.get("adapter_path"),
                lazy=bool(options.get("lazy")), return_config=True,
                trust_remote_code=bool(options.get("trust_remote_code")))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLaunchError(f"mlx-lm could not load {path}: {exc}",
                                   param="model_path") from None
        tokenizer = getattr(wrapper, "_tokenizer", wrapper)
        self._setup_text(tokenizer, model_config.get("max_position_embeddings"),
                         wrapper.eos_token_ids)
        self.vocab_size = int(model_config.get("vocab_size") or len(tokenizer))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mlx-generate")

    def close(self) -> None:
        executor, self._executor = self._executor, None
        for cancel in list(self._cancels):
            cancel.set()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self.model = None
        self.tokenizer = None

    def describe(self) -> Dict[str, Any]:
        facts = super().describe()
        facts.update(active=self.active, tokens_generated=self.tokens_generated)
        return facts

    def _loaded(self) -> bool:
        return self.model is not None and self._executor is not None

    # ------------------------------------------------------------ helpers
    def _logprob(self, token: int, logprobs: Any, top: int) -> P.TokenLogprob:
        import numpy as np

        values = np.asarray(logprobs, dtype=np.float32)
        alts = []
        if top:
            best = np.argpartition(-values, top - 1)[:top]
            best = best[np.argsort(-values[best])]
            alts = [(self._token_text(int(t)), float(values[t])) for t in best]
        return P.TokenLogprob(self._token_text(token), float(values[token]), alts)

    def _prepare(self, job: Job) -> None:
        if job.schema is not None:
            job.backend = self._json_grammar().compile(job.schema)

    def _json_grammar(self) -> Any:
        if self._grammar is None:
            from ..llm.grammar import JsonGrammar

            self._grammar = JsonGrammar(self.tokenizer, self.vocab_size, self.stop_ids)
        return self._grammar

    def _sampling(self, params: SamplingParams, prompt_len: int, grammar: Optional[str]):
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        sampler = make_sampler(temp=0.0 if params.greedy else params.temperature,
                               top_p=params.top_p, top_k=params.top_k)
        repetition = params.repetition_penalty
        processors = make_logits_processors(
            logit_bias=params.logit_bias or None,
            repetition_penalty=repetition if repetition != 1 else None,
            presence_penalty=params.presence_penalty or None,
            frequency_penalty=params.frequency_penalty or None)
        if grammar is not None:
            processors.append(GrammarMask(self._grammar.matcher(grammar), prompt_len))
        return sampler, processors

    # ------------------------------------------------------------ generating
    def _run(self, job: Job, cancel: threading.Event, post: Callable[[Any], None]) -> None:
        """The generation thread: every choice of ``job`` in turn, until done or cancelled."""
        n = job.params.n
        choices = [(p * n + c, prompt, job.params.for_choice(c), job.budgets[p])
                   for p, prompt in enumerate(job.prompts) for c in range(n)]
        self.active += 1
        try:
            for index, prompt, params, budget in choices:
                if cancel.is_set():
                    break
                self._run_choice(_Choice(self, index, prompt, params, budget), prompt, job.backend,
                                 cancel, post)
            if cancel.is_set() and self._executor is None:
                post(ModelUnavailableError("The model was stopped while generating"))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            post(exc)
        finally:
            self.active -= 1
            post(_DONE)

    def _run_choice(self, choice: _Choice, prompt: List[int], grammar: Optional[str],
                    cancel: threading.Event, post: Callable[[Any], None]) -> None:
        import mlx.core as mx
        from mlx_lm.generate import generate_step

        params = choice.params
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        mx.random.seed(seed & _SEED_MASK)
        sampler, processors = self._sampling(params, len(prompt), grammar)
        steps = generate_step(mx.array(prompt), self.model, max_tokens=choice.budget,
                              sampler=sampler, logits_processors=processors, **self._step_options)
        try:
            for token, logprobs in steps:
                if cancel.is_set():
                    return
                self.tokens_generated += 1
                delta = choice.accept(int(token), logprobs)
                post(delta)
                if delta.finish_reason:
                    return
            post(Delta(choice.index, choice.tail(), [], "length", choice.count))
        finally:
            steps.close()

    def _streams(self, job: Job) -> List[AsyncIterator[Delta]]:
        return [self._stream(job)]

    async def _stream(self, job: Job) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def post(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody listens any more
                cancel.set()

        executor = self._executor
        if executor is None:
            raise ModelUnavailableError("The model is not loaded (or was stopped)")
        self._cancels.add(cancel)
        executor.submit(self._run, job, cancel, post)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            self._cancels.discard(cancel)
