"""Rejection-sampling fine-tuning (RFT, theory.md §5): sample ``rft.k`` completions per training
prompt from the fixed start model, keep the verifier-correct ones (deduplicated per prompt), and
fine-tune on them with the SFT loss of ``rlexp.trainers.sft`` (its encoding, collation and update step).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig

from rlexp.data.prompts import PromptStream
from rlexp.data.tasks.base import Problem, Task
from rlexp.runtime.errors import check
from rlexp.runtime.tracking import RunLogger
from rlexp.trainers.kinds import TRAINERS, TrainerKind
from rlexp.trainers.offline import (
    SampleGroup,
    offline_entry,
    offline_loop,
    sample_groups,
    sampling_stats,
    save_final,
    training_prompts,
    validate_offline,
    warmup_adamw,
)
from rlexp.trainers.sft import encode_examples, sft_update

_log = logging.getLogger(__name__)


def keep_correct(groups: Sequence[SampleGroup]) -> tuple[list[Problem], dict[str, float]]:
    """Each group's distinct correct completions as SFT examples (the completion as solution),
    and how many were kept: per prompt on average, and the fraction of prompts with at least one."""
    kept: list[Problem] = []
    with_any = 0
    for g in groups:
        unique = dict.fromkeys(c for c, ok in zip(g.completions, g.correct, strict=True) if ok)
        kept += [replace(g.problem, solution=c) for c in unique]
        with_any += bool(unique)
    n = max(len(groups), 1)
    return kept, {
        "rft/kept": float(len(kept)),
        "rft/kept_per_prompt": len(kept) / n,
        "rft/prompts_with_kept_frac": with_any / n,
    }


class RFTUpdate:
    """One ``sft_update`` per call on the next ``rft.batch_size`` examples (seeded epochs)."""

    def __init__(self, cfg, policy, tokenizer, examples: Sequence[Problem]) -> None:
        self.policy, self.algo = policy, cfg.algorithm
        self.encoded = encode_examples(tokenizer, examples)
        self.pad_id = tokenizer.pad_token_id
        self.stream = PromptStream(len(self.encoded), seed=cfg.seed)
        self.optimizer, self.scheduler = warmup_adamw(policy, self.algo, self.algo.rft.warmup_steps)

    def __call__(self) -> dict[str, float]:
        batch = [self.encoded[i] for i in self.stream.next(self.algo.rft.batch_size)]
        device = next(self.policy.parameters()).device
        lr = self.scheduler.get_last_lr()[0]
        out = sft_update(
            self.policy, self.optimizer, batch, self.pad_id, device, self.algo.max_grad_norm
        )
        self.scheduler.step()
        return out | {"train/lr": lr}


def run_rft(
    cfg, task: Task, policy, tokenizer, logger: RunLogger, run_dir: Path
) -> dict[str, float]:
    """Sample and filter once, then the offline loop of SFT steps; saves the final policy and
    returns the last evaluation."""
    r, t0 = cfg.algorithm.rft, time.perf_counter()
    groups = sample_groups(
        policy, tokenizer, task, training_prompts(task, r.n_prompts, cfg.seed), r.k, cfg
    )
    examples, stats = keep_correct(groups)
    stats |= sampling_stats(groups, "rft") | {"time/build_data": time.perf_counter() - t0}
    _log.info(
        f"rft: kept {len(examples)} correct completions from {len(groups)} prompts × k={r.k} "
        f"({stats['rft/kept_per_prompt']:.2f} per prompt, "
        f"{stats['rft/prompts_with_kept_frac']:.0%} of prompts with at least one)"
    )
    if not examples:
        raise RuntimeError(
            f"rft: none of the {len(groups) * r.k} samples was correct; nothing to fine-tune on "
            "(raise algorithm.rft.k or algorithm.rft.n_prompts, or start from a stronger model)"
        )
    final = offline_loop(
        cfg, policy, tokenizer, task, logger, RFTUpdate(cfg, policy, tokenizer, examples), stats
    )
    save_final(run_dir, cfg.steps, policy, tokenizer, logger)
    return final | stats


def validate_rft(cfg: DictConfig) -> None:
    r = cfg.algorithm.rft
    validate_offline(cfg)
    check(r.k >= 1, f"algorithm.rft.k={r.k} must be >= 1")
    check(r.n_prompts >= 1, f"algorithm.rft.n_prompts={r.n_prompts} must be >= 1")
    check(r.batch_size >= 1, f"algorithm.rft.batch_size={r.batch_size} must be >= 1")


TRAINERS.register("rft")(TrainerKind(validate=validate_rft, run=offline_entry(run_rft)))
