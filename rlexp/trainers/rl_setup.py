"""The ``rl`` trainer kind: its schema (``algorithm:`` of PPO, GRPO, DAPO, ...), the checks of
its combinations, and its entry point, which builds policy, critic and reference and runs
``rlexp.trainers.rl.RLTrainer``."""

from __future__ import annotations

import copy
import warnings

from omegaconf import DictConfig
from torch import nn

from rlexp.algos.advantages import ADVANTAGES, estimator_requirements
from rlexp.algos.importance import ROLLOUT_IS_LEVELS
from rlexp.algos.kl import KL_ESTIMATORS
from rlexp.algos.losses import AGG_MODES, POLICY_LOSSES, RATIO_CLIP_LOSSES
from rlexp.data.lengths import check_task_fits, context_length
from rlexp.models.build import enable_gradient_checkpointing, init_model
from rlexp.models.load import load_policy
from rlexp.models.lora import apply_lora
from rlexp.models.precision import use_fp32_lm_head
from rlexp.models.reference import build_reference
from rlexp.models.value import ValueModel
from rlexp.runtime.distributed import (
    broadcast_module,
    broadcast_object,
    env_world_size,
    is_main,
    world_size,
)
from rlexp.runtime.errors import check, check_unit_interval
from rlexp.runtime.sharding import shard
from rlexp.trainers.kinds import (
    TRAINERS,
    RunContext,
    TrainerKind,
    print_base_to_final,
)
from rlexp.trainers.rl import RLTrainer
from rlexp.trainers.sft_base import start_checkpoint

KL_PLACEMENTS = ("reward", "loss", "none")


def validate_rl(cfg: DictConfig) -> None:
    """The combinations of advantage, loss, batch sizes, KL and sampling an RL run can use."""
    _validate_world(cfg.algorithm, env_world_size())
    _validate_advantage(cfg)
    _validate_policy_update(cfg.algorithm)
    _validate_batch_sizes(cfg.algorithm)
    _validate_kl(cfg)
    _validate_sampling(cfg)


def _validate_world(algo: DictConfig, world: int) -> None:
    """Data parallelism (torchrun, ``world`` processes) splits whole groups evenly over ranks."""
    if world <= 1:
        return
    check(
        algo.prompts_per_step % world == 0,
        f"algorithm.prompts_per_step={algo.prompts_per_step} must divide by the {world} "
        "data-parallel processes (each rank samples whole groups for an equal share of prompts)",
    )
    check(
        not algo.minibatch_size or algo.minibatch_size % world == 0,
        f"algorithm.minibatch_size={algo.minibatch_size} must divide by the {world} "
        "data-parallel processes (each rank takes an equal share of every minibatch)",
    )


def _validate_advantage(cfg: DictConfig) -> None:
    algo, adv = cfg.algorithm, cfg.advantage
    check(adv.name in ADVANTAGES, f"advantage={adv.name} is unknown; choose: {ADVANTAGES.names()}")
    needs = estimator_requirements(adv.name)
    for key in ("gamma", "lam"):
        if key in adv:
            check_unit_interval(f"advantage.{key}", adv[key])
    if algo.critic.lam is not None:
        check_unit_interval("algorithm.critic.lam", algo.critic.lam)
    check(
        adv.get("std_scope", "group") in ("group", "batch"),
        f"advantage.std_scope={adv.get('std_scope')}: use group (GRPO) or batch (ScaleRL)",
    )
    check(
        not needs.critic or algo.critic.enabled,
        f"advantage={adv.name} needs a critic, but algorithm={algo.name} has none "
        "(set algorithm.critic.enabled=true, or use algorithm=ppo)",
    )
    check(
        needs.critic or not algo.critic.enabled,
        f"algorithm.critic.enabled=true but advantage={adv.name} never reads the critic's values "
        "(use advantage=gae, or algorithm.critic.enabled=false)",
    )
    check(
        not needs.groups or algo.group_size >= 2,
        f"advantage={adv.name} compares samples within a group, so algorithm.group_size must be "
        f">= 2 (got {algo.group_size})",
    )


def _validate_policy_update(algo: DictConfig) -> None:
    check(
        algo.old_logp in ("trainer", "sampler", "auto"),
        f"algorithm.old_logp={algo.old_logp}: use trainer, sampler or auto",
    )
    check(
        algo.rollout_is in ROLLOUT_IS_LEVELS,
        f"algorithm.rollout_is={algo.rollout_is}: use {', '.join(ROLLOUT_IS_LEVELS)}",
    )
    check(
        algo.rollout_is == "none" or algo.old_logp != "sampler",
        f"algorithm.rollout_is={algo.rollout_is} weighs the trainer's log-probs against the "
        "sampler's, but algorithm.old_logp=sampler keeps only the sampler's; use trainer or auto",
    )
    check(algo.rollout_is_cap >= 1, f"algorithm.rollout_is_cap={algo.rollout_is_cap} must be >= 1")
    check(
        algo.policy_loss in POLICY_LOSSES,
        f"algorithm.policy_loss={algo.policy_loss} is unknown; choose: {POLICY_LOSSES.names()}",
    )
    check(
        algo.loss_agg in AGG_MODES,
        f"algorithm.loss_agg={algo.loss_agg} is unknown; choose: {list(AGG_MODES)}",
    )
    check(
        algo.loss_agg != "seq-mean-token-sum-norm" or algo.norm_len is not None,
        "algorithm.loss_agg=seq-mean-token-sum-norm divides token sums by a constant: set "
        "algorithm.norm_len (Dr.GRPO: ${rollout.max_new_tokens}); without it the divisor would "
        "be each step's longest completion, which changes from step to step",
    )
    check(
        algo.norm_len is None or algo.norm_len >= 1,
        f"algorithm.norm_len={algo.norm_len} must be >= 1",
    )
    check(algo.clip_low > 0, f"algorithm.clip_low={algo.clip_low} must be > 0 (ε > 0)")
    check(algo.clip_high > 0, f"algorithm.clip_high={algo.clip_high} must be > 0 (ε > 0)")
    if algo.policy_loss in RATIO_CLIP_LOSSES:
        check(algo.clip_low < 1, f"algorithm.clip_low={algo.clip_low} must be < 1")
    check(
        algo.dual_clip is None or algo.policy_loss in RATIO_CLIP_LOSSES,
        f"algorithm.dual_clip={algo.dual_clip} bounds PPO's clipped surrogate; "
        f"algorithm.policy_loss={algo.policy_loss} has none (dual_clip works with "
        f"{', '.join(sorted(RATIO_CLIP_LOSSES))}): set algorithm.dual_clip=null",
    )
    check(
        algo.dual_clip is None or algo.dual_clip > 1,
        f"algorithm.dual_clip={algo.dual_clip} must be > 1 (or null)",
    )
    check(algo.epochs >= 1, f"algorithm.epochs={algo.epochs} must be >= 1")
    check(algo.lr > 0, f"algorithm.lr={algo.lr} must be > 0")
    check(algo.entropy_coef >= 0, f"algorithm.entropy_coef={algo.entropy_coef} must be >= 0")


def _validate_batch_sizes(algo: DictConfig) -> None:
    check(algo.group_size >= 1, f"algorithm.group_size={algo.group_size} must be >= 1")
    check(algo.prompts_per_step >= 1, "algorithm.prompts_per_step must be >= 1")
    batch = algo.group_size * algo.prompts_per_step
    minibatch = algo.minibatch_size or batch
    check(
        minibatch >= 1 and batch % minibatch == 0,
        f"algorithm.minibatch_size={minibatch} must divide the rollout batch "
        f"(prompts_per_step × group_size = {algo.prompts_per_step} × {algo.group_size} = {batch})",
    )
    micro = min(algo.micro_batch_size, minibatch)
    check(
        micro >= 1 and minibatch % micro == 0,
        f"algorithm.micro_batch_size={algo.micro_batch_size} must divide "
        f"algorithm.minibatch_size={minibatch}",
    )


def _validate_kl(cfg: DictConfig) -> None:
    kl, adv = cfg.algorithm.kl, cfg.advantage
    check(
        kl.estimator in KL_ESTIMATORS,
        f"algorithm.kl.estimator={kl.estimator}: use {', '.join(KL_ESTIMATORS.names())}",
    )
    check(
        not (kl.estimator == "k1" and kl.placement == "loss" and kl.coef > 0),
        "algorithm.kl.estimator=k1 with algorithm.kl.placement=loss has zero expected gradient "
        "(E[∇k1] = 0, theory.md §4): it only adds noise; use k2 or k3_plus in the loss (or k1 "
        "with placement=reward)",
    )
    check(
        kl.placement in KL_PLACEMENTS, f"algorithm.kl.placement={kl.placement}: use {KL_PLACEMENTS}"
    )
    check(kl.coef >= 0, f"algorithm.kl.coef={kl.coef} must be >= 0")
    check(
        kl.coef == 0 or kl.placement != "none",
        f"algorithm.kl.coef={kl.coef} is set but algorithm.kl.placement=none, so it would do "
        "nothing; set algorithm.kl.placement=loss or reward, or algorithm.kl.coef=0",
    )
    check(
        kl.coef == 0 or kl.placement != "reward" or estimator_requirements(adv.name).token_rewards,
        f"algorithm.kl.placement=reward has no effect with advantage={adv.name}, which reads only "
        "the sequence score; use algorithm.kl.placement=loss (or an advantage over token rewards)",
    )


def _validate_sampling(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    check(
        not (algo.dynamic_sampling and cfg.distributed.strategy == "fsdp"),
        "algorithm.dynamic_sampling=true can leave the ranks with shards of different sizes, "
        "and FSDP's collectives need every rank in every forward: use distributed.strategy=ddp",
    )
    check(
        not algo.zero_variance_filter or algo.group_size >= 2,
        "algorithm.zero_variance_filter=true drops groups whose scores all agree, so it needs "
        f"algorithm.group_size >= 2 (got {algo.group_size}: every group of one would be dropped)",
    )
    check(
        not algo.dynamic_sampling or algo.group_size >= 2,
        "algorithm.dynamic_sampling=true drops groups whose samples all agree, so it needs "
        f"algorithm.group_size >= 2 (got {algo.group_size})",
    )
    check(algo.max_sampling_rounds >= 1, "algorithm.max_sampling_rounds must be >= 1")
    if algo.overlong.enabled:
        max_len = algo.overlong.max_len or cfg.rollout.max_new_tokens
        check(
            0 < algo.overlong.cache_len <= max_len,
            f"algorithm.overlong.cache_len={algo.overlong.cache_len} must lie in (0, max_len={max_len}]",
        )
        check(
            max_len <= cfg.rollout.max_new_tokens,
            f"algorithm.overlong.max_len={max_len} exceeds rollout.max_new_tokens="
            f"{cfg.rollout.max_new_tokens}: no completion could reach it",
        )


def use_fsdp(cfg: DictConfig) -> bool:
    """``distributed.strategy=fsdp`` shards over the ranks of a torchrun world; in a single
    process there is nothing to shard over: the run goes on unsharded, with a warning."""
    if cfg.distributed.strategy != "fsdp":
        return False
    if world_size() == 1:
        warnings.warn(
            "distributed.strategy=fsdp in a single process: nothing to shard over, the run is "
            "unsharded (launch with torchrun --nproc_per_node=N to shard)",
            stacklevel=2,
        )
        return False
    return True


def run_rl(ctx: RunContext) -> dict[str, float]:
    """Online RL from the start model (or the checkpoint ``ctx.resume_from``)."""
    cfg, task, device, dtype = ctx.cfg, ctx.task, ctx.device, ctx.dtype
    logger, run_dir, resume_from, info = ctx.logger, ctx.run_dir, ctx.resume_from, ctx.info
    # Also on resume (a killed run never wrote it to run_info.json): it is the KL reference.
    # Data parallel: rank 0 trains a missing SFT base while the others wait.
    base = start_checkpoint(cfg, task, device, dtype, logger, run_dir) if is_main() else None
    base = info["base_checkpoint"] = broadcast_object(base)
    chat = cfg.model.get("chat_template", "auto")
    if resume_from is not None:
        policy, tokenizer = load_policy(resume_from / "policy", device, dtype, chat)
    elif base is not None:
        policy, tokenizer = load_policy(base, device, dtype, chat)
    else:
        policy, tokenizer = init_model(cfg, device, dtype)
    check_task_fits(cfg, task, tokenizer, context_length(policy), sft=False)
    critic = None
    if cfg.algorithm.critic.enabled:  # a full critic from the start model, also with LoRA
        critic = (
            ValueModel.from_pretrained(resume_from / "critic", device, dtype)
            if resume_from
            else ValueModel.from_policy(policy)
        )
        critic.backbone.requires_grad_(cfg.algorithm.critic.train_backbone)
        broadcast_module(critic)  # data parallel: every rank starts from rank 0's weights
    policy = apply_lora(policy, cfg.model.get("lora"))  # a resumed LoRA policy has its adapter
    broadcast_module(policy)
    # the frozen reference is the start model, also after a resume (the same on every rank)
    ref_model = build_reference(cfg, policy, base, device, dtype)
    if cfg.model.get("fp32_lm_head"):  # before any copy (the sampler's, the lag's) is made
        for model in (policy, ref_model):
            if isinstance(model, nn.Module):  # not the adapter-off view of a LoRA policy
                use_fp32_lm_head(model)
    if cfg.model.get("gradient_checkpointing"):
        for model in (policy, critic):
            if model is not None:
                enable_gradient_checkpointing(model)
    sampler_model = None
    if use_fsdp(cfg):
        if cfg.rollout.engine == "native":  # the native sampler reads whole weights: a copy
            sampler_model = copy.deepcopy(policy).eval().requires_grad_(False)
        offload = cfg.distributed.fsdp.offload
        for model in (policy, critic, ref_model):
            if isinstance(model, nn.Module):  # not the adapter-off view of a LoRA policy
                shard(model, dtype, offload)
    trainer = RLTrainer(
        cfg,
        run_dir,
        policy,
        tokenizer,
        task,
        logger,
        ref_model=ref_model,
        critic=critic,
        sampler_model=sampler_model,
    )
    if resume_from is not None:
        trainer.restore(resume_from)
    try:
        final = trainer.run()
    finally:
        trainer.close()
    if is_main():
        print_base_to_final(run_dir, final)
    return final


TRAINERS.register("rl")(
    TrainerKind(
        validate=validate_rl,
        run=run_rl,
        data_parallel=True,
        resumable=True,
        lora=True,
        kl_reference=True,
        rollout_engine=True,
    )
)
