"""``rollout.lag: k`` (issue 17 item 2, docs/theory.md §11): step t samples with the policy of step
max(0, t − k), exactly; a resumed run samples with the same stale weights; bad values and
impossible combinations are config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import rlexp.trainers.rl
from benchmarks.resume_demo import max_difference, side_by_side, step_rows
from rlexp.config.validate import validate
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.rollout.lag import LaggedPolicy, cpu_weights
from rlexp.runtime.errors import ConfigError
from tests.conftest import compose_cfg
from tests.trainers.test_resume import GRPO, _run


@torch.no_grad()
def fingerprint(model: nn.Module) -> float:
    """Σ_i (i + 1)·Σ w_i over the parameters in order: which weights a model holds."""
    return float(sum((i + 1) * p.double().sum() for i, p in enumerate(model.parameters())))


def _update(model: nn.Module, t: int) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(t + 1.0)


@pytest.mark.parametrize("lag", [1, 2, 3])
def test_the_behaviour_policy_trails_by_lag_steps_and_survives_a_save(
    tmp_path: Path, lag: int
) -> None:
    torch.manual_seed(0)
    policy = nn.Linear(3, 2)
    lagged = LaggedPolicy(policy, lag)
    history, behaviour, behind = [], [], []
    for t in range(7):
        history.append(fingerprint(policy))  # θ_t, before update t
        behaviour.append(fingerprint(lagged.model))
        behind.append(lagged.behind)
        _update(policy, t)
        lagged.advance(policy)
        if t == 3:  # a checkpoint after step 3, restored into a fresh process
            lagged.save_pretrained(tmp_path / "lag")
            lagged = LaggedPolicy(policy, lag)
            lagged.restore(tmp_path / "lag", policy)
            assert len(list((tmp_path / "lag").iterdir())) == min(4, lag)  # not the policy's own
    assert behaviour == [history[max(0, t - lag)] for t in range(7)]
    assert behind == [min(t, lag) for t in range(7)]
    assert not lagged.model.weight.requires_grad


def test_a_run_samples_with_the_weights_of_lag_steps_before(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    """The behaviour log-probs of step t (the sampler's, the ratio's denominator) equal a
    teacher-forced pass of the policy's weights of step t − 2, and not of step t's."""
    real_collect, seen, weights, batches = rlexp.trainers.rl.collect, [], [], []

    def collect(policy, *args, engine, old_logp_model, **kw):
        seen.append((fingerprint(engine.policy), old_logp_model is policy))
        weights.append(cpu_weights(policy))  # θ_t, the policy before update t
        batch, stats = real_collect(
            policy, *args, engine=engine, old_logp_model=old_logp_model, **kw
        )
        batches.append(batch)
        return batch, stats

    monkeypatch.setattr(rlexp.trainers.rl, "collect", collect)
    out = _run(tmp_path / "run", shared_cache, *GRPO, "steps=5", "eval_every=5", "rollout.lag=2")
    model = build_tiny_llama(build_char_tokenizer(), hidden_size=32, num_layers=1, num_heads=2)

    def teacher_forced(state: dict, batch) -> torch.Tensor:
        model.load_state_dict(state)
        with torch.no_grad():
            return completion_logprobs(
                model,
                batch.prompt_ids,
                batch.prompt_mask,
                batch.completion_ids,
                batch.completion_mask,
            )

    for t, batch in enumerate(batches):
        real = batch.completion_mask > 0
        lagged = teacher_forced(weights[max(0, t - 2)], batch)
        assert (lagged - batch.old_logp)[real].abs().max() < 1e-4, t
        if t >= 1:  # the current weights give other log-probs: the lag is real
            current = teacher_forced(weights[t], batch)
            assert (current - batch.old_logp)[real].abs().max() > 1e-3, t
    assert not any(same for _, same in seen)  # the ratio's denominator: the behaviour policy
    rows = step_rows(out)
    assert [rows[t]["rollout/lag"] for t in range(5)] == [0, 1, 2, 2, 2]
    assert all(rows[t]["train/grad_norm"] > 0 for t in range(5))


def test_lag_with_rollout_is_takes_the_ratio_around_the_current_policy(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    """Decoupled PPO: old_logp from the current weights, the truncated IS weight π_θ/μ."""
    real_collect, denominators = rlexp.trainers.rl.collect, []

    def collect(policy, *args, old_logp_model, **kw):
        denominators.append(old_logp_model is policy and kw["recompute_old_logp"])
        return real_collect(policy, *args, old_logp_model=old_logp_model, **kw)

    monkeypatch.setattr(rlexp.trainers.rl, "collect", collect)
    overrides = [*GRPO, "steps=4", "eval_every=4", "rollout.lag=2", "algorithm.rollout_is=token"]
    rows = step_rows(_run(tmp_path / "run", shared_cache, *overrides))
    assert all(denominators) and len(denominators) == 4
    assert rows[0]["rollout/is_weight_mean"] == pytest.approx(1.0, abs=1e-5)  # no lag yet
    assert rows[3]["rollout/is_weight_mean"] != pytest.approx(1.0, abs=1e-5)  # 2 updates stale


def test_the_heldout_evaluation_of_a_lagged_run_is_of_the_current_policy(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    """The engine samples rollouts with the stale behaviour policy, but an evaluation reports
    on the policy being trained (it used to evaluate the weights of k steps before)."""
    real_eval, evaluated = rlexp.trainers.rl.heldout_eval, []

    def heldout_eval(policy, *args, engine, **kw):
        evaluated.append(fingerprint(engine.policy) == fingerprint(policy))
        return real_eval(policy, *args, engine=engine, **kw)

    monkeypatch.setattr(rlexp.trainers.rl, "heldout_eval", heldout_eval)
    _run(tmp_path / "run", shared_cache, *GRPO, "steps=4", "eval_every=2", "rollout.lag=2")
    assert evaluated == [True, True, True]  # steps 0, 2 and 4


def test_a_lagged_run_resumes_exactly(tmp_path: Path, shared_cache: Path) -> None:
    """4 steps, then resume to 7, equals 7 steps straight: the checkpoint keeps the lag's
    weights, so the resumed steps sample with the same stale policy."""
    common = [*GRPO, "eval_every=7", "save_every=2", "rollout.lag=3"]
    full = _run(tmp_path / "full", shared_cache, *common, "steps=7")
    out = _run(tmp_path / "resumed", shared_cache, *common, "steps=4")
    assert len(list((out / "checkpoints" / "step_000004" / "lag").iterdir())) == 3
    _run(out, shared_cache, *common, "steps=7", "resume=true")
    a, b = step_rows(full), step_rows(out)
    assert max_difference(a, b) <= 1e-6, side_by_side(a, b, ["train/reward_mean", "loss/policy"])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["rollout.lag=-1"], "rollout.lag=-1 must be >= 0"),
        (["algorithm=dpo", "rollout.lag=2"], "algorithm.trainer=dpo samples no rollouts"),
        (["algorithm=sft", "rollout.lag=1"], "algorithm.trainer=sft samples no rollouts"),
        (["distributed.strategy=fsdp", "rollout.lag=1"], "distributed.strategy=fsdp"),
        (["rollout.mode=overlap"], "rollout.mode=overlap: use one of sync, async"),
        (["rollout.mode=async", "rollout.lag=1"], "rollout.engine=native samples with the policy"),
        (["rollout.mode=async", "rollout.engine=vllm"], "the data of rollout.lag=1, not rollout"),
        (
            ["rollout.mode=async", "rollout.engine=vllm", "rollout.lag=1", "algorithm=dapo"],
            "algorithm.dynamic_sampling refills",
        ),
    ],
)
def test_impossible_lags_are_config_errors(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        validate(compose_cfg(overrides))
