"""The online RL loop: rollout → reward → advantage → epochs × minibatches → log / eval / save.

It never names an algorithm: the config picks the advantage estimator, policy loss, KL placement
and critic, and the registries supply the functions.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from rlexp.checkpoint import (
    WithTokenizer,
    load_trainer_state,
    save_checkpoint,
    set_rng_state,
)
from rlexp.data import PromptStream
from rlexp.distributed import (
    all_gather_objects,
    all_reduce_scalar,
    global_mean_std,
    is_main,
    rank,
    rank_seed,
    reduce_dict,
    world_size,
)
from rlexp.evaluation import heldout_eval
from rlexp.experience import (
    RolloutBatch,
    add_kl_penalty,
    add_overlong_penalty,
    collect,
    compute_advantages,
    concat_batches,
    informative_groups,
    rollout_stats,
)
from rlexp.kl import kl_estimate
from rlexp.models.lora import trainable_parameters
from rlexp.tasks.base import Task
from rlexp.tracking import RunLogger
from rlexp.update import critic_update, policy_update


class RLTrainer:
    def __init__(
        self,
        cfg,
        run_dir: Path,
        policy,
        tokenizer,
        task: Task,
        logger: RunLogger,
        ref_model=None,
        critic=None,
    ) -> None:
        self.cfg, self.algo = cfg, cfg.algorithm
        self.run_dir, self.logger = run_dir, logger
        self.policy, self.tokenizer, self.task = policy, tokenizer, task
        self.ref_model, self.critic = ref_model, critic
        self.device = next(policy.parameters()).device
        self.reward_weights = dict(cfg.reward.components)
        self.adv_cfg = OmegaConf.to_container(cfg.advantage, resolve=True)
        self.optimizer = torch.optim.AdamW(
            trainable_parameters(policy), lr=self.algo.lr, weight_decay=self.algo.weight_decay
        )
        self.critic_optimizer = (
            torch.optim.AdamW(critic.parameters(), lr=self.algo.critic.lr)
            if critic is not None
            else None
        )
        self.stream = PromptStream(len(task.train), seed=cfg.seed)
        self.rollout_gen = torch.Generator(device=self.device).manual_seed(rank_seed(cfg.seed))
        self.update_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.next_group_id = 0
        self.samples_seen = 0
        self.tokens_seen = 0.0

    # ---- state -----------------------------------------------------------------------------
    def save(self) -> Path | None:
        if not is_main():  # data parallel: the ranks hold the same weights; rank 0 writes
            return None
        modules = {"policy": WithTokenizer(self.policy, self.tokenizer)}
        state = {
            "optimizer": self.optimizer.state_dict(),
            "stream": self.stream.state_dict(),
            "rollout_gen": self.rollout_gen.get_state(),
            "update_gen": self.update_gen.get_state(),
            "samples_seen": self.samples_seen,
            "tokens_seen": self.tokens_seen,
            "wandb_id": self.logger.run_id or "",
        }
        if self.critic is not None:
            modules["critic"] = self.critic
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
        return save_checkpoint(self.run_dir, self.step, modules, state)

    def restore(self, ckpt: Path) -> None:
        """Continue from ``ckpt`` (its weights were loaded into the models by the caller)."""
        state = load_trainer_state(ckpt)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic is not None:
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.stream.load_state_dict(state["stream"])
        self.rollout_gen.set_state(state["rollout_gen"])
        self.update_gen.set_state(state["update_gen"])
        self.samples_seen, self.tokens_seen = (
            int(state["samples_seen"]),
            float(state["tokens_seen"]),
        )
        self.step = int(state["step"])
        set_rng_state(state["rng"])
        if rank() > 0:  # the checkpoint holds rank 0's sampler; the others get a fresh, seeded one
            self.rollout_gen.manual_seed(rank_seed(self.cfg.seed) + self.step)

    # ---- one step --------------------------------------------------------------------------
    def sample_batch(self) -> tuple[RolloutBatch, dict[str, float]]:
        """Draw prompts, sample group_size completions each, score and shape them. With dynamic
        sampling, groups without signal are dropped and more prompts drawn (up to
        ``max_sampling_rounds`` draws) until ``prompts_per_step`` groups are kept.

        Data parallel: each rank samples whole groups for its share of the prompts, drawn from the
        one prompt stream every rank advances alike; group ids are unique over ranks; the stats
        returned are the global batch's."""
        algo = self.algo
        need = algo.prompts_per_step // world_size()  # this rank's groups
        parts, stats, dropped = [], defaultdict(float), 0
        rounds = algo.max_sampling_rounds if algo.dynamic_sampling else 1
        for _ in range(rounds):
            needs = all_gather_objects(need)  # every rank's missing groups, in rank order
            if sum(needs) == 0:
                break
            first, drawn = sum(needs[: rank()]), self.stream.next(sum(needs))
            problems = [
                self.task.train[i]
                for i in drawn[first : first + need]
                for _ in range(algo.group_size)
            ]
            group_ids = (self.next_group_id + first) + torch.arange(need).repeat_interleave(
                algo.group_size
            )
            self.next_group_id += sum(needs)
            if need == 0:
                continue
            part, part_stats = collect(
                self.policy,
                self.tokenizer,
                self.task,
                problems,
                group_ids,
                reward_weights=self.reward_weights,
                rollout_cfg=self.cfg.rollout,
                generator=self.rollout_gen,
                ref_model=self.ref_model,
                critic=self.critic,
                chunk_size=algo.micro_batch_size,
            )
            for k, v in part_stats.items():
                stats[k] += v * (len(part) if k.startswith("train/reward_") else 1)
            stats["train/sampled_completions"] += len(part)
            if algo.overlong.enabled:
                max_len = algo.overlong.max_len or self.cfg.rollout.max_new_tokens
                add_overlong_penalty(part, max_len, algo.overlong.cache_len)
            if algo.dynamic_sampling:
                keep = informative_groups(part)
                dropped += (len(part) - len(keep)) // algo.group_size
                part = part.select(keep)
            need -= len(part) // algo.group_size
            parts.append(part)
        if world_size() > 1:
            timing = {k: v for k, v in stats.items() if k.startswith("time/")}
            counts = {k: v for k, v in stats.items() if k not in timing}
            stats = defaultdict(float, reduce_dict(counts) | reduce_dict(timing, "max"))
            dropped, need = sum(all_gather_objects(dropped)), sum(all_gather_objects(need))
        for k in [k for k in stats if k.startswith("train/reward_")]:
            stats[k] /= stats["train/sampled_completions"]
        stats["train/tokens_per_s"] = stats["train/generated_tokens"] / max(
            stats["time/generation"], 1e-9
        )
        if algo.dynamic_sampling:
            stats["train/dropped_groups"] = dropped
            stats["train/kept_groups"] = algo.prompts_per_step - need
        return concat_batches(parts, self.tokenizer.pad_token_id), dict(stats)

    def train_step(self) -> dict[str, float]:
        algo, t0 = self.algo, time.perf_counter()
        batch, stats = self.sample_batch()
        self.samples_seen += int(stats["train/sampled_completions"])
        self.tokens_seen += stats["train/generated_tokens"]
        if all_reduce_scalar(len(batch)) == 0:  # dynamic sampling found no group with signal
            return stats | {"time/step": time.perf_counter() - t0}
        if batch.ref_logp is not None:
            kl = kl_estimate(batch.old_logp, batch.ref_logp, "k3")
            stats["train/kl_ref"] = float(global_mean_std(kl[batch.completion_mask > 0])[1])
        if algo.kl.placement == "reward" and algo.kl.coef > 0:
            add_kl_penalty(batch, algo.kl.coef, algo.kl.estimator)
        compute_advantages(batch, self.adv_cfg, algo.critic.lam)
        stats |= rollout_stats(batch, self.adv_cfg.get("gamma", 1.0))
        t1 = time.perf_counter()
        stats |= policy_update(
            self.policy, self.optimizer, batch, algo, self.cfg.rollout.temperature, self.update_gen
        )
        if self.critic is not None:
            stats |= critic_update(self.critic, self.critic_optimizer, batch, algo, self.update_gen)
        stats["time/update"] = time.perf_counter() - t1
        stats["time/step"] = time.perf_counter() - t0
        return stats

    def evaluate(self) -> dict[str, float]:
        if not is_main():  # data parallel: rank 0 evaluates (and logs); the others wait
            return {}
        return heldout_eval(self.policy, self.tokenizer, self.task, self.cfg)

    # ---- the loop --------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        cfg = self.cfg
        first_eval = last_eval = {}
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"{self.algo.name}",
            dynamic_ncols=True,
            disable=not is_main(),
        )
        while True:
            row: dict[str, float] = {"train/step": self.step}
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                last_eval = self.evaluate()
                first_eval = first_eval or last_eval
                row |= last_eval
            if self.step == cfg.steps:
                self.logger.log(row)
                break
            row |= self.train_step()
            self.step += 1
            row |= {"train/samples": self.samples_seen, "train/sampled_tokens": self.tokens_seen}
            _check_finite_metrics(row, self.step)
            self.logger.log(row)
            bar.update(1)
            bar.set_postfix(
                reward=f"{row.get('train/reward_mean', float('nan')):.3f}",
                acc=f"{row.get('train/accuracy', float('nan')):.3f}",
            )
            if self.step % cfg.save_every == 0 and self.step < cfg.steps:
                self.save()
        bar.close()
        self.save()
        return last_eval


def _check_finite_metrics(row: dict[str, float], step: int) -> None:
    """Stop a diverged run: a NaN/inf loss or advantage is named, with its step."""
    for key in ("loss/policy", "loss/kl", "adv/mean", "adv/std", "critic/value_loss"):
        value = row.get(key)
        if value is not None and not math.isfinite(value):
            raise FloatingPointError(f"non-finite {key} = {value} at step {step}")
