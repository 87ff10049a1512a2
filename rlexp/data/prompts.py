"""Prompt order and tokenisation: which problems a step sees, as model inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class PromptStream:
    """Endless pass over ``n`` problems in a seeded order, reshuffled every epoch; problems
    ``drop``ped (``data.drop_solved_above``: solved already) are skipped from then on.

    Its state is (epoch, cursor, dropped): a resumed run sees exactly the prompts an
    uninterrupted run would have seen, none skipped or repeated.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("a task needs at least one training problem")
        self.n, self.seed = n, seed
        self.epoch, self.cursor = 0, 0
        self.dropped: set[int] = set()
        self._order = self._permutation(0)

    def drop(self, problems: Sequence[int]) -> None:
        """Never draw ``problems`` again; ``RuntimeError`` when no problem would be left."""
        self.dropped.update(int(p) for p in problems)
        if len(self.dropped) >= self.n:
            raise RuntimeError(
                f"data.drop_solved_above dropped all {self.n} training problems (each solved "
                "above the threshold): nothing is left to train on; raise the threshold"
            )

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def next(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.cursor == self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            if not self.dropped:
                take = min(k - len(out), self.n - self.cursor)
                out += self._order[self.cursor : self.cursor + take]
                self.cursor += take
                continue
            problem = self._order[self.cursor]
            self.cursor += 1
            if problem not in self.dropped:
                out.append(problem)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "dropped": sorted(self.dropped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.dropped = {int(p) for p in state.get("dropped", [])}
        self._order = self._permutation(self.epoch)


def prompt_token_ids(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt as the model sees it.

    With a chat template on the tokenizer (kept or dropped at load time by
    ``model.chat_template``, see rlexp.models.load), each prompt is one user turn rendered by
    ``apply_chat_template(..., add_generation_prompt=True)``; the template writes any BOS itself.
    Otherwise the raw text, with BOS first when the tokenizer has one.
    """
    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
            )
            for p in prompts
        ]
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return [[bos, *r] for r in rows] if bos is not None else rows


def encode_prompts(
    tokenizer, prompts: Sequence[str], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask ``[B, P]`` (see ``prompt_token_ids``)."""
    return left_pad(prompt_token_ids(tokenizer, prompts), tokenizer.pad_token_id, device)


def pad_rows(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device, left: bool
) -> tuple[Tensor, Tensor]:
    """Ids and mask ``[B, T]``, padded on the left (prompts) or the right (completions)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        cols = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, cols] = torch.tensor(r, dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


def left_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Left-padded ids and mask ``[B, T]`` (the prompt layout of rlexp.rollout.sampler)."""
    return pad_rows(rows, pad_id, device, left=True)


def right_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Right-padded ids and mask ``[B, T]`` (the completion layout of rlexp.models.logprobs)."""
    return pad_rows(rows, pad_id, device, left=False)


def decode_completions(tokenizer, completion_ids: Tensor, completion_mask: Tensor) -> list[str]:
    """Completion texts without special tokens (EOS, padding)."""
    rows = [
        ids[m.bool()].tolist()
        for ids, m in zip(completion_ids.cpu(), completion_mask.cpu(), strict=True)
    ]
    return tokenizer.batch_decode(rows, skip_special_tokens=True)
