"""What the offline methods (DPO, RFT; theory.md §5) share: k verified samples per training prompt
from the fixed start model, and the step loop with the same held-out evaluation, logging and final
checkpoint as an RL run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from rlexp.data.tasks.base import Problem, Task
from rlexp.evaluation.heldout import generate_texts, heldout_eval
from rlexp.models.build import init_model
from rlexp.models.load import load_policy
from rlexp.runtime.checkpoint import WithTokenizer, save_checkpoint
from rlexp.runtime.console import eval_line
from rlexp.runtime.errors import check
from rlexp.runtime.guards import check_finite_metrics
from rlexp.runtime.tracking import RunLogger
from rlexp.trainers.kinds import RunContext, print_base_to_final
from rlexp.trainers.sft_base import start_checkpoint

_log = logging.getLogger(__name__)


@dataclass
class SampleGroup:
    """The k completions sampled for one prompt and the verifier's verdict on each."""

    problem: Problem
    completions: list[str]
    correct: list[bool]


def training_prompts(task: Task, n: int, seed: int) -> list[Problem]:
    """``min(n, len(task.train))`` distinct training problems in a seeded random order."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(task.train), generator=g)[: min(n, len(task.train))]
    return [task.train[i] for i in order.tolist()]


def sample_groups(
    model, tokenizer, task: Task, problems: Sequence[Problem], k: int, cfg
) -> list[SampleGroup]:
    """``k`` completions per problem at the run's rollout settings (``cfg.rollout``), sampled with
    a generator seeded by ``cfg.seed`` in batches of ``cfg.eval.batch_size``, then verified."""
    device = next(model.parameters()).device
    repeated = [p for p in problems for _ in range(k)]
    texts, _ = generate_texts(
        model,
        tokenizer,
        [p.prompt for p in repeated],
        max_new_tokens=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        batch_size=cfg.eval.batch_size,
        generator=torch.Generator(device=device).manual_seed(cfg.seed),
    )
    return [
        SampleGroup(
            p,
            texts[i * k : (i + 1) * k],
            [task.is_correct(t, p) for t in texts[i * k : (i + 1) * k]],
        )
        for i, p in enumerate(problems)
    ]


def sampling_stats(groups: Sequence[SampleGroup], prefix: str) -> dict[str, float]:
    """Accuracy of the start model on the sampled training prompts (``<prefix>/sample_accuracy``)."""
    flat = [ok for g in groups for ok in g.correct]
    return {
        f"{prefix}/prompts": float(len(groups)),
        f"{prefix}/sample_accuracy": sum(flat) / max(len(flat), 1),
    }


def warmup_adamw(policy, algo, warmup_steps: int) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW at ``algorithm.lr`` after a linear warm-up over ``warmup_steps`` steps (call the
    scheduler's ``step`` after each update). A fresh Adam's first steps move nearly every weight
    by about lr, whatever its gradient; the warm-up spares the converged start model that jolt."""
    optimizer = torch.optim.AdamW(policy.parameters(), lr=algo.lr, weight_decay=algo.weight_decay)
    return optimizer, LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(warmup_steps, 1)))


def offline_loop(
    cfg,
    policy,
    tokenizer,
    task: Task,
    logger: RunLogger,
    update: Callable[[], dict[str, float]],
    first_row: dict[str, float],
) -> dict[str, float]:
    """``cfg.steps`` calls of ``update`` (one optimizer step each), with the held-out evaluation
    at step 0, every ``cfg.eval_every`` steps and at the end; one metrics row per step, the first
    carrying ``first_row`` (data-building stats). Returns the last evaluation."""
    last_eval: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, desc=cfg.algorithm.name, dynamic_ncols=True)
    for step in range(cfg.steps + 1):
        row: dict[str, float] = {"train/step": step} | (first_row if step == 0 else {})
        if step % cfg.eval_every == 0 or step == cfg.steps:
            samples: list[dict] = []
            last_eval = heldout_eval(policy, tokenizer, task, cfg, samples=samples)
            step_key = {"train/step": step}
            logger.table("eval/samples", samples, step_key, "eval_samples.jsonl", commit=False)
            row |= last_eval
            _log.info(eval_line(step, last_eval))
        if step < cfg.steps:
            t0 = time.perf_counter()
            row |= update()
            row["time/step"] = time.perf_counter() - t0
            check_finite_metrics(row, ("loss/dpo", "loss/sft"), f" at step {step}")
            bar.update(1)
            bar.set_postfix(loss=f"{row.get('loss/dpo', row.get('loss/sft', math.nan)):.3f}")
        logger.log(row)
    bar.close()
    return last_eval


def save_final(run_dir: Path, step: int, policy, tokenizer, logger: RunLogger) -> Path:
    """The trained policy as ``checkpoints/step_NNNNNN/policy`` (save_pretrained + tokenizer),
    the layout of RL checkpoints, so ``rlexp-eval checkpoint=…`` reads both alike."""
    return save_checkpoint(
        run_dir,
        step,
        {"policy": WithTokenizer(policy, tokenizer)},
        {"wandb_id": logger.run_id or ""},
    )


def validate_offline(cfg: DictConfig) -> None:
    """What DPO and RFT share: a learning rate, micro-batches, and no resume."""
    algo = cfg.algorithm
    check(algo.lr > 0, f"algorithm.lr={algo.lr} must be > 0")
    check(algo.micro_batch_size >= 1, "algorithm.micro_batch_size must be >= 1")
    check(
        not cfg.resume,
        f"resume=true: algorithm={algo.name} (an offline method) does not resume; start a new run",
    )


OfflineMethod = Callable[..., dict[str, float]]  # (cfg, task, policy, tokenizer, logger, run_dir)


def offline_entry(method: OfflineMethod) -> Callable[[RunContext], dict[str, float]]:
    """A trainer kind's entry point for an offline ``method``: DPO or RFT from the same start as
    an RL run (the cached SFT base by default)."""

    def run(ctx: RunContext) -> dict[str, float]:
        cfg, device, dtype = ctx.cfg, ctx.device, ctx.dtype
        base = start_checkpoint(cfg, ctx.task, device, dtype, ctx.logger, ctx.run_dir)
        ctx.info["base_checkpoint"] = base
        policy, tokenizer = (
            load_policy(base, device, dtype, cfg.model.get("chat_template", "auto"))
            if base is not None
            else init_model(cfg, device, dtype)
        )
        final = method(cfg, ctx.task, policy, tokenizer, ctx.logger, ctx.run_dir)
        print_base_to_final(ctx.run_dir, final)
        return final

    return run
