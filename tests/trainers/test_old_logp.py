"""``algorithm.old_logp``: the behaviour log-probs of the importance ratio come from the training
forward when the sampler's can differ (bf16, top_p < 1), and the mismatch is logged."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from rlexp.config.algorithms import RLAlgorithmConfig
from rlexp.config.validate import validate
from rlexp.data.tasks import build_task
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.rollout.collect import collect, logp_mismatch_stats, trainer_logp_needed
from rlexp.runtime.errors import ConfigError
from rlexp.trainers.update import policy_update
from tests.conftest import TINY, compose_cfg


@pytest.mark.parametrize(
    ("setting", "dtype", "top_p", "needed"),
    [
        ("auto", torch.float32, 1.0, False),
        ("auto", torch.bfloat16, 1.0, True),
        ("auto", torch.float32, 0.9, True),
        ("sampler", torch.bfloat16, 0.9, False),
        ("trainer", torch.float32, 1.0, True),
    ],
)
def test_auto_recomputes_whenever_sampler_and_trainer_can_differ(setting, dtype, top_p, needed):
    assert trainer_logp_needed(setting, dtype, top_p) is needed


def _gspo_first_minibatch(recompute: bool) -> tuple[dict[str, float], dict[str, float]]:
    tok = build_char_tokenizer()
    policy = build_tiny_llama(tok, hidden_size=64, num_layers=2, num_heads=4, seed=0)
    policy = policy.to(torch.bfloat16)
    task = build_task("arithmetic", n_train=64, n_test=8, seed=1)
    problems = [p for p in task.train[:8] for _ in range(4)]
    rollout = OmegaConf.create({"max_new_tokens": 24, "temperature": 1.0, "top_p": 1.0})
    batch, _ = collect(
        policy,
        tok,
        task,
        problems,
        torch.arange(32) // 4,
        reward_weights={"exact_match": 1.0},
        rollout_cfg=rollout,
        generator=torch.Generator().manual_seed(0),
        chunk_size=32,
        recompute_old_logp=recompute,
    )
    batch.advantages = torch.randn(batch.completion_mask.shape) * batch.completion_mask
    # GSPO's clip range [1 - 3e-4, 1 + 4e-4]; micro-batches of 8 rows, not the 32 of the recompute
    algo = OmegaConf.structured(
        RLAlgorithmConfig(
            name="gspo",
            policy_loss="gspo",
            clip_low=3e-4,
            clip_high=4e-4,
            loss_agg="seq-mean-token-mean",
            group_size=4,
            prompts_per_step=8,
            micro_batch_size=8,
        )
    )
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
    stats = policy_update(policy, optimizer, batch, algo, 1.0, torch.Generator().manual_seed(0))
    return stats, logp_mismatch_stats(batch)


def test_gspo_in_bf16_does_not_clip_at_step_0_with_the_trainer_log_probs() -> None:
    trainer, mismatch = _gspo_first_minibatch(recompute=True)
    sampler, no_stats = _gspo_first_minibatch(recompute=False)
    assert no_stats == {}
    assert trainer["train/clip_frac"] == 0.0
    assert sampler["train/clip_frac"] > 0.1  # numerics alone push sequences out of range
    assert mismatch["rollout/logp_abs_diff"] > 1e-4
    assert mismatch["rollout/logp_k3"] >= 0 and mismatch["rollout/ratio_max"] > 1


def test_an_unknown_old_logp_setting_is_one_config_error() -> None:
    with pytest.raises(
        ConfigError, match="algorithm.old_logp=engine: use trainer, sampler or auto"
    ):
        validate(compose_cfg([*TINY, "algorithm.old_logp=engine", "output_dir=x"]))


def test_a_short_grpo_run_with_sequence_level_rollout_is(tmp_path, shared_cache) -> None:
    from rlexp.train import run
    from tests.conftest import read_jsonl

    out = tmp_path / "run"
    cfg = compose_cfg(
        [
            *TINY,
            "steps=2",
            "eval_every=2",
            "save_every=2",
            "algorithm.prompts_per_step=4",
            "algorithm.group_size=4",
            "algorithm.minibatch_size=8",
            "algorithm.rollout_is=sequence",
            f"output_dir={out}",
            f"cache_dir={shared_cache}",
        ]
    )
    run(cfg)
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "train/reward_mean" in r]
    assert len(rows) == 2
    for r in rows:  # fp32: the recomputed log-probs equal the sampler's up to float rounding
        assert r["rollout/logp_abs_diff"] < 1e-4
        assert r["rollout/is_weight_mean"] == pytest.approx(1.0, abs=1e-3)
        assert r["rollout/is_truncated_frac"] == 0.0
