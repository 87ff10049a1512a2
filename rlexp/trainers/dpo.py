"""DPO (theory.md §5): preference pairs from a file or from the start model's verified samples,
reference log-probs computed once, then ``steps`` optimizer steps of ``rlexp.algos.losses.dpo_loss``.

The reference π_ref is the start model (the SFT base): its sequence log-probs are computed with
the policy's own weights before the first update, so no second model is held in memory.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

from rlexp.algos.preference import DPO_KINDS, dpo_loss
from rlexp.data.pairs import (
    EncodedPair,
    Pair,
    PairsFileError,
    encode_pair,
    load_pairs,
    pairs_from_samples,
    write_pairs,
)
from rlexp.data.prompts import PromptStream, left_pad, right_pad
from rlexp.data.tasks.base import Task
from rlexp.models.logprobs import completion_logprobs
from rlexp.runtime.errors import ConfigError, check
from rlexp.runtime.tracking import RunLogger
from rlexp.trainers.kinds import TRAINERS, TrainerKind
from rlexp.trainers.offline import (
    offline_entry,
    offline_loop,
    sample_groups,
    sampling_stats,
    save_final,
    training_prompts,
    validate_offline,
    warmup_adamw,
)

_log = logging.getLogger(__name__)


def sampled_pairs(policy, tokenizer, task: Task, cfg) -> tuple[list[Pair], dict[str, float]]:
    """Pairs built from ``dpo.k`` samples of each of ``dpo.n_prompts`` training prompts; prompts
    whose samples are all right or all wrong give none and are counted as skipped."""
    d = cfg.algorithm.dpo
    groups = sample_groups(
        policy, tokenizer, task, training_prompts(task, d.n_prompts, cfg.seed), d.k, cfg
    )
    pairs, skipped = [], 0
    for g in groups:
        found = pairs_from_samples(g.problem.prompt, g.completions, g.correct, d.pairs_per_prompt)
        skipped += not found
        pairs += found
    return pairs, sampling_stats(groups, "dpo") | {"dpo/prompts_skipped": float(skipped)}


def collate_pairs(
    pairs: Sequence[EncodedPair], pad_id: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One model input for B pairs: 2B rows, the chosen completions first, then the rejected ones.
    Prompts ``[2B, P]`` left-padded, completions ``[2B, T]`` right-padded (rlexp.models.logprobs layout)."""
    prompts = [p.prompt for p in pairs] * 2
    completions = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    return (*left_pad(prompts, pad_id, device), *right_pad(completions, pad_id, device))


def sequence_logps(model, pairs: Sequence[EncodedPair], pad_id: int) -> Tensor:
    """Log-probs of the chosen and rejected completions, summed over their tokens: ``[B, 2]``."""
    device = next(model.parameters()).device
    logp = completion_logprobs(model, *collate_pairs(pairs, pad_id, device)).sum(-1)
    return torch.stack(logp.chunk(2), dim=1)


@torch.no_grad()
def reference_logps(model, pairs: Sequence[EncodedPair], pad_id: int, chunk: int) -> Tensor:
    """``sequence_logps`` of every pair ``[N, 2]`` under the frozen start model, chunk by chunk."""
    model.eval()
    return torch.cat(
        [sequence_logps(model, pairs[i : i + chunk], pad_id) for i in range(0, len(pairs), chunk)]
    )


class DPOUpdate:
    """One optimizer step per call on the next ``dpo.batch_size`` pairs (seeded epochs over the
    pairs), micro-batched by ``algorithm.micro_batch_size`` with exact gradient accumulation."""

    def __init__(self, cfg, policy, pairs: list[EncodedPair], ref: Tensor, pad_id: int) -> None:
        self.algo, self.policy, self.pad_id = cfg.algorithm, policy, pad_id
        self.pairs, self.ref = pairs, ref  # ref: [N, 2] start-model log-probs
        self.stream = PromptStream(len(pairs), seed=cfg.seed)
        self.optimizer, self.scheduler = warmup_adamw(policy, self.algo, self.algo.dpo.warmup_steps)

    def __call__(self) -> dict[str, float]:
        algo, d = self.algo, self.algo.dpo
        idx = self.stream.next(d.batch_size)
        sums: dict[str, float] = defaultdict(float)
        self.policy.train()
        self.optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(idx), algo.micro_batch_size):
            micro = idx[start : start + algo.micro_batch_size]
            logp = sequence_logps(self.policy, [self.pairs[i] for i in micro], self.pad_id)
            ref = self.ref[micro].to(logp.device)
            loss, stats = dpo_loss(logp[:, 0], logp[:, 1], ref[:, 0], ref[:, 1], d.beta, d.kind)
            weight = len(micro) / len(idx)  # micro-batch means add up to the batch mean
            (loss * weight).backward()
            sums["loss/dpo"] += float(loss.detach()) * weight
            for k, v in stats.items():
                sums[f"dpo/{k}"] += float(v) * weight
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), algo.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        return dict(sums) | {"train/grad_norm": float(grad_norm), "train/lr": lr}


def run_dpo(
    cfg, task: Task, policy, tokenizer, logger: RunLogger, run_dir: Path
) -> dict[str, float]:
    """Pairs (``dpo.pairs_file``, or sampled and saved as ``<run_dir>/pairs.jsonl``), reference
    log-probs, then the offline loop; saves the final policy and returns the last evaluation."""
    d, t0 = cfg.algorithm.dpo, time.perf_counter()
    if d.pairs_file:
        pairs = load_pairs(d.pairs_file)
        stats: dict[str, float] = {}
    else:
        pairs, stats = sampled_pairs(policy, tokenizer, task, cfg)
        write_pairs(pairs, run_dir / "pairs.jsonl")
    if not pairs:
        raise RuntimeError(
            f"no preference pair: every one of the {d.n_prompts} sampled prompts had all "
            "samples right or all wrong; raise algorithm.dpo.k or algorithm.dpo.n_prompts"
        )
    encoded = [encode_pair(tokenizer, p) for p in pairs]
    ref = reference_logps(policy, encoded, tokenizer.pad_token_id, cfg.algorithm.micro_batch_size)
    stats |= {"dpo/pairs": float(len(pairs)), "time/build_data": time.perf_counter() - t0}
    _log.info("dpo: %d pairs from %s", len(pairs), _source(d, stats))
    update = DPOUpdate(cfg, policy, encoded, ref, tokenizer.pad_token_id)
    final = offline_loop(cfg, policy, tokenizer, task, logger, update, stats)
    save_final(run_dir, cfg.steps, policy, tokenizer, logger)
    return final | stats


def _source(d, stats: dict[str, float]) -> str:
    if d.pairs_file:
        return str(d.pairs_file)
    return (
        f"k={d.k} samples of each of {int(stats['dpo/prompts'])} prompts "
        f"({int(stats['dpo/prompts_skipped'])} prompts skipped: all right or all wrong)"
    )


def validate_dpo(cfg: DictConfig) -> None:
    d = cfg.algorithm.dpo
    validate_offline(cfg)
    check(d.beta > 0, f"algorithm.dpo.beta={d.beta} must be > 0")
    check(d.kind in DPO_KINDS, f"algorithm.dpo.kind={d.kind} is unknown; use {DPO_KINDS.names()}")
    check(d.batch_size >= 1, f"algorithm.dpo.batch_size={d.batch_size} must be >= 1")
    if d.pairs_file:  # read now, so a bad line stops the run before any compute
        try:
            load_pairs(d.pairs_file)
        except PairsFileError as err:
            raise ConfigError(f"algorithm.dpo.pairs_file: {err}") from None
        return
    check(
        d.k >= 2,
        f"algorithm.dpo.k={d.k}: building pairs needs >= 2 samples per prompt (a right and a "
        "wrong one), or a pairs file (algorithm.dpo.pairs_file)",
    )
    check(d.n_prompts >= 1, f"algorithm.dpo.n_prompts={d.n_prompts} must be >= 1")
    check(d.pairs_per_prompt >= 1, "algorithm.dpo.pairs_per_prompt must be >= 1")


TRAINERS.register("dpo")(TrainerKind(validate=validate_dpo, run=offline_entry(run_dpo)))
