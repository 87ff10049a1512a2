"""Data parallelism over ``torch.distributed``: process-group set-up from torchrun's environment
and the few reductions the trainer needs. Every helper is a no-op (or the identity) in a single
process, so the training code calls them unconditionally.

Launch: ``torchrun --nproc_per_node=N -m rlexp.train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; ``init_distributed`` reads them (backend nccl on CUDA, gloo on CPU).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

# Generous: ranks > 0 wait in a collective while rank 0 trains a missing SFT base.
TIMEOUT = timedelta(hours=2)
BUCKET_NUMEL = 2**24  # gradients all-reduced in flat buckets of at most this many elements


def env_world_size() -> int:
    """The world size torchrun announced (1 without torchrun), readable before initialisation."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0, the only rank that logs and writes files (and in a single process)."""
    return rank() == 0


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); return this rank's
    device (``cuda:LOCAL_RANK`` on GPU). Idempotent; the group is destroyed at exit."""
    if env_world_size() <= 1 or dist.is_initialized():
        return _local_device(device)
    device = _local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend, timeout=TIMEOUT, device_id=device if backend == "nccl" else None
    )
    atexit.register(_destroy)
    return device


def _local_device(device: torch.device) -> torch.device:
    if device.type != "cuda" or env_world_size() <= 1:
        return device
    local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(local)
    return local


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int) -> int:
    """A per-rank seed: ``seed`` on rank 0 (so one process reproduces a 1-GPU run), distinct and
    deterministic on the others."""
    return seed + 1_000_003 * rank()


# ---------------------------------------------------------------------------- reductions


def all_reduce(x: Tensor, op: str = "sum") -> Tensor:
    """``x`` reduced over ranks (sum | max | min), returned as a new tensor; ``x`` is left as is."""
    if not is_distributed():
        return x
    out = x.detach().clone()
    dist.all_reduce(
        out, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
    )
    return out


def _comm_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def all_reduce_scalar(value: float, op: str = "sum") -> float:
    """A Python number reduced over ranks (float64 on the wire)."""
    if not is_distributed():
        return value
    return float(
        all_reduce(torch.tensor(float(value), dtype=torch.float64, device=_comm_device()), op)
    )


def global_mean_std(values: Tensor) -> tuple[int, Tensor, Tensor]:
    """(count, mean, unbiased std) of a 1-D tensor pooled over every rank's ``values``, in two
    passes like ``Tensor.mean`` / ``Tensor.std``; std is 0 for fewer than 2 values overall."""
    if not is_distributed():  # exactly torch's own reductions (rlexp.algos.masks.local_mean_std)
        n, zero = values.numel(), values.new_zeros(())
        return (n, values.mean(), values.std() if n > 1 else zero) if n else (0, zero, zero)
    v = values.detach().double()
    n = int(all_reduce_scalar(v.numel()))
    if n == 0:
        zero = values.new_zeros(())
        return 0, zero, zero
    mean = all_reduce(v.sum()) / n
    ss = all_reduce((v - mean).square().sum())
    std = (ss / (n - 1)).sqrt() if n > 1 else torch.zeros_like(ss)
    return n, mean.to(values.dtype), std.to(values.dtype)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def reduce_dict(stats: dict[str, float], op: str = "sum") -> dict[str, float]:
    """Scalar stats combined over ranks key by key (sum | max | mean); a key missing on some ranks
    is combined over the ranks that have it."""
    if not is_distributed():
        return dict(stats)
    parts = all_gather_objects({k: float(v) for k, v in stats.items()})
    keys = sorted({k for p in parts for k in p})
    combine = {"sum": sum, "max": max, "mean": lambda xs: sum(xs) / len(xs)}[op]
    return {k: combine([p[k] for p in parts if k in p]) for k in keys}


def broadcast_module(module: nn.Module | None) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank (identical starts)."""
    if module is None or not is_distributed():
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def all_reduce_gradients(params: Iterable[nn.Parameter]) -> None:
    """Sum every parameter's gradient over ranks, in place (a missing gradient counts as 0).

    With losses normalised by the GLOBAL token/sequence count, the summed gradient is exactly the
    single-process gradient of the union of the ranks' minibatches.
    """
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[Tensor] = []
    size = 0
    for i, p in enumerate(params):
        bucket.append(p.grad)
        size += p.grad.numel()
        if size >= BUCKET_NUMEL or i == len(params) - 1:
            _reduce_bucket(bucket)
            bucket, size = [], 0


def _reduce_bucket(grads: list[Tensor]) -> None:
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
