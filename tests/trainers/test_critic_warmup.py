"""``algorithm.critic.warmup_steps`` (verl's critic_warmup): the first steps update only the
critic, on rollouts of the unchanged start policy; the policy's updates start after them."""

from __future__ import annotations

from pathlib import Path

import pytest

import rlexp.trainers.rl
from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from tests.conftest import TINY, compose_cfg, read_jsonl

SHAPES = [
    "algorithm.prompts_per_step=4",
    "algorithm.minibatch_size=4",
    "algorithm.overlong.enabled=true",  # a learning signal for the smoke-size base
    "algorithm.overlong.max_len=20",
    "algorithm.overlong.cache_len=16",
    "threads=1",
    "eval_every=10",
    "save_every=10",
]
PPO = ["algorithm=ppo", *SHAPES]


def test_warmup_steps_update_only_the_critic(tmp_path: Path, shared_cache: Path, monkeypatch):
    calls: dict[str, list[int]] = {"policy": [], "critic": []}
    real_policy, real_critic = rlexp.trainers.rl.policy_update, rlexp.trainers.rl.critic_update

    def policy_update(*args, **kw):
        calls["policy"].append(len(calls["critic"]))  # the step: critic updates so far
        return real_policy(*args, **kw)

    def critic_update(*args, **kw):
        calls["critic"].append(len(calls["critic"]))
        return real_critic(*args, **kw)

    monkeypatch.setattr(rlexp.trainers.rl, "policy_update", policy_update)
    monkeypatch.setattr(rlexp.trainers.rl, "critic_update", critic_update)
    out = tmp_path / "run"
    overrides = [*TINY, *PPO, "steps=3", "algorithm.critic.warmup_steps=2"]
    run(compose_cfg([*overrides, f"output_dir={out}", f"cache_dir={shared_cache}"]))
    assert calls == {"policy": [2], "critic": [0, 1, 2]}
    rows = {r["train/step"]: r for r in read_jsonl(out / "metrics.jsonl") if "train/step" in r}
    # the policy did not move during the warm-up: the parameter norm is the start one
    assert rows[0]["train/param_norm"] == rows[1]["train/param_norm"]
    assert rows[2]["train/param_norm"] != rows[1]["train/param_norm"]
    assert all("critic/explained_variance" in rows[s] for s in range(3))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["algorithm.critic.warmup_steps=-1"], "must be >= 0"),
        (["algorithm.critic.warmup_steps=3"], "leaves no policy update in steps=3"),
        (["algorithm.critic.enabled=false", "algorithm.critic.warmup_steps=1"], "enabled=false"),
    ],
)
def test_impossible_warmups_are_config_errors(tmp_path: Path, extra: list[str], message: str):
    algo = "algorithm=grpo" if "algorithm.critic.enabled=false" in extra else "algorithm=ppo"
    cfg = compose_cfg([*TINY, algo, *SHAPES, "steps=3", *extra, f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
