"""Rollout engines (``rollout.engine``): what samples the completions of a training step.

* ``native``: rlexp's own batched samplers (``rlexp.rollout.sampler``) on the policy module
  itself, so there are no weights to sync; the default, and the right tool for the tiny model.
* ``vllm``: a colocated ``vllm.LLM`` in the trainer process (``rlexp.rollout.vllm_engine``),
  built from the policy's config and fed the policy's weights in memory after every update.

An engine samples left-padded prompts ``[B, P]`` into :class:`~rlexp.rollout.sampler.Samples`;
the trainer tells it when the policy changed (``load_weights``) and when the update needs the
memory (``release``). Its ``logp`` are the sampler's own behaviour log-probs (kept as
``batch.sampler_logp`` when ``algorithm.old_logp`` recomputes them with the training forward).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from rlexp.rollout.batch import pad_to_width
from rlexp.rollout.sampler import Samples, sample
from rlexp.runtime.registry import Registry
from rlexp.runtime.sharding import full_items, is_sharded


class RolloutEngine(Protocol):
    def generate(
        self,
        prompt_ids: Tensor,
        prompt_mask: Tensor,
        generator: torch.Generator,
        *,
        max_new_tokens: int,
        eos_token_id: int,
        pad_token_id: int,
        temperature: float,
        top_p: float,
        greedy: bool = False,
    ) -> Samples: ...

    def load_weights(self, policy: nn.Module) -> None: ...  # the policy changed: sync it

    def release(self) -> None: ...  # the update needs the memory now (vLLM on GPU: sleep)

    def close(self) -> None: ...


ENGINES: Registry = Registry("rollout engine (rollout.engine)")


def build_engine(
    name: str,
    policy: nn.Module,
    chunk: GenerationChunk,
    rollout_cfg,
    seed: int,
    sampler_model: nn.Module | None = None,
) -> RolloutEngine:
    """The engine ``rollout.engine`` names, holding the policy's current weights.
    ``sampler_model``: an unsharded copy for the native sampler of a sharded policy."""
    return ENGINES.get(name)(policy, chunk, rollout_cfg, seed, sampler_model)


@ENGINES.register("vllm")
def _vllm(policy, chunk, rollout_cfg, seed: int, sampler_model=None) -> RolloutEngine:
    from rlexp.rollout.vllm_engine import VLLMEngine  # vllm is an optional extra

    return VLLMEngine(policy, rollout_cfg, seed)


# --------------------------------------------------------------------------- native


@dataclass
class GenerationChunk:
    """Rows per sampling call. ``None`` samples the whole batch in one call; an out-of-memory
    error halves it (and it stays halved for later steps). ``retries`` counts the halvings."""

    size: int | None = None
    retries: int = 0


class NativeEngine:
    """rlexp's samplers on the policy module itself, in row chunks of ``chunk.size``; for a
    sharded policy on an unsharded copy (``sampler_model``), whose weights ``load_weights``
    gathers tensor by tensor."""

    def __init__(
        self, policy: nn.Module, chunk: GenerationChunk, sampler_model: nn.Module | None = None
    ) -> None:
        self.policy, self.chunk = sampler_model if sampler_model is not None else policy, chunk

    def generate(self, prompt_ids: Tensor, prompt_mask: Tensor, generator, **kw) -> Samples:
        return sample_in_chunks(self.policy, prompt_ids, prompt_mask, self.chunk, generator, **kw)

    def load_weights(self, policy: nn.Module) -> None:
        if not is_sharded(policy):
            self.policy = policy  # the module it samples from: nothing to copy
            return
        own = self.policy.state_dict()
        with torch.no_grad():
            for name, tensor in full_items(policy.state_dict().items()):
                own[name].copy_(tensor)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


ENGINES.register("native")(
    lambda policy, chunk, rollout_cfg, seed, sampler_model=None: NativeEngine(
        policy, chunk, sampler_model
    )
)


def row_chunks(n: int, size: int) -> list[slice]:
    """Row slices of at most ``size``: passes over a rollout never hold all its activations."""
    return [slice(i, i + size) for i in range(0, n, size)]


def sample_in_chunks(
    policy, prompt_ids: Tensor, prompt_mask: Tensor, chunk: GenerationChunk, generator, **kw
) -> Samples:
    """``rollout.sample`` over row chunks of ``chunk.size``; on ``torch.OutOfMemoryError`` the
    chunk is halved and the whole batch sampled again from the generator's starting state, until
    a chunk of one row fails too. Chunks draw the random numbers in another order, so a halved
    chunk gives other (equally distributed) samples than the whole batch would."""
    n, start = prompt_ids.shape[0], generator.get_state()
    while True:
        size = min(chunk.size or n, n)
        try:
            parts = [
                sample(policy, prompt_ids[r], prompt_mask[r], generator=generator, **kw)
                for r in row_chunks(n, size)
            ]
            return parts[0] if len(parts) == 1 else _concat_samples(parts, kw["pad_token_id"])
        except torch.OutOfMemoryError as err:
            if size <= 1:
                raise RuntimeError(
                    "out of memory while sampling even one sequence at a time: lower "
                    "rollout.max_new_tokens or use a smaller model"
                ) from err
            chunk.size, chunk.retries = size // 2, chunk.retries + 1
            warnings.warn(
                f"out of memory sampling {size} sequences at once; retrying in chunks of "
                f"{chunk.size}",
                stacklevel=2,
            )
            del err
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            generator.set_state(start)


def _concat_samples(parts: list[Samples], pad_id: int) -> Samples:
    """One ``Samples`` from row chunks of different completion lengths (right-padded)."""
    width = max(p.completion_ids.shape[1] for p in parts)
    return Samples(
        completion_ids=torch.cat(
            [pad_to_width(p.completion_ids, width, pad_id, False) for p in parts]
        ),
        completion_mask=torch.cat(
            [pad_to_width(p.completion_mask, width, 0, False) for p in parts]
        ),
        logp=torch.cat([pad_to_width(p.logp, width, 0.0, False) for p in parts]),
        truncated=torch.cat([p.truncated for p in parts]),
    )
