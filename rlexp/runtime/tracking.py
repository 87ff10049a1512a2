"""Run logging: metrics.jsonl in the run directory (always) and Weights & Biases (offline default)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from rlexp.runtime.io import atomic_write_text


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible rather than crash the log
    return value


class RunLogger:
    """Appends one JSON object per call to ``<run_dir>/<stage>metrics.jsonl`` and mirrors it to W&B.

    W&B's own step counter is never passed: each stage names its step key (``train/step``,
    ``sft/step``) and W&B plots against it, so an SFT stage and the RL run share one W&B run.
    """

    def __init__(
        self,
        run_dir: str | Path,
        backend: str = "wandb",
        project: str = "rlexp",
        mode: str = "offline",
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
        job_type: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.wandb_run = None
        if backend == "wandb":
            import wandb

            mode = os.environ.get("WANDB_MODE", mode)
            self.wandb_run = wandb.init(
                project=project,
                name=name,
                group=group,
                job_type=job_type,
                tags=tags or None,
                config=config,
                dir=str(self.run_dir),
                mode=mode,
                id=run_id,
                resume="allow" if run_id else None,
                reinit="finish_previous",
            )
            self.wandb_run.define_metric("train/step")
            self.wandb_run.define_metric("sft/step")
            for prefix in ("train", "loss", "eval", "time", "critic", "adv", "dpo", "rft"):
                self.wandb_run.define_metric(f"{prefix}/*", step_metric="train/step")
            self.wandb_run.define_metric("sft/*", step_metric="sft/step")
        elif backend != "none":
            raise ValueError(f"unknown logger {backend!r}; choose wandb or none")

    @classmethod
    def from_config(
        cls,
        run_dir: str | Path,
        logger_cfg,
        job_type: str,
        config: dict[str, Any],
        name: str | None = None,
        group: str | None = None,
        run_id: str | None = None,
    ) -> RunLogger:
        """A logger from a ``logger:`` section (``logger_cfg``); ``name`` and ``group`` default
        to its ``run_name`` and ``group``."""
        return cls(
            run_dir,
            backend=logger_cfg.name,
            project=logger_cfg.project,
            mode=logger_cfg.mode,
            name=name or logger_cfg.run_name,
            group=group or logger_cfg.group,
            tags=list(logger_cfg.tags),
            config=config,
            run_id=run_id,
            job_type=job_type,
        )

    @property
    def run_id(self) -> str | None:
        return self.wandb_run.id if self.wandb_run is not None else None

    def log(self, metrics: dict[str, Any], file: str = "metrics.jsonl") -> None:
        row = {k: _jsonable(v) for k, v in metrics.items()}
        with open(self.run_dir / file, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if not isinstance(v, str)})

    def table(
        self,
        key: str,
        rows: list[dict[str, Any]],
        step: dict[str, Any],
        file: str | None,
        commit: bool = True,
    ) -> None:
        """Rows of one table (an evaluation's samples): appended to ``<run_dir>/<file>`` (none:
        the rows are on disk already), each with the ``step`` keys, and logged to W&B as a
        ``wandb.Table`` under ``key``; ``commit=False`` joins it to the next ``log`` (the step's
        metrics row) instead of a history row of its own."""
        if file is not None:
            with open(self.run_dir / file, "a") as f:
                for row in rows:
                    f.write(json.dumps(step | {k: _jsonable(v) for k, v in row.items()}) + "\n")
        if self.wandb_run is not None and rows:
            import wandb

            columns = list(rows[0])
            data = [[_jsonable(r[c]) for c in columns] for r in rows]
            table = {key: wandb.Table(columns=columns, data=data)}
            self.wandb_run.log(table | step if commit else table, commit=commit)

    def log_model(self, folder: str | Path) -> None:
        """``folder`` (a saved model) as the W&B artifact ``model-<run id>`` of type model."""
        if self.wandb_run is not None:
            import wandb

            artifact = wandb.Artifact(f"model-{self.run_id}", type="model")
            artifact.add_dir(str(folder))
            self.wandb_run.log_artifact(artifact)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for k, v in values.items():
                self.wandb_run.summary[k] = _jsonable(v)

    def finish(self, exit_code: int = 0) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None


class NullLogger:
    """The logger of data-parallel ranks > 0: they log nothing (rank 0 logs global metrics)."""

    run_id = None

    def log(self, metrics: dict[str, Any], file: str = "metrics.jsonl") -> None:
        pass

    def table(self, *args: Any, **kwargs: Any) -> None:  # RunLogger.table's arguments
        pass

    def log_model(self, folder: str | Path) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def truncate_jsonl(path: str | Path, key: str, before: float) -> int:
    """Drop the rows of a JSONL log whose ``key`` is ``>= before`` (rows without ``key`` stay):
    on resume from the checkpoint of step ``before``, the rows a killed run logged after it go,
    so every step keeps exactly one row. The dropped rows are appended to ``<path>.discarded``;
    the rewrite is atomic. Returns how many rows were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    keep, drop = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                drop.append(line.rstrip("\n"))
                continue
            (drop if row.get(key, -math.inf) >= before else keep).append(line.rstrip("\n"))
    if drop:
        with open(path.with_name(path.name + ".discarded"), "a") as f:
            f.write("".join(f"{line}\n" for line in drop))
        atomic_write_text(path, "".join(f"{line}\n" for line in keep))
    return len(drop)
