"""The RL base model: a fresh or loaded model, and the SFT checkpoint cached by config hash.

RL runs start from ``<cache_dir>/sft/<key>``; ``key`` hashes every setting that shapes the SFT
model (model architecture, task, ``sft:`` section, and the contents of the task's data files),
so changing any of them trains a new base, and runs that share them (other seeds, other RL
algorithms) reuse one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from rlexp.data.lengths import check_task_fits, context_length
from rlexp.data.tasks.base import Task
from rlexp.data.tasks.sources import dataset_digest
from rlexp.evaluation.heldout import heldout_eval
from rlexp.models.build import init_model
from rlexp.runtime.checkpoint import atomic_dir, commit_dir, unreadable_weights
from rlexp.runtime.errors import DataError
from rlexp.runtime.hub import local_path
from rlexp.trainers.kinds import TRAINERS, RunContext, TrainerKind
from rlexp.trainers.sft import heldout_loss_floor, heldout_problems, train_sft

_log = logging.getLogger(__name__)

SFT_FORMAT_VERSION = 1  # bump when the SFT recipe's code changes what it produces
# Task keys added after version 1, left out of the key at their "off" value so that the bases
# cached before they existed stay valid.
_TASK_KEYS_OFF = {
    "never_carry_from": 0,
    "dataset_name": None,
    "dataset_config": None,
    "dataset_train_split": "train",
    "dataset_test_split": "test",
}


def sft_key(cfg: DictConfig) -> str:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    # RL-only settings: one base for all of them
    for key in ("sft_first", "lora", "ref_path", "gradient_checkpointing", "fp32_lm_head"):
        model.pop(key, None)
    task = OmegaConf.to_container(cfg.task, resolve=True)
    task.pop("verifier", None)  # how RL scores answers, not what SFT imitates
    for key, off in _TASK_KEYS_OFF.items():
        if task.get(key, off) == off:
            task.pop(key, None)
    payload = {
        "version": SFT_FORMAT_VERSION,
        "model": model,
        "task": task,
        "sft": OmegaConf.to_container(cfg.sft, resolve=True),
    }
    data = _data_digests(cfg.task)
    if data:  # a data file edited in place trains a new base
        payload["data"] = data
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.model.name}-{cfg.task.name}-{digest}"


def _data_digests(task_cfg: DictConfig) -> dict[str, str]:
    """SHA-256 of each existing file named by a ``task.*_file`` key (``train_file``, ...), and
    what identifies ``task.dataset_name``'s data (``sources.dataset_digest``)."""
    digests = {}
    for key, value in task_cfg.items():
        if str(key).endswith("_file") and value and Path(value).is_file():
            digests[str(key)] = hashlib.sha256(Path(value).read_bytes()).hexdigest()
    name = task_cfg.get("dataset_name")
    if name and (digest := dataset_digest(name)):
        digests["dataset_name"] = digest
    return digests


def sft_stage(
    cfg: DictConfig, task: Task, device: torch.device, dtype: torch.dtype, log
) -> tuple[Any, Any, dict]:
    """Train the base model by SFT from scratch (``model=tiny``) or from ``model.path``."""
    model, tokenizer = init_model(cfg, device, dtype)
    check_task_fits(cfg, task, tokenizer, context_length(model), sft=True)  # before any compute
    torch.manual_seed(cfg.sft.seed)

    def sft_eval() -> dict[str, float]:
        return heldout_eval(model, tokenizer, task, cfg, seed=cfg.sft.seed, prefix="sft")

    heldout = heldout_problems(task)
    floor = heldout_loss_floor(task, tokenizer, heldout)
    final = train_sft(
        model,
        tokenizer,
        task.train,
        heldout,
        cfg.sft,
        device,
        log,
        evaluate=sft_eval,
        loss_floor=floor,
    )
    return model, tokenizer, final


def ensure_sft_base(
    cfg: DictConfig, task: Task, device: torch.device, dtype: torch.dtype, logger, run_dir: Path
) -> Path:
    """Path of the cached SFT base for this config, training and caching it first if missing.

    The SFT curve is kept with the checkpoint (``sft_metrics.jsonl``) and copied into the run
    directory, so every RL run shows the base it started from. Sweep members that need the same
    missing base at once (parallel launchers) take turns on a file lock: one trains it, the others
    wait and then load it.
    """
    target = Path(cfg.cache_dir) / "sft" / sft_key(cfg)
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(target.parent / f"{target.name}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            _log.info("waiting for another job to finish the SFT base %s ...", target)
            lock.acquire()
        try:
            if not (target / "config.json").exists():  # else: trained while this job waited
                _train_base(cfg, task, device, dtype, logger, run_dir, target)
                return target
        finally:
            lock.release()
    bad = unreadable_weights(target)
    if bad:  # a cut copy or a full disk after the commit; loading it would fail without a name
        raise DataError(
            f"the cached SFT base {target} is corrupt ({'; '.join(bad)}); delete that folder "
            "and the next run trains it again"
        )
    shutil.copy(target / "sft_metrics.jsonl", run_dir / "sft_metrics.jsonl")
    return target


def _train_base(
    cfg: DictConfig,
    task: Task,
    device: torch.device,
    dtype: torch.dtype,
    logger,
    run_dir: Path,
    target: Path,
) -> None:
    """SFT-train the base and commit it to ``target`` whole (a temporary folder, then a rename)."""
    model, tokenizer, _ = sft_stage(
        cfg, task, device, dtype, lambda row: logger.log(row, "sft_metrics.jsonl")
    )
    tmp = atomic_dir(target)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.copy(run_dir / "sft_metrics.jsonl", tmp / "sft_metrics.jsonl")
    OmegaConf.save(OmegaConf.masked_copy(cfg, ["model", "task", "sft"]), tmp / "sft_config.yaml")
    commit_dir(tmp, target)


def start_checkpoint(
    cfg: DictConfig, task: Task, device: torch.device, dtype: torch.dtype, logger, run_dir: Path
) -> str | None:
    """The weights a training run starts from: the cached SFT base (``model.sft_first``, trained
    first if missing), else ``model.path`` (``model=hf``); ``None`` means a fresh tiny model."""
    if cfg.model.sft_first:
        return str(ensure_sft_base(cfg, task, device, dtype, logger, run_dir))
    return str(local_path(cfg.model.path, "model.path")) if cfg.model.name == "hf" else None


def validate_sft(cfg: DictConfig) -> None:
    """Nothing beyond the checks every run shares (``sft.*`` among them)."""


def run_sft(ctx: RunContext) -> dict[str, float]:
    """``algorithm=sft``: train the base by SFT and save it as ``<run_dir>/final``."""
    run_dir, logger = ctx.run_dir, ctx.logger
    model, tokenizer, final = sft_stage(
        ctx.cfg, ctx.task, ctx.device, ctx.dtype, lambda row: logger.log(row, "sft_metrics.jsonl")
    )
    tmp = atomic_dir(run_dir / "final")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    commit_dir(tmp, run_dir / "final")
    _log.info(
        "SFT model saved to %s: held-out loss %.4f, sampled accuracy %.3f",
        run_dir / "final",
        final["sft/heldout_loss"],
        final.get("sft/sampled_accuracy", float("nan")),
    )
    return final


TRAINERS.register("sft")(TrainerKind(validate=validate_sft, run=run_sft))
