"""Truncated importance weights of the sampler/trainer mismatch, against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from rlexp.algos.importance import truncated_is_weights
from rlexp.config.validate import validate
from rlexp.runtime.errors import ConfigError
from tests.conftest import TINY, compose_cfg

# two sequences; the second has one padded token (whose values must not matter)
TRAINER = torch.tensor([[-1.0, -2.0, -0.5], [-0.2, -0.1, 9.0]])
SAMPLER = torch.tensor([[-1.5, -1.0, -0.5], [-0.2, -0.4, -9.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_token_weights_are_the_truncated_ratio_of_each_token() -> None:
    w = truncated_is_weights(TRAINER, SAMPLER, MASK, "token", cap=1.5)
    # exp(0.5)=1.6487 -> 1.5 (cap), exp(-1)=0.3679, exp(0)=1; exp(0)=1, exp(0.3)=1.3499; pad 0
    want = torch.tensor([[1.5, math.exp(-1.0), 1.0], [1.0, math.exp(0.3), 0.0]])
    torch.testing.assert_close(w, want)


def test_sequence_weights_are_the_truncated_product_over_the_sequence() -> None:
    w = truncated_is_weights(TRAINER, SAMPLER, MASK, "sequence", cap=2.0)
    # sequence 0: exp(0.5 - 1 + 0) = exp(-0.5); sequence 1: exp(0 + 0.3) (the pad left out)
    want = torch.tensor([[math.exp(-0.5)] * 3, [math.exp(0.3)] * 2 + [0.0]])
    torch.testing.assert_close(w, want)
    capped = truncated_is_weights(TRAINER, SAMPLER, MASK, "sequence", cap=1.2)
    assert float(capped[1, 0]) == pytest.approx(1.2)


def test_equal_log_probs_give_weight_one_and_weights_carry_no_gradient() -> None:
    logp = torch.tensor([[-0.3, -0.7]], requires_grad=True)
    w = truncated_is_weights(logp, logp.detach(), torch.ones(1, 2), "token", cap=2.0)
    assert not w.requires_grad
    torch.testing.assert_close(w, torch.ones(1, 2))


def test_rollout_is_needs_the_trainer_log_probs() -> None:
    with pytest.raises(ConfigError, match="algorithm.old_logp=sampler keeps only the sampler's"):
        validate(
            compose_cfg(
                [*TINY, "algorithm.rollout_is=token", "algorithm.old_logp=sampler", "output_dir=x"]
            )
        )
    with pytest.raises(ConfigError, match="algorithm.rollout_is=tokens: use none, token, sequence"):
        validate(compose_cfg([*TINY, "algorithm.rollout_is=tokens", "output_dir=x"]))
