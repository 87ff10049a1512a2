"""Checkpoints: weights as safetensors (``save_pretrained``), trainer state loaded with
``weights_only=True``; every save is written to a temporary folder and renamed into place, so a
kill during a save never leaves a checkpoint that loads wrong."""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

_STEP_DIR = re.compile(r"step_(\d+)$")


def atomic_dir(final: Path) -> Path:
    """A fresh temporary sibling of ``final`` to write into before ``commit_dir``."""
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``, replacing an older ``final`` only after the new one is whole."""
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def save_checkpoint(
    run_dir: Path,
    step: int,
    modules: dict[str, Any],
    state: dict[str, Any],
    keep_last: int = 2,
) -> Path:
    """Save ``modules`` (objects with ``save_pretrained``) and ``state`` (tensors, numbers,
    optimizer state dicts) as ``run_dir/checkpoints/step_NNNNNN``; keep the newest ``keep_last``."""
    final = run_dir / "checkpoints" / f"step_{step:06d}"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_dir(final)
    for name, module in modules.items():
        module.save_pretrained(tmp / name)
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / "trainer_state.pt")
    commit_dir(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint; ``weights_only`` so nothing arbitrary is unpickled."""
    return torch.load(ckpt / "trainer_state.pt", weights_only=True)


class WithTokenizer:
    """Saves a model and its tokenizer into one folder, so it loads like a hub checkpoint."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer

    def save_pretrained(self, path: Path) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
