"""Per-row sampling: greedy, seeds, top_k/top_p, logit_bias, penalties, logprobs."""

from dataclasses import dataclass, field
from typing import List

import pytest
import torch

from xinference.model.llm.params import SamplingParams
from xinference.model.llm.torch_sampling import make_generator, sample_rows


@dataclass
class Row:
    params: SamplingParams
    generated: List[int] = field(default_factory=list)
    prompt_ids: List[int] = field(default_factory=list)

    def __post_init__(self):
        self.generator = make_generator(self.params.seed)


def logits_for(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_greedy_rows_take_argmax():
    logits = logits_for([0.0, 3.0, 1.0], [5.0, 0.0, 1.0])
    rows = [Row(SamplingParams(temperature=0)), Row(SamplingParams(top_k=1))]
    tokens, lps = sample_rows(logits, rows)
    assert tokens == [1, 0] and lps == [None, None]


def test_same_seed_same_draws_other_seed_differs():
    logits = torch.zeros(1, 1000)

    def draws(seed):
        row = Row(SamplingParams(temperature=1.0, seed=seed))
        return [sample_rows(logits, [row])[0][0] for _ in range(20)]

    assert draws(11) == draws(11)
    assert draws(11) != draws(12)


def test_top_k_and_top_p_restrict_the_choice():
    logits = logits_for([4.0, 3.9, 0.0, 0.0, 0.0])
    seen_k = {sample_rows(logits, [Row(SamplingParams(top_k=2, seed=s))])[0][0] for s in range(40)}
    assert seen_k == {0, 1}
    peaked = logits_for([10.0, 0.0, 0.0, 0.0, 0.0])
    seen_p = {sample_rows(peaked, [Row(SamplingParams(top_p=0.5, seed=s))])[0][0]
              for s in range(40)}
    assert seen_p == {0}
    flat = torch.zeros(1, 5)
    seen_all = {sample_rows(flat, [Row(SamplingParams(seed=s))])[0][0] for s in range(60)}
    assert len(seen_all) == 5


def test_logit_bias_and_penalties():
    logits = logits_for([2.0, 1.0, 0.0])
    assert sample_rows(logits, [Row(SamplingParams(temperature=0, logit_bias={2: 100}))])[0] == [2]
    assert sample_rows(logits, [Row(SamplingParams(temperature=0, logit_bias={0: -100}))])[0] == [1]
    penalised = Row(SamplingParams(temperature=0, frequency_penalty=0.6), generated=[0, 0])
    assert sample_rows(logits, [penalised])[0] == [1]
    present = Row(SamplingParams(temperature=0, presence_penalty=1.5), generated=[0])
    assert sample_rows(logits, [present])[0] == [1]
    repeated = Row(SamplingParams(temperature=0, repetition_penalty=3.0), prompt_ids=[0])
    assert sample_rows(logits, [repeated])[0] == [1]
    assert sample_rows(logits, [Row(SamplingParams(temperature=0))])[0] == [0]


def test_logprobs_of_chosen_and_top():
    logits = logits_for([2.0, 1.0, 0.0])
    (token,), (lp,) = sample_rows(logits, [Row(SamplingParams(temperature=0, logprobs=True,
                                                              top_logprobs=2))])
    expected = torch.log_softmax(logits[0], -1)
    assert token == 0 and lp[0] == pytest.approx(float(expected[0]))
    assert [t for t, _ in lp[1]] == [0, 1]
    assert lp[1][1][1] == pytest.approx(float(expected[1]))
