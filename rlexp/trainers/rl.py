"""The online RL loop: rollout → reward → advantage → epochs × minibatches → log / eval / save.

It never names an algorithm: the config picks the advantage estimator, policy loss, KL placement
and critic, and the registries supply the functions.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn
from tqdm.auto import tqdm

from rlexp.algos.kl import kl_estimate
from rlexp.algos.masks import real_mask
from rlexp.data.prompts import PromptStream
from rlexp.data.tasks.base import Task
from rlexp.evaluation.heldout import heldout_eval
from rlexp.models.lora import trainable_parameters
from rlexp.rollout.batch import RolloutBatch, concat_batches
from rlexp.rollout.collect import (
    add_kl_penalty,
    apply_rollout_is,
    collect,
    compute_advantages,
    generate,
    rollout_stats,
    trainer_logp_needed,
)
from rlexp.rollout.engine import GenerationChunk, build_engine
from rlexp.rollout.filters import (
    add_overlong_penalty,
    informative_groups,
    solved_prompts,
    without_zero_variance_groups,
)
from rlexp.rollout.lag import LaggedPolicy
from rlexp.rollout.prefetch import Prefetcher
from rlexp.runtime.checkpoint import (
    WithTokenizer,
    atomic_dir,
    checkpoint_dir,
    latest_checkpoint,
    load_trainer_state,
    save_checkpoint,
    set_rng_state,
)
from rlexp.runtime.console import eval_line
from rlexp.runtime.distributed import (
    all_gather_objects,
    all_reduce_scalar,
    broadcast_object,
    global_mean_std,
    is_main,
    rank,
    rank_seed,
    reduce_dict,
    world_size,
)
from rlexp.runtime.guards import check_finite, check_finite_metrics, check_parameter_norm
from rlexp.runtime.sharding import (
    FullWeights,
    is_sharded,
    load_sharded_optimizer,
    parameter_norm,
    save_sharded_optimizer,
)
from rlexp.runtime.tracking import RunLogger, truncate_jsonl
from rlexp.trainers.update import critic_update, policy_update

# the loss and advantage statistics of a step's row that must be finite
GUARDED_METRICS = ("loss/policy", "loss/kl", "adv/mean", "adv/std", "critic/value_loss")

_log = logging.getLogger(__name__)


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
        sampler_model=None,
    ) -> None:
        self.cfg, self.algo = cfg, cfg.algorithm
        self.run_dir, self.logger = run_dir, logger
        self.policy, self.tokenizer, self.task = policy, tokenizer, task
        self.ref_model, self.critic = ref_model, critic
        self.device = next(policy.parameters()).device
        self.reward_weights = dict(cfg.reward.components)
        params = cfg.reward.get("params")  # absent from configs saved before it existed
        self.reward_params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.adv_cfg = OmegaConf.to_container(cfg.advantage, resolve=True)
        self.optimizer = torch.optim.AdamW(
            trainable_parameters(policy), lr=self.algo.lr, weight_decay=self.algo.weight_decay
        )
        self.critic_optimizer = (
            torch.optim.AdamW(trainable_parameters(critic), lr=self.algo.critic.lr)
            if critic is not None
            else None
        )
        self.stream = PromptStream(len(task.train), seed=cfg.seed)
        self.rollout_gen = torch.Generator(device=self.device).manual_seed(rank_seed(cfg.seed))
        self.update_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.start_norms: dict[str, float] = {}  # the parameter norms before the first update
        self.next_group_id = 0
        self.samples_seen = 0
        self.tokens_seen = 0.0
        self.gen_chunk = GenerationChunk()  # rows per sampling call; halved on OOM
        self.recompute_old_logp = trainer_logp_needed(
            self.algo.old_logp,
            next(policy.parameters()).dtype,
            cfg.rollout.top_p,
            self.algo.rollout_is,
            cfg.rollout.engine,
        )
        # rollout.engine: the native sampler on the policy, or vLLM holding a copy of its weights
        self.engine = build_engine(
            cfg.rollout.engine,
            policy,
            self.gen_chunk,
            cfg.rollout,
            rank_seed(cfg.seed),
            sampler_model,  # fsdp + native: an unsharded copy to sample from
        )
        # rollout.lag = k: the sampler holds the policy of step t - k (docs/theory.md §11); the
        # ratio's denominator is that behaviour policy, or with rollout_is the current policy
        # (decoupled PPO) and the truncated IS weight corrects the staleness
        lag = cfg.rollout.get("lag", 0)
        self.lagged = LaggedPolicy(policy, lag) if lag > 0 else None
        self.old_logp_model = (
            self.lagged.model if self.lagged and self.algo.rollout_is == "none" else policy
        )
        # rollout.mode = async: step t + 1 is sampled (by the engine, with the weights of step t)
        # while step t updates; the data of rollout.lag = 1 (rlexp.rollout.prefetch)
        self.prefetcher = Prefetcher() if cfg.rollout.get("mode", "sync") == "async" else None
        if self.lagged is not None:
            self.engine.load_weights(self._sampler_weights())

    def _sampler_weights(self) -> nn.Module:
        """What the engine samples the next rollouts with: the policy itself (on-policy, and the
        async mode, whose sampler runs during the update), else the lagged behaviour policy."""
        if self.lagged is None or self.prefetcher is not None:
            return self.policy
        return self.lagged.model

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
        self.engine.close()

    # ---- state -----------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Everything the loop carries from step to step, so a resumed run is the same run:
        weights (safetensors), optimizers, the data cursor, every RNG, counters, the W&B id.
        Data parallel: the ranks hold the same weights; rank 0 writes, with every rank's
        sampler state (they draw different samples)."""
        # collectives, on every rank: the samplers' states; a sharded model's full weights
        # (gathered to rank 0 for its HF folder) and optimizer state (each rank its shard, DCP)
        rollout_gens = all_gather_objects(self.rollout_gen.get_state())
        optimizers = {"optimizer": (self.policy, self.optimizer)}
        if self.critic is not None:
            optimizers["critic_optimizer"] = (self.critic, self.critic_optimizer)
        into = None
        if is_sharded(self.policy):
            final = checkpoint_dir(self.run_dir, self.step)
            into = Path(broadcast_object(str(atomic_dir(final)) if is_main() else None))
            for name, (model, optimizer) in optimizers.items():
                save_sharded_optimizer(model, optimizer, into / name)
        policy = FullWeights(self.policy) if is_sharded(self.policy) else self.policy
        critic = self.critic
        if is_sharded(critic):
            critic = FullWeights(critic)
        if not is_main():
            return None
        modules = {"policy": WithTokenizer(policy, self.tokenizer)}
        state = {
            "stream": self.stream.state_dict(),
            "rollout_gen": self.rollout_gen.get_state(),
            "rollout_gen_ranks": rollout_gens,
            "update_gen": self.update_gen.get_state(),
            "samples_seen": self.samples_seen,
            "tokens_seen": self.tokens_seen,
            "next_group_id": self.next_group_id,
            "gen_chunk": self.gen_chunk.size or 0,
            "gen_oom_retries": self.gen_chunk.retries,
            "wandb_id": self.logger.run_id or "",
        }
        if self.critic is not None:
            modules["critic"] = critic
        if self.lagged is not None:  # rollout.lag: the weights of the k steps before this one
            modules["lag"] = self.lagged
        if self.prefetcher is not None:  # rollout.mode=async: the next step's samples
            state["prefetched"] = self.prefetcher.state_dict()
        if into is None:  # unsharded: rank 0's optimizers are whole, in trainer_state.pt
            state |= {name: opt.state_dict() for name, (_, opt) in optimizers.items()}
        return save_checkpoint(self.run_dir, self.step, modules, state, into=into)

    def restore(self, ckpt: Path) -> None:
        """Continue from ``ckpt`` (its weights were loaded into the models by the caller); the
        metrics.jsonl rows a killed run logged after the checkpoint are dropped, so every step
        keeps one row."""
        state = load_trainer_state(ckpt)
        optimizers = {"optimizer": (self.policy, self.optimizer)}
        if self.critic is not None:
            optimizers["critic_optimizer"] = (self.critic, self.critic_optimizer)
        for name, (model, optimizer) in optimizers.items():
            if (ckpt / name).is_dir():  # saved sharded (DCP): read as this world holds it
                load_sharded_optimizer(model, optimizer, ckpt / name)
            else:
                optimizer.load_state_dict(state[name])
        self.stream.load_state_dict(state["stream"])
        self.rollout_gen.set_state(state["rollout_gen"])
        self.update_gen.set_state(state["update_gen"])
        self.samples_seen, self.tokens_seen = (
            int(state["samples_seen"]),
            float(state["tokens_seen"]),
        )
        self.next_group_id = int(state.get("next_group_id", 0))
        self.gen_chunk.size = int(state.get("gen_chunk", 0)) or None  # the engine's object
        self.gen_chunk.retries = int(state.get("gen_oom_retries", 0))
        self.step = int(state["step"])
        set_rng_state(state["rng"])
        per_rank = state.get("rollout_gen_ranks", [])
        if len(per_rank) == world_size():
            self.rollout_gen.set_state(per_rank[rank()])
        elif rank() > 0:  # saved with another world size: a fresh, seeded sampler
            self.rollout_gen.manual_seed(rank_seed(self.cfg.seed) + self.step)
        if self.lagged is not None:
            self.lagged.restore(ckpt / "lag", self.policy)
            self.engine.load_weights(self._sampler_weights())
        if self.prefetcher is not None:
            self.prefetcher.load_state_dict(state.get("prefetched", {}), self.device)
        if is_main():
            for log_file in ("metrics.jsonl", "eval_samples.jsonl"):
                truncate_jsonl(self.run_dir / log_file, "train/step", self.step)

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
        parts, stats, dropped, solved = [], defaultdict(float), 0, []
        drop_above = self.cfg.get("data", {}).get("drop_solved_above")
        rounds = algo.max_sampling_rounds if algo.dynamic_sampling else 1
        for _ in range(rounds):
            needs = all_gather_objects(need)  # every rank's missing groups, in rank order
            if sum(needs) == 0:
                break
            ready = self.prefetcher.take() if self.prefetcher is not None else None
            if ready is not None:  # rollout.mode=async: drawn and sampled during the last update
                first, drawn, group_ids = 0, ready.drawn, ready.group_ids
                generated = ready.generated
            else:
                first, drawn, group_ids = self._draw(needs)
                generated = None
            problems = self._grouped(drawn[first : first + need])
            if need == 0:
                continue
            part, part_stats = collect(
                self.policy,
                self.tokenizer,
                self.task,
                problems,
                group_ids,
                reward_weights=self.reward_weights,
                reward_params=self.reward_params,
                rollout_cfg=self.cfg.rollout,
                generator=self.rollout_gen,
                ref_model=self.ref_model,
                critic=self.critic,
                chunk_size=algo.micro_batch_size,
                gen_chunk=self.gen_chunk,
                recompute_old_logp=self.recompute_old_logp,
                engine=self.engine,
                old_logp_model=self.old_logp_model,
                generated=generated,
            )
            if drop_above is not None:  # before any filter: every group drawn counts
                mine = drawn[first : first + need]
                solved += solved_prompts(part.correct, mine, algo.group_size, drop_above)
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
        if drop_above is not None:  # every rank drops the same prompts from its stream
            solved = sorted({p for part in all_gather_objects(solved) for p in part})
            self.stream.drop(solved)
            stats["data/solved_dropped"] = float(len(solved))
            stats["data/dropped_prompts"] = float(len(self.stream.dropped))
        return concat_batches(parts, self.tokenizer.pad_token_id), dict(stats)

    def _draw(self, needs: list[int]) -> tuple[int, list[int], torch.Tensor]:
        """The prompts of one sampling round from the stream every rank advances alike: (this
        rank's offset into ``drawn``, drawn, this rank's group ids)."""
        first, drawn = sum(needs[: rank()]), self.stream.next(sum(needs))
        need = needs[rank()]
        group_ids = (self.next_group_id + first) + torch.arange(need).repeat_interleave(
            self.algo.group_size
        )
        self.next_group_id += sum(needs)
        return first, drawn, group_ids

    def _grouped(self, drawn: list[int]) -> list:
        return [self.task.train[i] for i in drawn for _ in range(self.algo.group_size)]

    def _prefetch_next(self) -> None:
        """rollout.mode=async: draw the next step's prompts and start sampling them with the
        engine's weights (this step's policy) on the worker thread; none after the last step."""
        if self.step + 1 >= self.cfg.steps:
            return
        _, drawn, group_ids = self._draw([self.algo.prompts_per_step])
        problems, cfg = self._grouped(drawn), self.cfg.rollout
        job = partial(
            generate, self.engine, self.tokenizer, problems, cfg, self.rollout_gen, self.device
        )
        self.prefetcher.start(drawn, group_ids, job)

    def train_step(self) -> dict[str, float]:
        algo, t0 = self.algo, time.perf_counter()
        lag = {"rollout/lag": float(self.lagged.behind)} if self.lagged is not None else {}
        unprefetched = self.prefetcher is not None and not self.prefetcher.ready
        if unprefetched and self.lagged.behind > 0:  # resumed from a run's last checkpoint:
            self.engine.load_weights(self.lagged.model)  # sample as the async run would have
        batch, stats = self.sample_batch()
        stats |= lag
        if unprefetched and self.lagged.behind > 0:
            self.engine.load_weights(self.policy)  # the next step's sampler: this step's policy
        if self.prefetcher is not None:  # the next rollouts are sampled during this update
            self._prefetch_next()
        else:
            self.engine.release()  # vLLM on a GPU sleeps through the update
        self.samples_seen += int(stats["train/sampled_completions"])
        self.tokens_seen += stats["train/generated_tokens"]
        if all_reduce_scalar(len(batch)) == 0:  # dynamic sampling found no group with signal
            self._sync_sampler()  # the same weights (a deep sleep dropped them)
            return stats | {"time/step": time.perf_counter() - t0}
        real = real_mask(batch.completion_mask)
        if batch.ref_logp is not None:
            kl = kl_estimate(batch.old_logp, batch.ref_logp, "k3")
            stats["train/kl_ref"] = float(global_mean_std(kl[real])[1])
        if algo.kl.placement == "reward" and algo.kl.coef > 0:
            add_kl_penalty(batch, algo.kl.coef, algo.kl.estimator)
        check_finite(batch.scores, "reward")
        compute_advantages(batch, self.adv_cfg, algo.critic.lam)
        check_finite(batch.advantages[real], "advantages")
        if batch.returns is not None:
            check_finite(batch.returns[real], "returns")
        stats |= rollout_stats(batch, self.adv_cfg.get("gamma", 1.0))
        if algo.rollout_is != "none":  # the sampler/trainer mismatch, truncated IS
            stats |= apply_rollout_is(batch, algo.rollout_is, algo.rollout_is_cap)
        t1 = time.perf_counter()
        if not self.start_norms:
            self.start_norms = self._parameter_norms()
        # critic warm-up (verl's critic_warmup): the first steps fit only the critic, on rollouts
        # of the unchanged start policy, so the policy's first update meets a fitted V
        if self.step >= algo.critic.warmup_steps:
            policy_batch = batch
            if algo.zero_variance_filter:
                policy_batch, frac = without_zero_variance_groups(batch)
                stats["train/zero_variance_frac"] = frac
            stats |= policy_update(
                self.policy,
                self.optimizer,
                policy_batch,
                algo,
                self.cfg.rollout.temperature,
                self.update_gen,
            )
        if self.critic is not None:
            stats |= critic_update(self.critic, self.critic_optimizer, batch, algo, self.update_gen)
        stats |= self._check_parameter_norms()
        stats["time/update"] = time.perf_counter() - t1
        if self.prefetcher is not None:  # the engine must be idle before its weights change
            stats["time/generation_wait"] = self.prefetcher.wait()
        t2 = time.perf_counter()
        self._sync_sampler()  # vLLM: the new weights, in memory
        stats["time/weight_sync"] = time.perf_counter() - t2
        stats["time/step"] = time.perf_counter() - t0
        return stats

    def _sync_sampler(self) -> None:
        """The sampler's weights for the next step: the policy's, or with ``rollout.lag`` those
        of k updates before (``LaggedPolicy.advance``)."""
        if self.lagged is not None:
            self.lagged.advance(self.policy)
        self.engine.load_weights(self._sampler_weights())

    def _parameter_norms(self) -> dict[str, float]:
        """``train/param_norm`` of the policy (and ``critic/param_norm``): ‖θ‖₂ of all weights."""
        models = {"train/param_norm": self.policy, "critic/param_norm": self.critic}
        return {key: parameter_norm(m) for key, m in models.items() if m is not None}

    def _check_parameter_norms(self) -> dict[str, float]:
        """The norms after the update, each checked against its value before this process's
        first update (``check_parameter_norm``): weights that exploded but are finite stop the
        run here, before a checkpoint saves them."""
        norms = self._parameter_norms()
        for key, norm in norms.items():
            name = "policy" if key.startswith("train/") else "critic"
            check_parameter_norm(norm, self.start_norms[key], name)
        return norms

    def _diverged(self, err: FloatingPointError) -> FloatingPointError:
        """The error that stops a run at a NaN/inf: the tensor, the step, the checkpoint to go
        back to. Nothing of the failed step is logged or saved."""
        last = latest_checkpoint(self.run_dir)
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        return FloatingPointError(f"{err} at train/step {self.step}; the run stopped, {where}")

    def evaluate(self) -> dict[str, float]:
        if not is_main():  # data parallel: rank 0 evaluates (and logs); the others wait
            return {}
        # with the run's engine: never the sharded policy, whose forward is a collective; with
        # rollout.lag the engine holds the stale behaviour policy, so it gets the policy's own
        # weights for the evaluation and the behaviour policy's back after it
        stale = self._sampler_weights() is not self.policy
        if stale:
            self.engine.load_weights(self.policy)
        samples: list[dict] = []
        try:
            out = heldout_eval(
                self.policy,
                self.tokenizer,
                self.task,
                self.cfg,
                engine=self.engine,
                samples=samples,
            )
        finally:
            if stale:
                self.engine.load_weights(self._sampler_weights())
        step = {"train/step": self.step}
        self.logger.table("eval/samples", samples, step, "eval_samples.jsonl", commit=False)
        return out

    # ---- the loop --------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        cfg = self.cfg
        last_eval: dict[str, float] = {}
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"{self.algo.name}",
            dynamic_ncols=True,
            disable=not is_main(),
        )
        try:  # a stop (an error, a signal) closes the bar first: its message gets a line
            while True:
                row: dict[str, float] = {"train/step": self.step}
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    last_eval = self.evaluate()
                    row |= last_eval
                    if is_main():
                        _log.info(eval_line(self.step, last_eval))
                if self.step == cfg.steps:
                    self.logger.log(row)
                    break
                try:
                    row |= self.train_step()
                    row |= {
                        "train/samples": self.samples_seen,
                        "train/sampled_tokens": self.tokens_seen,
                    }
                    check_finite_metrics(row, GUARDED_METRICS)  # a diverged run stops here
                except FloatingPointError as err:
                    raise self._diverged(err) from err
                self.step += 1
                self.logger.log(row)
                bar.update(1)
                bar.set_postfix(
                    reward=f"{row.get('train/reward_mean', float('nan')):.3f}",
                    acc=f"{row.get('train/accuracy', float('nan')):.3f}",
                )
                if self.step % cfg.save_every == 0 and self.step < cfg.steps:
                    self.save()
        finally:
            bar.close()
        self.save()
        return last_eval
