"""Continuous batching for a Hugging Face causal LM, driven by one worker thread (torch).

Why our own loop and not transformers' ``ContinuousBatchingManager``: the
manager samples with one generation config and one seed for the whole batch
(per-request temperature only through optional per-request processors, no
per-request seed, no presence/frequency penalties, greedy-or-sampling chosen
for everyone), its paged KV cache must be hand-sized on CPU or it maps
gigabytes, and it stops generation on token ids only. OpenAI semantics need
each request to keep its own temperature/top_p/seed/stop/max_tokens, so
"same seed, same output" holds whatever else is in the batch.

How it works. The running batch shares one ``DynamicCache`` whose rows are
left-padded to a common length, with a 2D attention mask marking the padding
and explicit per-row ``position_ids``. Between decoding steps the worker:

1. admits waiting sequences (up to ``max_batch_size`` rows): each is prefilled
   alone (no padding inside a prompt; a vision model's pixel values go in here
   and become part of the prompt's KV rows), samples its first token, and its KV
   rows are left-padded and concatenated onto the batch;
2. drops rows that finished or were cancelled (index-select on the batch
   dimension, then trims padding columns no row needs any more);
3. runs one forward pass for all rows and samples each row with its own
   params and ``torch.Generator`` (:mod:`.torch_sampling`).

When the batch is idle, the first arrival waits ``batch_interval`` seconds so
near-simultaneous requests start together. Models whose cache is not plain
full attention (sliding-window or linear-attention layers) run one sequence at
a time through the same loop. Each sequence turns its tokens into text with
:class:`IncrementalDetokenizer` and :class:`StopStringMatcher`, so stop
strings end generation without being emitted, and reports every step through
its ``emit`` callback (called from the worker thread).
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

import torch

from ...errors import ModelUnavailableError
from .detokenize import IncrementalDetokenizer
from .params import SamplingParams
from .protocol import TokenLogprob
from .stop import StopStringMatcher
from .torch_sampling import make_generator, sample_rows

logger = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """What one step produced for one sequence (text already stop-filtered)."""

    text: str = ""
    logprob: Optional[TokenLogprob] = None
    finish_reason: Optional[str] = None
    completion_tokens: int = 0
    error: Optional[BaseException] = None
    stop_sequence: Optional[str] = None


class Sequence:
    """One generation: prompt, sampling state, text pipeline and the callback fed with outputs."""

    def __init__(self, prompt_ids: List[int], params: SamplingParams, budget: int,
                 stop_ids: Set[int], decode: Callable[[List[int]], str],
                 token_text: Callable[[int], str], emit: Callable[[StepOutput], None],
                 constraint: Any = None, inputs: Optional[Dict[str, Any]] = None):
        self.prompt_ids = list(prompt_ids)
        self.inputs = inputs or {}  # extra model inputs of the prefill (e.g. pixel_values)
        self.params = params
        self.budget = budget
        self.stop_ids = (set() if params.ignore_eos else set(stop_ids)) | set(params.stop_token_ids)
        self.generated: List[int] = []
        self.generator = make_generator(params.seed)
        self.detok = IncrementalDetokenizer(decode, context=self.prompt_ids[-4:])
        self.stopper = StopStringMatcher(params.stop)
        self.token_text = token_text
        self.emit = emit
        self.constraint = constraint
        self.cancelled = False
        self.done = False
        self.pos = len(self.prompt_ids)
        self.last_token = -1

    def accept(self, token: int, logprob: Optional[Tuple[float, list]]) -> bool:
        """Record a sampled token, emit its output; True if the sequence is finished."""
        self.generated.append(token)
        self.last_token = token
        finish, matched = None, None
        if self.constraint is not None and token not in self.stop_ids:
            self.constraint.consume_token(token)
        if token in self.stop_ids:
            text, finish, logprob = self._tail(), "stop", None
        else:
            text, stopped = self.stopper.feed(self.detok.add(token))
            if stopped:
                finish, logprob, matched = "stop", None, self.stopper.matched
            elif len(self.generated) >= self.budget:
                text, finish = text + self._tail(), "length"
        entry = None
        if logprob is not None:
            entry = TokenLogprob(self.token_text(token), logprob[0],
                                 [(self.token_text(t), lp) for t, lp in logprob[1]])
        self.done = finish is not None
        self._emit(StepOutput(text, entry, finish, len(self.generated), stop_sequence=matched))
        return self.done

    def fail(self, error: BaseException) -> None:
        self.done = True
        self._emit(StepOutput(error=error, completion_tokens=len(self.generated)))

    def _tail(self) -> str:
        text, stopped = self.stopper.feed(self.detok.flush())
        return text if stopped else text + self.stopper.flush()

    def _emit(self, out: StepOutput) -> None:
        try:
            self.emit(out)
        except Exception:  # noqa: BLE001 - the consumer's loop is gone: nobody listens any more
            self.cancelled = True


def _left_pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class BatchScheduler:
    """Runs sequences of one model with continuous batching; see the module docstring."""

    def __init__(self, model: Any, max_batch_size: int = 32, batch_interval: float = 0.003,
                 n_threads: Optional[int] = None, device: Any = "cpu"):
        self.model = model
        self.max_batch_size = max(1, int(max_batch_size))
        self.batch_interval = max(0.0, float(batch_interval))
        self.n_threads = n_threads
        self.device = torch.device(device)
        self._cond = threading.Condition()
        self._waiting: Deque[Sequence] = collections.deque()
        self._rows: List[Sequence] = []
        self._cache: Any = None
        self._mask: Optional[torch.Tensor] = None
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self._keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.steps = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xinference-batch", daemon=True)
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        with self._cond:
            if self._closed:
                raise ModelUnavailableError("The model is stopping")
            self._waiting.append(seq)
            self._cond.notify()

    def cancel(self, seq: Sequence) -> None:
        """Stop ``seq`` before the next step; its batch row is freed then."""
        with self._cond:
            seq.cancelled = True
            self._cond.notify()

    def stats(self) -> Dict[str, int]:
        """Live sequences in the batch (``active``), queued ones, the batch limit, steps run."""
        with self._cond:
            live = sum(1 for s in self._rows if not (s.done or s.cancelled))
            return {"active": live, "waiting": len(self._waiting),
                    "max_batch_size": self.max_batch_size, "steps": self.steps}

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        error = ModelUnavailableError("The model was stopped")
        for seq in list(self._waiting) + self._rows:
            if not seq.done:
                seq.fail(error)
        self._waiting.clear()
        self._reset()

    def _run(self) -> None:
        if self.n_threads:
            torch.set_num_threads(self.n_threads)
        with torch.inference_mode():
            while self._wait_for_work():
                try:
                    self._admit()
                    self._drop_finished()
                    if self._rows:
                        self._decode_step()
                        self._drop_finished()
                except Exception as exc:  # keep serving: fail what was running, go on
                    logger.exception("batch step failed")
                    for seq in self._rows:
                        if not seq.done:
                            seq.fail(exc)
                    self._reset()

    def _wait_for_work(self) -> bool:
        with self._cond:
            idle = not self._rows
            while not self._closed and not self._rows and not self._waiting:
                self._cond.wait()
            if self._closed:
                return False
        if idle and self.batch_interval:
            time.sleep(self.batch_interval)
        return True

    def _take_waiting(self) -> List[Sequence]:
        with self._cond:
            taken: List[Sequence] = []
            while self._waiting and len(self._rows) + len(taken) < self.max_batch_size:
                seq = self._waiting.popleft()
                if not seq.cancelled:
                    taken.append(seq)
            return taken

    def _admit(self) -> None:
        joined = []
        for seq in self._take_waiting():
            try:
                cache, logits = self._prefill(seq)
                tokens, logprobs = sample_rows(logits, [seq])
                finished = seq.accept(tokens[0], logprobs[0])
            except Exception as exc:  # noqa: BLE001 - fails this sequence, not the batch
                logger.exception("prefill failed")
                seq.fail(exc)
                continue
            if not finished and not seq.cancelled:
                joined.append((seq, cache))
        if joined:
            self._merge(joined)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any,
                 **inputs: Any):
        kwargs = {"logits_to_keep": 1} if self._keep_arg else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, **kwargs, **inputs)
        return out.logits[:, -1, :]

    def _prefill(self, seq: Sequence):
        from transformers import DynamicCache

        n = len(seq.prompt_ids)
        ids = torch.tensor([seq.prompt_ids], dtype=torch.long, device=self.device)
        mask = torch.ones((1, n), dtype=torch.long, device=self.device)
        positions = torch.arange(n, device=self.device).unsqueeze(0)
        cache = DynamicCache(config=self.model.config)
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                  for k, v in seq.inputs.items()}
        logits = self._forward(ids, mask, positions, cache, **inputs)
        seq.inputs = {}  # the image features are in the cache now
        if self.max_batch_size > 1 and not self._plain_cache(cache):
            logger.warning("this model's cache is not plain full attention: batching disabled")
            self.max_batch_size = 1
        return cache, logits

    @staticmethod
    def _plain_cache(cache: Any) -> bool:
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in cache.layers)

    def _merge(self, joined: List[Tuple[Sequence, Any]]) -> None:
        caches = ([self._cache] if self._cache is not None else []) + [c for _, c in joined]
        masks = ([self._mask] if self._mask is not None else [])
        masks += [torch.ones((1, len(s.prompt_ids)), dtype=torch.long, device=self.device)
                  for s, _ in joined]
        width = max(m.shape[1] for m in masks)
        merged = caches[0]
        for i, layer in enumerate(merged.layers):
            parts = [c.layers[i] for c in caches]
            if not all(p.is_initialized for p in parts):
                continue
            layer.keys = torch.cat([_left_pad(p.keys, width - p.keys.shape[2], 2)
                                    for p in parts])
            layer.values = torch.cat([_left_pad(p.values, width - p.values.shape[2], 2)
                                      for p in parts])
        self._mask = torch.cat([_left_pad(m, width - m.shape[1], 1) for m in masks])
        self._cache = merged
        self._rows.extend(s for s, _ in joined)

    def _decode_step(self) -> None:
        rows = self._rows
        ids = torch.tensor([[s.last_token] for s in rows], dtype=torch.long, device=self.device)
        positions = torch.tensor([[s.pos] for s in rows], dtype=torch.long, device=self.device)
        mask = torch.cat([self._mask, self._mask.new_ones((len(rows), 1))], dim=1)
        logits = self._forward(ids, mask, positions, self._cache)
        self._mask = mask
        self.steps += 1
        tokens, logprobs = sample_rows(logits, rows)
        for seq, token, logprob in zip(rows, tokens, logprobs):
            seq.pos += 1
            if not seq.cancelled:
                seq.accept(token, logprob)

    def _drop_finished(self) -> None:
        keep = [i for i, s in enumerate(self._rows) if not (s.done or s.cancelled)]
        if len(keep) == len(self._rows):
            return
        if not keep:
            with self._cond:
                self._reset()
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        mask = self._mask.index_select(0, index)
        start = int(mask.any(dim=0).long().argmax())
        for layer in self._cache.layers:
            if layer.is_initialized:
                layer.keys = layer.keys.index_select(0, index)[:, :, start:]
                layer.values = layer.values.index_select(0, index)[:, :, start:]
        with self._cond:
            self._mask = mask[:, start:]
            self._rows = [self._rows[i] for i in keep]

    def _reset(self) -> None:
        self._rows, self._cache, self._mask = [], None, None

