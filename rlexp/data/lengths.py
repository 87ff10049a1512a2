"""Do a task's texts fit the model's context? Checked once the tokenizer exists, before compute.

A prompt longer than the model can attend to does not fail cleanly: a 2 MB JSONL line took the
process to 11 GB and then asked for 4 TB. So every prompt (plus the tokens a rollout or an
evaluation may add) and every SFT example (prompt, solution, EOS) must fit in the model's
positions (``max_position_embeddings``); the first that does not is one ``DataError`` naming the
file and line (or the problem), its length and the limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from rlexp.data.prompts import prompt_token_ids
from rlexp.data.tasks.base import Problem, Task
from rlexp.runtime.errors import DataError


def context_length(model) -> int | None:
    """The model's number of positions (None when its config does not say)."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def _where(problem: Problem) -> str:
    return problem.source or f"problem {problem.id}"


def check_prompts_fit(
    tokenizer, problems: Sequence[Problem], context: int, room: int, room_key: str
) -> None:
    """Each prompt's tokens plus ``room`` new tokens (``room_key``'s value) fit in ``context``."""
    lengths = [len(ids) for ids in prompt_token_ids(tokenizer, [p.prompt for p in problems])]
    for problem, n in zip(problems, lengths, strict=True):
        if n + room > context:
            raise DataError(
                f"{_where(problem)}: the prompt is {n} tokens; with {room_key}={room} new tokens "
                f"it needs {n + room} positions, more than the model's {context} "
                "(max_position_embeddings): shorten or drop the problem, or lower "
                f"{room_key}"
            )


def check_examples_fit(tokenizer, problems: Sequence[Problem], context: int) -> None:
    """Each SFT example ``prompt + solution + EOS`` fits in ``context`` positions."""
    prompts = prompt_token_ids(tokenizer, [p.prompt for p in problems])
    targets = tokenizer([p.solution for p in problems], add_special_tokens=False)["input_ids"]
    for problem, p, t in zip(problems, prompts, targets, strict=True):
        n = len(p) + len(t) + 1
        if n > context:
            raise DataError(
                f"{_where(problem)}: the SFT example (prompt, solution, EOS) is {n} tokens, more "
                f"than the model's {context} positions (max_position_embeddings): shorten or "
                "drop the problem"
            )


def check_task_fits(cfg: DictConfig, task: Task, tokenizer, context: int | None, sft: bool) -> None:
    """The texts this run will feed the model: the SFT examples (``sft``: an SFT stage follows),
    an RL run's rollout prompts with ``rollout.max_new_tokens``, and the held-out prompts with the
    evaluation's ``max_new_tokens``."""
    if context is None:
        return
    if sft:
        check_examples_fit(tokenizer, task.train, context)
    if cfg.algorithm.trainer == "rl":
        room = cfg.rollout.max_new_tokens
        check_prompts_fit(tokenizer, task.train, context, room, "rollout.max_new_tokens")
    eval_room = cfg.eval.get("max_new_tokens") or cfg.rollout.max_new_tokens
    key = "eval.max_new_tokens" if cfg.eval.get("max_new_tokens") else "rollout.max_new_tokens"
    check_prompts_fit(tokenizer, task.test, context, eval_room, key)
