"""Checkpoints: weights as safetensors (``save_pretrained``), trainer state loaded with
``weights_only=True``; every save is written to a temporary folder and renamed into place, so a
kill during a save never leaves a checkpoint that loads wrong."""

from __future__ import annotations

import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

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
    """The global RNGs (torch, CUDA, numpy, python) as tensors, ints and tuples: what
    ``torch.load(weights_only=True)`` accepts, so nothing arbitrary is ever unpickled."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(_as_tuple(state["python"]))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    modules: dict[str, Any],
    state: dict[str, Any],
    keep_last: int = 2,
    into: Path | None = None,
) -> Path:
    """Save ``modules`` (objects with ``save_pretrained``) and ``state`` (tensors, numbers,
    optimizer state dicts) as ``run_dir/checkpoints/step_NNNNNN``; keep the newest ``keep_last``.
    ``into``: the temporary folder (from ``atomic_dir``) other ranks already wrote shards into."""
    final = checkpoint_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = into if into is not None else atomic_dir(final)
    try:
        for name, module in modules.items():
            module.save_pretrained(tmp / name)
        torch.save({**state, "step": step, "rng": rng_state()}, tmp / "trainer_state.pt")
    except (
        BaseException
    ) as err:  # a full disk, a signal: the half-written folder goes, its space too
        free_mib = shutil.disk_usage(final.parent).free / 2**20  # before the folder frees its share
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError | RuntimeError):  # torch.save reports ENOSPC as RuntimeError
            message = (
                f"could not write the checkpoint {final} ({type(err).__name__}: {err}); "
                f"{free_mib:.1f} MiB were free on its disk; the older checkpoints are intact"
            )
            errno = getattr(err, "errno", None)
            raise (OSError(errno, message) if errno else OSError(message)) from err
        raise
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


def remove_partial(run_dir: Path) -> list[Path]:
    """Clean up after a kill during a save: delete unfinished ``.tmp-*`` folders (never loaded,
    only ``step_N`` folders are) and put back an ``.old-*`` copy whose replacement never landed."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    removed = []
    for p in sorted(root.iterdir()):
        m = re.match(r"\.(tmp|old)-(step_\d+)-\d+$", p.name)
        if m is None:
            continue
        if m.group(1) == "old" and not (root / m.group(2)).exists():
            os.replace(p, root / m.group(2))
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def unreadable_weights(folder: Path) -> list[str]:
    """``"<file>: <error>"`` for each ``*.safetensors`` under ``folder`` whose header does not
    parse or whose tensors the file does not fully hold (a truncated or overwritten file); cheap:
    only headers are read."""
    bad = []
    for path in sorted(Path(folder).rglob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as f:
                f.keys()
        except Exception as err:  # SafetensorError, OSError
            bad.append(f"{path}: {type(err).__name__}: {err}")
    return bad


def latest_readable_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint whose trainer state loads and whose weight files are whole; an
    unreadable one (truncated, corrupt) is skipped with a warning naming its file, so a resume
    falls back to the older intact one. None without checkpoints; ``RuntimeError`` naming the
    files when none is readable."""
    errors = []
    for ckpt in reversed(list_checkpoints(run_dir)):
        problem = _unreadable(ckpt)
        if problem is None:
            return ckpt
        errors.append(problem)
        warnings.warn(
            f"checkpoint {ckpt} is unreadable ({problem}); trying an older one", stacklevel=2
        )
    if errors:
        raise RuntimeError("no readable checkpoint to resume from: " + "; ".join(errors))
    return None


def _unreadable(ckpt: Path) -> str | None:
    """What makes a checkpoint unreadable (its file and the error), or None."""
    try:
        load_trainer_state(ckpt)
    except Exception as err:  # torch.load's errors are many (OSError, EOFError, pickle ...)
        return f"{ckpt / 'trainer_state.pt'}: {type(err).__name__}: {err}"
    return "; ".join(unreadable_weights(ckpt)) or None


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
