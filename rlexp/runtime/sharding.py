"""FSDP2 sharding (``distributed.strategy=fsdp``): parameters, gradients and optimizer state split
over the ranks, so no rank holds a full copy of a model it trains.

``shard`` applies ``torch.distributed.fsdp.fully_shard`` to every decoder layer and then to the
root (the embeddings, final norm and head form the root's group). Gradients are reduce-scattered
as a SUM over ranks (divide factor 1): the losses are normalised by the global minibatch's
denominators, so the summed gradient is the single-process gradient of the global minibatch, as
under ddp (``rlexp.runtime.distributed.all_reduce_gradients``). ``clip_grad_norm_`` over DTensor
gradients takes the global norm.

Weights leave a sharded model only tensor by tensor (``full_items``: one all-gather each, the
same order on every rank), for the HF export in checkpoints, the native sampler's copy and the
vLLM engine. Optimizer state is never gathered: each rank writes its shard with
``torch.distributed.checkpoint`` (DCP).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from rlexp.runtime.errors import ConfigError

STRATEGIES = ("ddp", "fsdp")
FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)  # rank 0 gets it all


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: the classes HF lists as ``_no_split_modules``
    (``LlamaDecoderLayer``, ``Qwen2DecoderLayer``, ...) of the model or the one it wraps."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ConfigError(
            f"distributed.strategy=fsdp shards per decoder layer, but {type(model).__name__} "
            "names none (no _no_split_modules); use distributed.strategy=ddp"
        )
    return layers


def shard(model: nn.Module, dtype: torch.dtype, offload: bool = False) -> nn.Module:
    """``model`` sharded in place over the default process group: each decoder layer, then the
    root. Mixed precision: parameters in ``dtype`` for compute, gradients reduced in float32;
    ``offload`` keeps parameters and optimizer state in host memory between uses."""
    kw = {
        "mp_policy": MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32),
        **({"offload_policy": CPUOffloadPolicy()} if offload else {}),
    }
    for layer in decoder_layers(model):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # a sum over ranks, as the losses expect
            module.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no PREMUL_SUM)
    return model


def is_sharded(model: nn.Module | None) -> bool:
    return isinstance(model, FSDPModule)


def parameter_norm(model: nn.Module) -> float:
    """‖θ‖₂ over all of ``model``'s parameters; sharded, over every rank's shards (one
    all-reduce of the local sums of squares: FSDP2 shards each parameter along dim 0)."""
    local = [p.to_local() if isinstance(p, DTensor) else p for p in model.parameters()]
    squares = torch.stack([p.detach().double().square().sum() for p in local]).sum()
    if is_sharded(model):
        torch.distributed.all_reduce(squares)
    return float(squares.sqrt())


def model_class(model: nn.Module) -> type:
    """The model's own class (FSDP2 swaps in a subclass ``FSDP<Name>``)."""
    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))


def full(t: Tensor) -> Tensor:
    """A DTensor gathered whole (a collective); any other tensor as it is."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def full_items(items) -> Iterator[tuple[str, Tensor]]:
    """``(name, tensor)`` pairs with every DTensor gathered, one at a time."""
    for name, t in items:
        yield name, full(t)


def model_state(model: nn.Module) -> dict[str, Tensor]:
    """A sharded model's full state dict on rank 0 (host memory; empty on the others), every
    rank joining; an unsharded model's own ``state_dict``."""
    if not is_sharded(model):
        return model.state_dict()
    return get_model_state_dict(model, options=FULL_ON_RANK0)


def save_sharded_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """A sharded model's optimizer state with ``torch.distributed.checkpoint``: every rank
    writes its own shard into ``path`` (a folder every rank sees); nothing is gathered."""
    dcp.save({"optimizer": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=str(path))


def load_sharded_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Inverse of :func:`save_sharded_optimizer`, also onto another world size (DCP reshards)."""
    state = {"optimizer": get_optimizer_state_dict(model, optimizer)}  # initialises the state
    dcp.load(state, checkpoint_id=str(path))
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state["optimizer"])


class FullWeights:
    """Saves a sharded model as a normal HF folder (``save_pretrained`` with its gathered full
    state dict), so ``from_pretrained`` loads it; gathered on construction, by every rank."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.state = model, model_state(model)

    def save_pretrained(self, path, **kw) -> None:
        self.model.save_pretrained(path, state_dict=self.state, **kw)
