"""``rlexp-study``: the DeepSeekMath Maj@K vs Pass@K study (theory.md §7) in one command.

Per tier (``study.tiers``; none: one tier, the run's own task): SFT base (cached) → GRPO for each
seed → ``rlexp-eval`` of the base and of every RL policy with n samples per held-out problem →
``analysis.study``: CSV, LaTeX, figure and report; with several tiers, a figure and a report
across them (DeepSeekMath's Figure 7 layout). Every stage that already finished in the study
directory is reused, so a rerun resumes; a rerun with different settings is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from analysis.study import analyze_study, analyze_tiers
from rlexp.config.schema import EvalJobConfig
from rlexp.config.validate import validate
from rlexp.evaluation.samples import run_eval
from rlexp.runtime.checkpoint import latest_checkpoint
from rlexp.runtime.errors import ConfigError
from rlexp.runtime.io import atomic_write_json, read_run_record
from rlexp.runtime.paths import CONF_DIR
from rlexp.runtime.tracking import RunLogger
from rlexp.train import main_guard, run

_log = logging.getLogger(__name__)

# Settings that may change between a study and its rerun: where and how fast, not what.
_RERUN_FREE = ("output_dir", "resume", "threads", "device", "logger", "cache_dir")


def _eval_cfg(cfg: DictConfig, checkpoint: str, label: str, seed: int, out: Path) -> DictConfig:
    s = cfg.study
    job = OmegaConf.structured(EvalJobConfig)
    job.task = OmegaConf.to_container(cfg.task, resolve=True)
    return OmegaConf.merge(
        job,
        {
            "checkpoint": checkpoint,
            "label": label,
            "seed": seed,
            "split": "test",
            "n_problems": s.n_problems,
            "n_samples": s.n_samples,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "greedy": False,
            "max_new_tokens": cfg.rollout.max_new_tokens,
            "batch_size": s.batch_size,
            "output_dir": str(out),
            "device": cfg.device,
            "dtype": cfg.model.get("dtype", "auto"),
            "chat_template": cfg.model.get("chat_template", "auto"),
            "logger": OmegaConf.to_container(cfg.logger, resolve=True)
            | {"run_name": f"eval:{label}:seed_{seed}"},
        },
    )


def tier_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """``{tier: config}``: the study's config with each ``study.tiers.<name>`` patch merged in
    (the patch is any part of the run config, e.g. ``{task: {carry_slip: 0.3}}``); an empty
    ``study.tiers`` is one unnamed tier, the config itself."""
    tiers = cfg.study.get("tiers") or {}
    if not tiers:
        return {"": cfg}
    base = cfg.copy()
    OmegaConf.update(base, "study.tiers", {}, merge=False)
    out = {}
    for name, patch in tiers.items():
        if not str(name).isidentifier():
            raise ConfigError(f"study.tiers: tier name {name!r} must be a plain identifier")
        try:
            tier = OmegaConf.merge(base, patch or {})
        except Exception as err:  # a key the schema does not have, a value of the wrong type
            raise ConfigError(f"study.tiers.{name}: {err}".splitlines()[0]) from err
        OmegaConf.update(tier, "output_dir", str(Path(cfg.output_dir) / str(name)))
        out[str(name)] = tier
    return out


def _settings(cfg: DictConfig) -> dict[str, Any]:
    settings = OmegaConf.to_container(cfg, resolve=True)
    for key in _RERUN_FREE:
        settings.pop(key, None)
    return settings


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def check_same_study(cfg: DictConfig, study_dir: Path) -> None:
    """A study directory holds one study: a rerun with other settings (``study.*``, the task,
    the algorithm, ...) would mix their stages, so it is refused, naming the changed keys."""
    saved = study_dir / "config.yaml"
    if not saved.exists():
        return
    old = _settings(OmegaConf.load(saved))
    changed = _differences(old, _settings(cfg))
    if changed:
        raise ConfigError(
            f"{study_dir} holds a study with other settings ({', '.join(changed[:8])}"
            f"{', ...' if len(changed) > 8 else ''} changed): rerun it unchanged to resume, or "
            "choose another output_dir"
        )


def run_tier(cfg: DictConfig) -> dict:
    """One tier: SFT base → RL per seed → evaluation of both → ``analyze_study``."""
    study_dir = Path(cfg.output_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    base = None
    for seed in cfg.study.seeds:
        run_dir = study_dir / "runs" / f"seed_{seed}"
        info_path = run_dir / "run_info.json"
        if read_run_record(info_path).get("status") != "finished":
            run_cfg = cfg.copy()
            OmegaConf.update(run_cfg, "seed", seed)
            OmegaConf.update(run_cfg, "output_dir", str(run_dir))
            OmegaConf.update(run_cfg, "resume", True)
            run(run_cfg)
        info = read_run_record(info_path)
        base = info["base_checkpoint"]
        rl_eval = study_dir / "eval" / f"rl_seed_{seed}"
        if not (rl_eval / "summary.json").exists():
            policy = latest_checkpoint(run_dir) / "policy"
            _log.info("%s", run_eval(_eval_cfg(cfg, str(policy), "RL", seed, rl_eval)))
    sft_eval = study_dir / "eval" / "sft"
    if not (sft_eval / "summary.json").exists():
        _log.info("%s", run_eval(_eval_cfg(cfg, base, "SFT", cfg.study.seeds[0], sft_eval)))
    study = {"ks": list(cfg.study.ks), "seeds": list(cfg.study.seeds), "base_checkpoint": base}
    atomic_write_json(study_dir / "study.json", study)
    result = analyze_study(study_dir)
    _log.info("%s", (study_dir / "report.md").read_text())
    return result


def run_study(cfg: DictConfig) -> dict:
    study_dir = Path(cfg.output_dir)
    tiers = tier_configs(cfg)
    for tier in tiers.values():  # every tier's config is checked before any compute
        validate(tier)
    check_same_study(cfg, study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, study_dir / "config.yaml", resolve=True)
    if list(tiers) == [""]:
        result = run_tier(cfg)
        log_study(cfg, study_dir, [""])
        return result
    results = {name: run_tier(tier) for name, tier in tiers.items()}
    atomic_write_json(study_dir / "study.json", {"tiers": list(tiers)})
    combined = analyze_tiers(study_dir, list(tiers))
    _log.info("%s", (study_dir / "report.md").read_text())
    log_study(cfg, study_dir, list(tiers))
    return combined | {"tiers": results}


def log_study(cfg: DictConfig, study_dir: Path, tiers: list[str]) -> None:
    """The study's result as a W&B run of job type ``study`` (its seed runs are ``rl``, its
    evaluations ``eval``): each tier's ``passk_majk.csv`` and ``paired_differences.csv`` as
    tables, the report's text in the summary."""
    if cfg.logger.name == "none":
        return
    config = OmegaConf.to_container(cfg, resolve=True)
    name = cfg.logger.run_name or f"study:{study_dir.name}"
    logger = RunLogger.from_config(study_dir, cfg.logger, "study", config, name=name)
    for tier in tiers:
        for name in ("passk_majk", "paired_differences"):
            path = study_dir / tier / f"{name}.csv"
            if path.is_file():
                key = "/".join(p for p in ("study", tier, name) if p)
                rows = pd.read_csv(path).to_dict("records")
                logger.table(key, rows, {}, None)
    logger.summary({"report": (study_dir / "report.md").read_text()})
    logger.finish()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    main_guard(run_study, cfg)
