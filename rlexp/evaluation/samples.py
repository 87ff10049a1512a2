"""Many samples per held-out problem from one checkpoint, scored by the task's verifier: one
Parquet row per sample (``problem_id, sample_idx, completion, answer, gold, correct, length``)
and a summary (``rlexp-eval``, the study's evaluations).

Problems are processed in chunks, each written as its own Parquet part and seeded by its index,
so an interrupted evaluation resumes where it stopped and gives the same rows it would have. The
parts are kept with a fingerprint of what made them (``parts/fingerprint.json``: the checkpoint,
its weight files' sizes and modification times, the sampling settings and the task): a restart
whose fingerprint differs is refused, never mixed with the old parts.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from rlexp.data.tasks import Task, build_task
from rlexp.data.tasks.sources import dataset_digest
from rlexp.evaluation.heldout import generate_scored
from rlexp.models.load import load_policy, resolve_device, resolve_dtype
from rlexp.runtime.errors import ConfigError, check
from rlexp.runtime.hub import local_path
from rlexp.runtime.io import atomic_write_json
from rlexp.runtime.multirun import override_key
from rlexp.runtime.tracking import RunLogger

_log = logging.getLogger(__name__)

# The job's keys that decide what a part holds (device and batch_size only decide how fast).
FINGERPRINT_KEYS = (
    "split", "n_problems", "n_samples", "temperature", "top_p", "greedy", "seed",
    "max_new_tokens", "chunk_problems", "dtype",
)  # fmt: skip
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")
COLUMNS = ["problem_id", "sample_idx", "completion", "answer", "gold", "correct", "length"]
LOGP = "logp"  # summed log-probs of the sampled tokens (sharpening: the token entropy)


def score_chunk(
    task: Task,
    problems,
    texts: list[str],
    lengths: list[int],
    n: int,
    logps: list[float] | None = None,
) -> pd.DataFrame:
    rows = []
    for i, (text, length) in enumerate(zip(texts, lengths, strict=True)):
        p = problems[i // n]
        rows.append(
            (
                p.id,
                i % n,
                text,
                task.extract_answer(text),
                task.normalize_answer(p.answer),
                task.is_correct(text, p),
                int(length),
            )
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df if logps is None else df.assign(**{LOGP: logps})


def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} bytes, mtime {stat.st_mtime_ns}"


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """What the parts of this job depend on, as flat JSON values: the checkpoint (resolved path
    and each weight file's size and modification time), the sampling settings and the task
    (with the size and time of its data files)."""
    ckpt = Path(cfg.checkpoint).expanduser().resolve()
    out: dict[str, Any] = {"checkpoint": str(ckpt)}
    files = sorted({p for pattern in WEIGHT_FILES for p in ckpt.glob(pattern)})
    for path in files or [ckpt / "config.json"]:
        out[f"checkpoint:{path.name}"] = _file_stamp(path)
    out |= {key: cfg.get(key) for key in FINGERPRINT_KEYS}
    if cfg.get("chat_template", "auto") != "auto":  # a key of its own only where it is set
        out["chat_template"] = cfg.chat_template
    task = OmegaConf.to_container(cfg.task, resolve=True)
    for key, value in task.items():
        out[f"task.{key}"] = value
        if key.endswith("_file") and value and Path(value).is_file():
            out[f"task.{key}:contents"] = _file_stamp(Path(value))
    if task.get("dataset_name"):  # the data set's files (or in-memory fingerprint) too
        out["task.dataset_name:contents"] = dataset_digest(task["dataset_name"])
    return json.loads(json.dumps(out))  # as it reads back (tuples as lists, ...)


def check_job(cfg: DictConfig) -> None:
    """Values that would crash after the model loads, or silently mean something else
    (``n_problems=0`` took the whole split)."""
    check(
        cfg.n_problems is None or cfg.n_problems >= 1,
        f"n_problems={cfg.n_problems} must be >= 1 (null: the whole split)",
    )
    for key in ("n_samples", "batch_size", "chunk_problems", "max_new_tokens"):
        check(cfg[key] >= 1, f"{key}={cfg[key]} must be >= 1")
    check(cfg.temperature > 0, f"temperature={cfg.temperature} must be > 0")
    check(0 < cfg.top_p <= 1, f"top_p={cfg.top_p} must lie in (0, 1]")
    check(cfg.split in ("test", "train"), f"split={cfg.split}: use test or train")


def check_fingerprint(cfg: DictConfig, out_dir: Path) -> None:
    """Before any model is loaded: parts already in ``out_dir`` must come from this same job
    (else ConfigError naming the directory and the fields that differ); a directory without
    parts gets this job's fingerprint."""
    parts = out_dir / "parts"
    path = parts / "fingerprint.json"
    now = fingerprint(cfg)
    if any(parts.glob("part_*.parquet")):
        if not path.is_file():
            raise ConfigError(
                f"output_dir={out_dir} holds evaluation parts without a fingerprint (an older "
                "rlexp-eval): delete the directory or choose another output_dir"
            )
        saved = json.loads(path.read_text())
        differ = [k for k in dict.fromkeys([*saved, *now]) if saved.get(k) != now.get(k)]
        if differ:
            listed = ", ".join(f"{k} ({saved.get(k)} -> {now.get(k)})" for k in differ)
            raise ConfigError(
                f"output_dir={out_dir} holds parts of another evaluation: {listed}; delete the "
                "directory or choose another output_dir"
            )
        return
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, now)


def evaluate_checkpoint(cfg: DictConfig, task: Task, out_dir: Path) -> pd.DataFrame:
    """Sample, score and write every chunk not yet on disk; return all rows."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    template = cfg.get("chat_template", "auto")
    model, tokenizer = load_policy(cfg.checkpoint, device, dtype, chat_template=template)
    problems = task.test if cfg.split == "test" else task.train
    problems = problems[: cfg.n_problems] if cfg.n_problems else problems
    n = 1 if cfg.greedy else cfg.n_samples
    parts = out_dir / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(problems), cfg.chunk_problems):
        part = parts / f"part_{start // cfg.chunk_problems:05d}.parquet"
        if part.exists():
            continue
        chunk = problems[start : start + cfg.chunk_problems]
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + start)
        texts, lengths, logps = generate_scored(
            model,
            tokenizer,
            [p.prompt for p in chunk for _ in range(n)],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            greedy=cfg.greedy,
            batch_size=cfg.batch_size,
            generator=gen,
        )
        tmp = part.with_suffix(".tmp")
        score_chunk(task, chunk, texts, lengths, n, logps).to_parquet(tmp, index=False)
        tmp.replace(part)  # a part is either whole or absent
    return pd.concat(
        [pd.read_parquet(p) for p in sorted(parts.glob("part_*.parquet"))], ignore_index=True
    )


def run_of_checkpoint(checkpoint: str | Path) -> Path | None:
    """The training run a model folder was saved by (``<run>/final``,
    ``<run>/checkpoints/step_N/policy``): the nearest of its parents holding a run's
    ``config.yaml`` and ``run_info.json``; None for a folder from elsewhere."""
    for parent in list(Path(checkpoint).resolve().parents)[:3]:
        if (parent / "config.yaml").is_file() and (parent / "run_info.json").is_file():
            return parent
    return None


def job_from_run(
    cfg: DictConfig, default_max_new_tokens: int, overrides: list[str] | None = None
) -> DictConfig:
    """The evaluation job with the settings its run was trained with. The run is ``run_dir``, or
    the one that saved ``checkpoint``; its ``config.yaml`` gives the task, the budget
    (``rollout.max_new_tokens``) and ``model.chat_template``, and only the keys on the command
    line (``overrides``, Hydra's ``key=value`` strings) replace them, logged in one line. The
    checkpoint defaults to the run's final policy (``final/``, else its newest
    ``checkpoints/step_N/policy``)."""
    job = cfg.copy()
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"run_dir={cfg.run_dir} holds no config.yaml (not a training run)")
    elif cfg.checkpoint is None:
        raise ConfigError("rlexp-eval needs run_dir=<training run> or checkpoint=<model folder>")
    else:
        run_dir = run_of_checkpoint(cfg.checkpoint)
    if run_dir is None:  # a model from elsewhere: the command line's task, the schema's budget
        if cfg.max_new_tokens is None:
            job.max_new_tokens = default_max_new_tokens
        return job
    given = _given_keys(overrides or [])  # and values set away from the schema's (the API's)
    given |= {"max_new_tokens"} if cfg.max_new_tokens is not None else set()
    given |= {"chat_template"} if cfg.get("chat_template", "auto") != "auto" else set()
    run = OmegaConf.load(run_dir / "config.yaml")
    if "task" not in given:  # task=<option> on the command line replaces the run's task
        job.task = run.task
        for key in sorted(k.split(".", 1)[1] for k in given if k.startswith("task.")):
            OmegaConf.update(job.task, key, OmegaConf.select(cfg.task, key), force_add=True)
    if "max_new_tokens" not in given:
        job.max_new_tokens = run.rollout.max_new_tokens
    if "chat_template" not in given:
        job.chat_template = OmegaConf.select(run, "model.chat_template", default="auto")
    changed = sorted(
        k for k in given if k.split(".")[0] in ("task", "max_new_tokens", "chat_template")
    )
    _log.info(
        "rlexp-eval: task, max_new_tokens, chat_template from %s%s",
        run_dir / "config.yaml",
        f"; the command line overrides {', '.join(changed)}" if changed else "",
    )
    if cfg.checkpoint is None:
        steps = sorted((run_dir / "checkpoints").glob("step_*/policy"))
        final = run_dir / "final"
        if not final.is_dir() and not steps:
            raise ConfigError(f"run_dir={cfg.run_dir} holds no final/ and no checkpoints/")
        job.checkpoint = str(final if final.is_dir() else steps[-1])
    return job


def _given_keys(overrides: list[str]) -> set[str]:
    """The config keys Hydra overrides name (``task=gsm8k`` -> task, ``+task.x=1`` -> task.x)."""
    return {override_key(o) for o in overrides if "=" in o}


def run_eval(cfg: DictConfig) -> dict:
    """Sample, score and summarise (``summary.json``); with ``logger.name=wandb`` a W&B run of
    job type ``eval`` gets the summary and the samples of the first ``log_samples`` problems."""
    check_job(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.copy()
    cfg.checkpoint = str(local_path(str(cfg.checkpoint), "checkpoint"))  # a Hub id: its snapshot
    if not (Path(cfg.checkpoint) / "config.json").exists():
        raise FileNotFoundError(
            f"checkpoint={cfg.checkpoint} holds no config.json (not a saved model)"
        )
    check_fingerprint(cfg, out_dir)  # a restart reuses parts of this same job only
    t0 = time.perf_counter()
    task = build_task(cfg.task.name, **{k: v for k, v in cfg.task.items() if k != "name"})
    df = evaluate_checkpoint(cfg, task, out_dir)
    df.to_parquet(out_dir / "samples.parquet", index=False)
    per_problem = df.groupby("problem_id")["correct"]
    summary = {
        "model": cfg.label,
        "seed": cfg.seed,
        "checkpoint": str(cfg.checkpoint),
        "run_dir": cfg.get("run_dir"),
        "max_new_tokens": cfg.max_new_tokens,
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "n_problems": int(df["problem_id"].nunique()),
        "n_samples": 1 if cfg.greedy else cfg.n_samples,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "greedy": cfg.greedy,
        "accuracy": float(df["correct"].mean()),
        "pass@n": float(per_problem.any().mean()),
        "answer_rate": float(df["answer"].notna().mean()),
        "length_mean": float(df["length"].mean()),
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_json(out_dir / "summary.json", summary)
    _log_to_wandb(cfg, summary, df, out_dir)
    return summary


def _log_to_wandb(cfg: DictConfig, summary: dict, df: pd.DataFrame, out_dir: Path) -> None:
    logger_cfg = cfg.get("logger")
    if logger_cfg is None or logger_cfg.name == "none":
        return
    config = OmegaConf.to_container(cfg, resolve=True)
    name = logger_cfg.run_name or f"eval:{cfg.label}"
    logger = RunLogger.from_config(out_dir, logger_cfg, "eval", config, name=name)
    first = df["problem_id"].drop_duplicates().head(cfg.get("log_samples", 4))
    shown = df[df["problem_id"].isin(first)]
    columns = ["problem_id", "sample_idx", "completion", "answer", "gold", "correct"]
    logger.table("eval/samples", shown[columns].to_dict("records"), {}, None)  # in samples.parquet
    logger.summary({k: v for k, v in summary.items() if isinstance(v, (int, float))})
    logger.finish()
