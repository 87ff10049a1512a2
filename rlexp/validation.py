"""Checks of whole-run combinations, before any compute: one clear message per problem.

Types and unknown keys are caught earlier by the structured configs (rlexp.config); this module
catches values that are each valid but impossible or silently useless together.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlexp.advantages import ADVANTAGES, estimator_requirements
from rlexp.losses import AGG_MODES, DPO_KINDS, POLICY_LOSSES
from rlexp.pairs import PairsFileError, load_pairs
from rlexp.rewards import REWARDS
from rlexp.tasks import TASKS

KL_ESTIMATORS = ("k1", "k2", "k3")
KL_PLACEMENTS = ("reward", "loss", "none")


class ConfigError(ValueError):
    """A configuration that cannot run as asked; the message names the keys to change."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _in_unit_interval(name: str, value: float) -> None:
    _check(0.0 <= value <= 1.0, f"{name}={value} must lie in [0, 1]")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first invalid combination in a composed run config."""
    algo = cfg.algorithm
    _check(
        cfg.task.name in TASKS, f"task={cfg.task.name} is unknown; choose one of: {TASKS.names()}"
    )
    for component in cfg.reward.components:
        _check(
            component in REWARDS,
            f"reward component {component!r} is unknown; choose from: {REWARDS.names()}",
        )
    if "carry_slip" in cfg.task:
        _in_unit_interval("task.carry_slip", cfg.task.carry_slip)
    _check(cfg.steps >= 0, f"steps={cfg.steps} must be >= 0")
    _check(
        cfg.rollout.temperature > 0, f"rollout.temperature={cfg.rollout.temperature} must be > 0"
    )
    _check(0 < cfg.rollout.top_p <= 1, f"rollout.top_p={cfg.rollout.top_p} must lie in (0, 1]")
    _check(cfg.rollout.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1")
    _check(cfg.eval.n_samples >= 1, f"eval.n_samples={cfg.eval.n_samples} must be >= 1")
    _check(cfg.eval.temperature > 0, f"eval.temperature={cfg.eval.temperature} must be > 0")
    _check(cfg.sft.steps >= 0 and cfg.sft.batch_size >= 1, "sft.steps >= 0 and sft.batch_size >= 1")
    _validate_model_path(cfg)
    if algo.trainer == "sft":
        return
    if algo.trainer in OFFLINE_CHECKS:
        OFFLINE_CHECKS[algo.trainer](cfg)
        return
    _check(algo.trainer == "rl", f"algorithm.trainer={algo.trainer}: use rl, sft, dpo or rft")
    _validate_advantage(cfg)
    _validate_policy_update(algo)
    _validate_batch_sizes(algo)
    _validate_kl(cfg)
    _validate_sampling(cfg)


def _validate_model_path(cfg: DictConfig) -> None:
    """``model=hf``: ``model.path`` must be a folder written by ``save_pretrained`` (nothing is
    downloaded), checked before the run starts rather than deep inside model loading."""
    if cfg.model.name != "hf":
        return
    _check(not OmegaConf.is_missing(cfg.model, "path"), "model=hf needs model.path=<model folder>")
    path = Path(cfg.model.path)
    _check(
        (path / "config.json").is_file(),
        f"model.path={path} is not a saved model folder (no {path / 'config.json'}); give the "
        "folder that save_pretrained wrote",
    )


def _validate_advantage(cfg: DictConfig) -> None:
    algo, adv = cfg.algorithm, cfg.advantage
    _check(adv.name in ADVANTAGES, f"advantage={adv.name} is unknown; choose: {ADVANTAGES.names()}")
    needs = estimator_requirements(adv.name)
    for key in ("gamma", "lam"):
        if key in adv:
            _in_unit_interval(f"advantage.{key}", adv[key])
    if algo.critic.lam is not None:
        _in_unit_interval("algorithm.critic.lam", algo.critic.lam)
    _check(
        not needs.critic or algo.critic.enabled,
        f"advantage={adv.name} needs a critic, but algorithm={algo.name} has none "
        "(set algorithm.critic.enabled=true, or use algorithm=ppo)",
    )
    _check(
        needs.critic or not algo.critic.enabled,
        f"algorithm.critic.enabled=true but advantage={adv.name} never reads the critic's values "
        "(use advantage=gae, or algorithm.critic.enabled=false)",
    )
    _check(
        not needs.groups or algo.group_size >= 2,
        f"advantage={adv.name} compares samples within a group, so algorithm.group_size must be "
        f">= 2 (got {algo.group_size})",
    )


def _validate_policy_update(algo: DictConfig) -> None:
    _check(
        algo.policy_loss in POLICY_LOSSES,
        f"algorithm.policy_loss={algo.policy_loss} is unknown; choose: {POLICY_LOSSES.names()}",
    )
    _check(
        algo.loss_agg in AGG_MODES,
        f"algorithm.loss_agg={algo.loss_agg} is unknown; choose: {list(AGG_MODES)}",
    )
    _check(algo.clip_low > 0, f"algorithm.clip_low={algo.clip_low} must be > 0 (ε > 0)")
    _check(algo.clip_high > 0, f"algorithm.clip_high={algo.clip_high} must be > 0 (ε > 0)")
    _check(algo.clip_low < 1, f"algorithm.clip_low={algo.clip_low} must be < 1")
    _check(
        algo.dual_clip is None or algo.dual_clip > 1,
        f"algorithm.dual_clip={algo.dual_clip} must be > 1 (or null)",
    )
    _check(algo.epochs >= 1, f"algorithm.epochs={algo.epochs} must be >= 1")
    _check(algo.lr > 0, f"algorithm.lr={algo.lr} must be > 0")
    _check(algo.entropy_coef >= 0, f"algorithm.entropy_coef={algo.entropy_coef} must be >= 0")


def _validate_batch_sizes(algo: DictConfig) -> None:
    _check(algo.group_size >= 1, f"algorithm.group_size={algo.group_size} must be >= 1")
    _check(algo.prompts_per_step >= 1, "algorithm.prompts_per_step must be >= 1")
    batch = algo.group_size * algo.prompts_per_step
    minibatch = algo.minibatch_size or batch
    _check(
        minibatch >= 1 and batch % minibatch == 0,
        f"algorithm.minibatch_size={minibatch} must divide the rollout batch "
        f"(prompts_per_step × group_size = {algo.prompts_per_step} × {algo.group_size} = {batch})",
    )
    micro = min(algo.micro_batch_size, minibatch)
    _check(
        micro >= 1 and minibatch % micro == 0,
        f"algorithm.micro_batch_size={algo.micro_batch_size} must divide "
        f"algorithm.minibatch_size={minibatch}",
    )


def _validate_kl(cfg: DictConfig) -> None:
    kl, adv = cfg.algorithm.kl, cfg.advantage
    _check(
        kl.estimator in KL_ESTIMATORS, f"algorithm.kl.estimator={kl.estimator}: use k1, k2 or k3"
    )
    _check(
        kl.placement in KL_PLACEMENTS, f"algorithm.kl.placement={kl.placement}: use {KL_PLACEMENTS}"
    )
    _check(kl.coef >= 0, f"algorithm.kl.coef={kl.coef} must be >= 0")
    _check(
        kl.coef == 0 or kl.placement != "none",
        f"algorithm.kl.coef={kl.coef} is set but algorithm.kl.placement=none, so it would do "
        "nothing; set algorithm.kl.placement=loss or reward, or algorithm.kl.coef=0",
    )
    _check(
        kl.coef == 0 or kl.placement != "reward" or estimator_requirements(adv.name).token_rewards,
        f"algorithm.kl.placement=reward has no effect with advantage={adv.name}, which reads only "
        "the sequence score; use algorithm.kl.placement=loss (or an advantage over token rewards)",
    )


def _validate_sampling(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    _check(
        not algo.dynamic_sampling or algo.group_size >= 2,
        "algorithm.dynamic_sampling=true drops groups whose samples all agree, so it needs "
        f"algorithm.group_size >= 2 (got {algo.group_size})",
    )
    _check(algo.max_sampling_rounds >= 1, "algorithm.max_sampling_rounds must be >= 1")
    if algo.overlong.enabled:
        max_len = algo.overlong.max_len or cfg.rollout.max_new_tokens
        _check(
            0 < algo.overlong.cache_len <= max_len,
            f"algorithm.overlong.cache_len={algo.overlong.cache_len} must lie in (0, max_len={max_len}]",
        )
        _check(
            max_len <= cfg.rollout.max_new_tokens,
            f"algorithm.overlong.max_len={max_len} exceeds rollout.max_new_tokens="
            f"{cfg.rollout.max_new_tokens}: no completion could reach it",
        )


def _validate_offline(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    _check(algo.lr > 0, f"algorithm.lr={algo.lr} must be > 0")
    _check(algo.micro_batch_size >= 1, "algorithm.micro_batch_size must be >= 1")
    _check(
        not cfg.resume,
        f"resume=true: algorithm={algo.name} (an offline method) does not resume; start a new run",
    )


def _validate_dpo(cfg: DictConfig) -> None:
    d = cfg.algorithm.dpo
    _validate_offline(cfg)
    _check(d.beta > 0, f"algorithm.dpo.beta={d.beta} must be > 0")
    _check(d.kind in DPO_KINDS, f"algorithm.dpo.kind={d.kind} is unknown; use {DPO_KINDS.names()}")
    _check(d.batch_size >= 1, f"algorithm.dpo.batch_size={d.batch_size} must be >= 1")
    if d.pairs_file:  # read now, so a bad line stops the run before any compute
        try:
            load_pairs(d.pairs_file)
        except PairsFileError as err:
            raise ConfigError(f"algorithm.dpo.pairs_file: {err}") from None
        return
    _check(
        d.k >= 2,
        f"algorithm.dpo.k={d.k}: building pairs needs >= 2 samples per prompt (a right and a "
        "wrong one), or a pairs file (algorithm.dpo.pairs_file)",
    )
    _check(d.n_prompts >= 1, f"algorithm.dpo.n_prompts={d.n_prompts} must be >= 1")
    _check(d.pairs_per_prompt >= 1, "algorithm.dpo.pairs_per_prompt must be >= 1")


def _validate_rft(cfg: DictConfig) -> None:
    r = cfg.algorithm.rft
    _validate_offline(cfg)
    _check(r.k >= 1, f"algorithm.rft.k={r.k} must be >= 1")
    _check(r.n_prompts >= 1, f"algorithm.rft.n_prompts={r.n_prompts} must be >= 1")
    _check(r.batch_size >= 1, f"algorithm.rft.batch_size={r.batch_size} must be >= 1")


OFFLINE_CHECKS = {"dpo": _validate_dpo, "rft": _validate_rft}  # algorithm.trainer → checks
