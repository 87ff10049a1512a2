"""Controlled off-policy lag, ``rollout.lag: k`` (docs/theory.md §11): the rollouts of step t are
sampled by the policy of step max(0, t − k), as an asynchronous trainer (PipelineRL, AReaL)
whose sampler runs k updates behind would sample them, but in one process and deterministically,
so that a sweep over k changes the staleness and nothing else.

The behaviour policy is a copy of the policy; the weights of the k steps in between are kept on
the CPU (k model copies: the price of exactness), and a checkpoint saves them, so a resumed
run samples with the same stale weights as the uninterrupted one.
"""

from __future__ import annotations

import copy
from collections import deque
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor, nn


def cpu_weights(model: nn.Module) -> dict[str, Tensor]:
    """A CPU copy of ``model``'s state dict (every tensor its own storage, for safetensors)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class LaggedPolicy:
    """The behaviour policy θ_{max(0, t−k)} of step t: ``model`` holds its weights, ``queue`` the
    weights θ_{t−k}, …, θ_t (oldest first); ``advance`` after each step's update."""

    def __init__(self, policy: nn.Module, lag: int) -> None:
        if lag < 1:
            raise ValueError(f"rollout.lag={lag}: a lagged policy needs lag >= 1")
        self.lag = lag
        self.model = copy.deepcopy(policy).eval()
        self.model.requires_grad_(False)
        self.queue: deque[dict[str, Tensor]] = deque([cpu_weights(policy)])
        self._loaded = self.queue[0]  # the weights ``model`` holds now

    @property
    def behind(self) -> int:
        """How many updates the behaviour policy trails the policy (k once t ≥ k)."""
        return len(self.queue) - 1

    def advance(self, policy: nn.Module) -> None:
        """The policy has its weights of step t + 1: the behaviour policy moves to t + 1 − k."""
        self.queue.append(cpu_weights(policy))
        while len(self.queue) > self.lag + 1:
            self.queue.popleft()
        self._load()

    def _load(self) -> None:
        if self.queue[0] is not self._loaded:
            self.model.load_state_dict(self.queue[0])
            self._loaded = self.queue[0]

    # ---- checkpoints: the queue but its newest entry, which is the policy's own weights --------
    def save_pretrained(self, folder: Path) -> None:
        """``weights_<i>.safetensors`` for the queue's entries oldest first (at most k files)."""
        folder.mkdir(parents=True, exist_ok=True)
        for i, weights in enumerate(list(self.queue)[:-1]):
            save_file(weights, str(folder / f"weights_{i:02d}.safetensors"))

    def restore(self, folder: Path, policy: nn.Module) -> None:
        """The queue saved in ``folder`` (a checkpoint's ``lag/``) plus ``policy``'s weights."""
        saved = sorted(folder.glob("weights_*.safetensors")) if folder.is_dir() else []
        self.queue = deque([*(load_file(str(p)) for p in saved), cpu_weights(policy)])
        self._loaded = {}
        self._load()
