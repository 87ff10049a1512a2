"""Held-out evaluation during training: accuracy by the task's verifier, never by the reward.

Greedy accuracy, and n samples per problem at the evaluation temperature: sampled accuracy
(= pass@1 estimated from n), pass@n, answer-format rate and mean length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

import torch

from rlexp.data.prompts import decode_completions, encode_prompts
from rlexp.data.tasks.base import Problem, Task
from rlexp.rollout.engine import RolloutEngine
from rlexp.rollout.sampler import sample


@torch.no_grad()
def generate_scored(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    batch_size: int = 512,
    generator: torch.Generator | None = None,
    engine: RolloutEngine | None = None,
) -> tuple[list[str], list[int], list[float]]:
    """Completions (text), their lengths in tokens and the summed log-probs of their sampled
    tokens under the sampling distribution, batch by batch; sampled by ``engine`` (a run's
    ``rollout.engine``) when given, else by the native sampler on ``model``."""
    device = next(model.parameters()).device
    texts: list[str] = []
    lengths: list[int] = []
    logps: list[float] = []
    model.eval()
    for i in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(tokenizer, prompts[i : i + batch_size], device)
        draw = engine.generate if engine is not None else partial(sample, model)
        out = draw(
            ids,
            mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            temperature=temperature,
            top_p=top_p,
            greedy=greedy,
            generator=generator,
        )
        texts += decode_completions(tokenizer, out.completion_ids, out.completion_mask)
        lengths += out.completion_mask.sum(1).tolist()
        logps += (out.logp.float() * out.completion_mask).sum(1).tolist()
    return texts, lengths, logps


def generate_texts(model, tokenizer, prompts: Sequence[str], **kw) -> tuple[list[str], list[int]]:
    """``generate_scored`` without the log-probs: completions and their lengths in tokens."""
    texts, lengths, _ = generate_scored(model, tokenizer, prompts, **kw)
    return texts, lengths


def evaluate(
    model,
    tokenizer,
    task: Task,
    problems: Sequence[Problem],
    *,
    n_samples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    greedy: bool = True,
    batch_size: int = 512,
    seed: int = 0,
    prefix: str = "eval",
    engine: RolloutEngine | None = None,
    samples: list[dict] | None = None,
    n_logged: int = 0,
) -> dict[str, float]:
    """Metrics on ``problems``; the sampling generator is seeded so evaluations are comparable.
    ``engine``: sample with a run's rollout engine instead of the native sampler on ``model``.
    ``samples``: a list that receives the sampled completions of the first ``n_logged``
    problems, one dict per sample (``sample_rows``)."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    out: dict[str, float] = {}
    kw = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, engine=engine)
    if greedy:  # greedy draws no random numbers: the sampled evaluation's draws stay the same
        prompts = [p.prompt for p in problems]
        texts, _ = generate_texts(model, tokenizer, prompts, greedy=True, generator=gen, **kw)
        out[f"{prefix}/greedy_accuracy"] = _mean(
            task.is_correct(t, p) for t, p in zip(texts, problems, strict=True)
        )
    repeated = [p for p in problems for _ in range(n_samples)]
    texts, lengths = generate_texts(
        model,
        tokenizer,
        [p.prompt for p in repeated],
        temperature=temperature,
        top_p=top_p,
        generator=gen,
        **kw,
    )
    correct = torch.tensor([task.is_correct(t, p) for t, p in zip(texts, repeated, strict=True)])
    if samples is not None:
        kept = min(n_logged, len(problems)) * n_samples
        ids = [i // n_samples for i in range(kept)]  # the problem's index in ``problems``
        samples += sample_rows(task, ids, repeated[:kept], texts[:kept], correct[:kept].tolist())
    per_problem = correct.view(len(problems), n_samples)
    out[f"{prefix}/sampled_accuracy"] = float(per_problem.float().mean())
    out[f"{prefix}/pass@{n_samples}"] = float(per_problem.any(1).float().mean())
    out[f"{prefix}/format_rate"] = _mean(task.is_well_formed(t) for t in texts)
    out[f"{prefix}/length_mean"] = _mean(lengths)
    return out


def sample_rows(
    task: Task,
    problem_ids: Sequence[int],
    problems: Sequence[Problem],
    texts: Sequence[str],
    correct: Sequence[bool],
) -> list[dict]:
    """One row per sampled completion, as a reader checks it: the problem's index, prompt,
    completion, parsed answer, gold answer and the verifier's verdict."""
    return [
        {
            "problem_id": i,
            "prompt": p.prompt,
            "completion": t,
            "answer": task.extract_answer(t),
            "gold": p.answer,
            "correct": bool(c),
        }
        for i, p, t, c in zip(problem_ids, problems, texts, correct, strict=True)
    ]


def heldout_eval(
    model,
    tokenizer,
    task: Task,
    cfg,
    seed: int | None = None,
    prefix: str = "eval",
    engine: RolloutEngine | None = None,
    samples: list[dict] | None = None,
) -> dict[str, float]:
    """A run's periodic held-out evaluation: ``cfg.eval`` settings on the first
    ``eval.n_problems`` test problems, sampling seeded by ``seed`` (default ``cfg.seed``, so every
    evaluation of a run, and runs of any algorithm with one seed, see the same random draws);
    adds ``time/eval``. ``samples`` receives the completions of ``eval.log_samples`` problems."""
    e = cfg.eval
    t0 = time.perf_counter()
    out = evaluate(
        model,
        tokenizer,
        task,
        task.test[: e.n_problems],
        n_samples=e.n_samples,
        temperature=e.temperature,
        top_p=e.top_p,
        max_new_tokens=e.max_new_tokens or cfg.rollout.max_new_tokens,
        greedy=e.greedy,
        batch_size=e.batch_size,
        seed=cfg.seed if seed is None else seed,
        prefix=prefix,
        engine=engine,
        samples=samples,
        n_logged=e.get("log_samples", 0),
    )
    out["time/eval"] = time.perf_counter() - t0
    return out


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / max(len(values), 1)
