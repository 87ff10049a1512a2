"""Supervised fine-tuning on worked solutions: the stage that makes the RL base model.

Each example is ``[BOS] prompt solution [EOS]``; the loss is the mean cross-entropy over the
solution and EOS tokens only. AdamW with linear warm-up and cosine decay to ``min_lr_ratio``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from rlexp.data.prompts import prompt_token_ids, right_pad
from rlexp.data.tasks.base import Problem, Task

_log = logging.getLogger(__name__)

IGNORE = -100
HELDOUT_PROBLEMS = 512  # the held-out loss is measured on the first 512 test problems


def encode_examples(tokenizer, problems: Sequence[Problem]) -> list[tuple[list[int], int]]:
    """Token ids of ``[BOS] prompt solution [EOS]`` and the prompt length (incl. BOS) per problem;
    the prompt is encoded as in rollouts (``prompt_token_ids``: chat template or raw text)."""
    prompts = prompt_token_ids(tokenizer, [p.prompt for p in problems])
    targets = tokenizer([p.solution for p in problems], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id]
    return [(p + t + eos, len(p)) for p, t in zip(prompts, targets, strict=True)]


def collate(
    examples: Sequence[tuple[list[int], int]], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (IGNORE outside targets), on
    the CPU."""
    ids, mask = right_pad([row for row, _ in examples], pad_id, torch.device("cpu"))
    labels = torch.full_like(ids, IGNORE)
    for i, (row, n_prompt) in enumerate(examples):
        labels[i, n_prompt : len(row)] = ids[i, n_prompt : len(row)]
    return ids, mask, labels


def sft_loss(model, ids: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over target (non-IGNORE) positions."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )


def sft_update(
    model,
    optimizer: torch.optim.Optimizer,
    examples: Sequence[tuple[list[int], int]],
    pad_id: int,
    device: torch.device,
    max_grad_norm: float = 1.0,
) -> dict[str, float]:
    """One optimizer step of ``sft_loss`` on encoded ``examples`` (from ``encode_examples``), with
    the gradient norm clipped; returns ``loss/sft`` and ``train/grad_norm``."""
    model.train()
    ids, mask, labels = (t.to(device) for t in collate(examples, pad_id))
    loss = sft_loss(model, ids, mask, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return {"loss/sft": float(loss.detach()), "train/grad_norm": float(grad_norm)}


@torch.no_grad()
def heldout_loss(
    model, examples, pad_id: int, device: torch.device, batch_size: int = 256
) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        ids, mask, labels = (t.to(device) for t in collate(examples[i : i + batch_size], pad_id))
        n = int((labels[:, 1:] != IGNORE).sum())
        total += float(sft_loss(model, ids, mask, labels)) * n
        count += n
    return total / max(count, 1)


def heldout_problems(task: Task) -> list[Problem]:
    """The first ``HELDOUT_PROBLEMS`` test problems whose clean solution the demonstrations can
    produce (finite ``demonstration_nll``): a problem outside their support (a blind spot of the
    hard arithmetic tier) has no finite imitation loss, so it is left out of the held-out loss."""
    return [p for p in task.test[:HELDOUT_PROBLEMS] if math.isfinite(task.demonstration_nll(p))]


def heldout_loss_floor(task: Task, tokenizer, problems: Sequence[Problem]) -> float:
    """The held-out loss of a model that imitates the task's demonstrations exactly:
    ``Σ demonstration_nll / Σ target tokens`` (0 for noiseless data); SFT converges to it."""
    examples = encode_examples(tokenizer, problems)
    tokens = sum(len(ids) - n_prompt for ids, n_prompt in examples)
    return sum(task.demonstration_nll(p) for p in problems) / max(tokens, 1)


def lr_at(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to ``min_ratio``, as a multiplier of the peak lr."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_sft(
    model,
    tokenizer,
    train: Sequence[Problem],
    heldout: Sequence[Problem],
    cfg,
    device: torch.device,
    log: Callable[[dict], None],
    evaluate: Callable[[], dict] | None = None,
    loss_floor: float | None = None,
) -> dict[str, float]:
    """Run ``cfg.steps`` SFT updates (``cfg`` is the ``sft:`` section); log held-out loss every
    ``cfg.eval_every`` steps (plus ``evaluate()``'s metrics and ``loss_floor``, the irreducible
    held-out loss, when known); return the final metrics."""
    examples = encode_examples(tokenizer, train)
    heldout_examples = encode_examples(tokenizer, heldout[:HELDOUT_PROBLEMS])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    )
    g = torch.Generator().manual_seed(cfg.seed)
    pad = tokenizer.pad_token_id
    final: dict[str, float] = {}
    bar = tqdm(range(cfg.steps + 1), desc="sft", dynamic_ncols=True)
    start = time.perf_counter()
    for step in bar:
        if step % cfg.eval_every == 0 or step == cfg.steps:
            final = {
                "sft/step": step,
                "sft/heldout_loss": heldout_loss(model, heldout_examples, pad, device),
            }
            if loss_floor is not None:
                final["sft/heldout_loss_floor"] = loss_floor
            if evaluate is not None:
                final.update(evaluate())
            final["sft/elapsed_s"] = time.perf_counter() - start
            log(final)
            _log.info(
                "sft step %d: held-out loss %.4f%s",
                step,
                final["sft/heldout_loss"],
                "".join(f", {k} {v:.3f}" for k, v in final.items() if k.endswith("accuracy")),
            )
            bar.set_postfix(loss=f"{final['sft/heldout_loss']:.3f}")
        if step == cfg.steps:
            break
        idx = torch.randint(len(examples), (cfg.batch_size,), generator=g).tolist()
        sft_update(model, optimizer, [examples[i] for i in idx], pad, device)
        sched.step()
    model.eval()
    return final
