"""``rlexp-study``: the DeepSeekMath Maj@K vs Pass@K study (theory.md §7) in one command.

SFT base (cached) → GRPO for each seed → ``rlexp-eval`` of the base and of every RL policy with
n samples per held-out problem → ``analysis.study``: CSV, LaTeX, figure and report. Every stage
that already finished in the study directory is reused, so a rerun resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from analysis.study import analyze_study
from rlexp.config.schema import EvalJobConfig
from rlexp.evaluation.samples import run_eval
from rlexp.runtime.checkpoint import latest_checkpoint
from rlexp.runtime.io import atomic_write_json
from rlexp.runtime.paths import CONF_DIR
from rlexp.train import main_guard, run


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
        },
    )


def run_study(cfg: DictConfig) -> dict:
    study_dir = Path(cfg.output_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, study_dir / "config.yaml", resolve=True)
    base = None
    for seed in cfg.study.seeds:
        run_dir = study_dir / "runs" / f"seed_{seed}"
        info_path = run_dir / "run_info.json"
        if not (info_path.exists() and json.loads(info_path.read_text())["status"] == "finished"):
            run_cfg = cfg.copy()
            OmegaConf.update(run_cfg, "seed", seed)
            OmegaConf.update(run_cfg, "output_dir", str(run_dir))
            OmegaConf.update(run_cfg, "resume", True)
            run(run_cfg)
        info = json.loads(info_path.read_text())
        base = info["base_checkpoint"]
        rl_eval = study_dir / "eval" / f"rl_seed_{seed}"
        if not (rl_eval / "summary.json").exists():
            policy = latest_checkpoint(run_dir) / "policy"
            print(run_eval(_eval_cfg(cfg, str(policy), "RL", seed, rl_eval)))
    sft_eval = study_dir / "eval" / "sft"
    if not (sft_eval / "summary.json").exists():
        print(run_eval(_eval_cfg(cfg, base, "SFT", cfg.study.seeds[0], sft_eval)))
    study = {"ks": list(cfg.study.ks), "seeds": list(cfg.study.seeds), "base_checkpoint": base}
    atomic_write_json(study_dir / "study.json", study)
    result = analyze_study(study_dir)
    print((study_dir / "report.md").read_text())
    return result


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    main_guard(run_study, cfg)
