"""Per-row sampling of a batch of next-token logits (torch; used by the transformers engine).

Every row keeps its own :class:`SamplingParams` and its own seeded
``torch.Generator``, so a request's output depends only on its seed and its
logits, never on which other requests share the batch. A row with a
``constraint`` (a grammar matcher, see :mod:`.grammar`) only samples tokens
the grammar allows next.
"""

from __future__ import annotations

from typing import Any, List, Optional, Protocol, Sequence, Tuple

import torch

from .params import SamplingParams

RowLogprob = Tuple[float, List[Tuple[int, float]]]


class SampledRow(Protocol):
    """What the sampler needs from a sequence."""

    params: SamplingParams
    generator: torch.Generator
    prompt_ids: List[int]
    generated: List[int]
    constraint: Any  # an llguidance matcher for response_format, or None


def make_generator(seed: Optional[int]) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or with fresh entropy when ``seed`` is None."""
    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed & ((1 << 63) - 1))
    return gen


def _adjust(logits: torch.Tensor, row: SampledRow) -> torch.Tensor:
    params = row.params
    if not (params.logit_bias or params.needs_penalties):
        return logits
    logits = logits.clone()
    vocab = logits.shape[-1]
    if params.logit_bias:
        ids = torch.tensor([t for t in params.logit_bias if 0 <= t < vocab], dtype=torch.long)
        vals = torch.tensor([params.logit_bias[t] for t in ids.tolist()], dtype=logits.dtype)
        logits.index_add_(0, ids, vals)
    if row.generated and (params.presence_penalty or params.frequency_penalty):
        generated = torch.tensor(row.generated, dtype=torch.long)
        counts = torch.bincount(generated, minlength=vocab)[:vocab].to(logits.dtype)
        present = (counts > 0).to(logits.dtype)
        logits -= params.frequency_penalty * counts + params.presence_penalty * present
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(row.prompt_ids) | set(row.generated)), dtype=torch.long)
        seen = seen[seen < vocab]
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / params.repetition_penalty,
                                   picked * params.repetition_penalty)
    return logits


def _constrain(logits: torch.Tensor, matcher: Any) -> torch.Tensor:
    allowed = torch.frombuffer(bytearray(matcher.compute_logit_bias()), dtype=torch.uint8)
    keep = torch.zeros(logits.shape[-1], dtype=torch.bool)
    n = min(allowed.shape[0], keep.shape[0])
    keep[:n] = allowed[:n] > 0
    if not bool(keep.any()):
        return logits
    return logits.masked_fill(~keep, float("-inf"))


def _draw(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    scores = logits / params.temperature
    if 0 < params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs
        ordered = ordered.masked_fill(before > params.top_p, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(0, order, ordered)
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def _logprob(logits: torch.Tensor, token: int, top: int) -> RowLogprob:
    logp = torch.log_softmax(logits, dim=-1)
    alternatives: List[Tuple[int, float]] = []
    if top:
        values, ids = torch.topk(logp, top)
        alternatives = list(zip(ids.tolist(), values.tolist()))
    return float(logp[token]), alternatives


def sample_rows(logits: torch.Tensor,
                rows: Sequence[SampledRow]) -> Tuple[List[int], List[Optional[RowLogprob]]]:
    """Next token of every row of ``logits`` (shape ``[rows, vocab]``), and logprobs if asked."""
    logits = logits.detach().to("cpu", torch.float32)
    plain = all(r.params.greedy and not r.params.logprobs and not r.params.logit_bias
                and not r.params.needs_penalties and getattr(r, "constraint", None) is None
                for r in rows)
    if plain:
        return logits.argmax(dim=-1).tolist(), [None] * len(rows)
    tokens: List[int] = []
    logprobs: List[Optional[RowLogprob]] = []
    for i, row in enumerate(rows):
        params = row.params
        adjusted = _adjust(logits[i], row)
        if getattr(row, "constraint", None) is not None:
            adjusted = _constrain(adjusted, row.constraint)
        token = int(adjusted.argmax()) if params.greedy else _draw(adjusted, params, row.generator)
        tokens.append(token)
        wanted = params.logprobs
        logprobs.append(_logprob(logits[i], token, params.top_logprobs) if wanted else None)
    return tokens, logprobs
