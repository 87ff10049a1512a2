"""``rlexp-train``: the Hydra entry point. Composes a run, validates it, builds the parts from
registries, and runs SFT (``algorithm=sft``) or online RL; returns the final held-out sampled
accuracy, the number a sweeper would optimise."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rlexp.config import register_configs
from rlexp.config.resume import check_resume_target, holds_run, resumed_config
from rlexp.config.validate import validate
from rlexp.data.tasks import build_task
from rlexp.models.load import resolve_device, resolve_dtype
from rlexp.runtime.checkpoint import (
    latest_checkpoint,
    latest_readable_checkpoint,
    load_trainer_state,
    remove_partial,
)
from rlexp.runtime.console import run_log
from rlexp.runtime.distributed import broadcast_object, init_distributed, is_main
from rlexp.runtime.errors import ConfigError, DataError, check
from rlexp.runtime.io import atomic_write_json, read_run_record
from rlexp.runtime.lock import OthersRunDir, RunDirHoldsRun, run_dir_lock
from rlexp.runtime.multirun import apply_threads, is_multirun, override_key, record_failure
from rlexp.runtime.paths import CONF_DIR
from rlexp.runtime.signals import Terminated, stop_signals_raise
from rlexp.runtime.tracking import NullLogger, RunLogger, truncate_jsonl
from rlexp.trainers import TRAINERS, RunContext

log = logging.getLogger(__name__)

register_configs()


def _hydra_names(cfg: DictConfig) -> tuple[str | None, str | None, list[str]]:
    """(run name, W&B group, overrides) from Hydra's runtime, when launched through Hydra."""
    if not HydraConfig.initialized():
        return cfg.logger.run_name, cfg.logger.group, []
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    name = cfg.logger.run_name or hc.job.override_dirname or "default"
    if hc.mode is not None and hc.mode.name == "MULTIRUN":
        # the swept values first, so that a long name cut at 128 characters still tells
        # members apart (a sweep file's grid is hydra.sweeper.params)
        swept = set((hc.sweeper.get("params") or {}).keys()) if "sweeper" in hc else set()
        excluded = set(hc.job.config.override_dirname.exclude_keys)
        first = [o for o in overrides if override_key(o) in swept]
        rest = [o for o in overrides if o not in first and override_key(o) not in excluded]
        name = cfg.logger.run_name or ",".join(first + rest) or "default"
        name = f"{hc.job.num}:{name}"
    name = name if len(name) <= 128 else name[:125] + "..."
    group = cfg.logger.group
    if group is None and hc.mode is not None and hc.mode.name == "MULTIRUN":
        group = str(Path(hc.sweep.dir)).replace("/", "_")
    return name, group, overrides


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def final_model_dir(run_dir: Path) -> Path:
    """The model a finished run ends with: ``final/`` (SFT), else its newest checkpoint's
    ``policy/`` (RL, DPO, RFT)."""
    final = run_dir / "final"
    return final if final.is_dir() else latest_checkpoint(run_dir) / "policy"


def _write_json(path: Path, data: dict) -> None:
    if not is_main():  # data parallel: rank 0 writes the run's files
        return
    atomic_write_json(path, data)


def run(cfg: DictConfig) -> float:
    """Run one composed config (the function tests call with Hydra's compose API)."""
    if cfg.resume:  # the run's own settings, from its config.yaml
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None
        cfg = resumed_config(cfg, Path(cfg.output_dir), overrides)
    validate(cfg)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):  # a second run in this directory stops here
        if not cfg.resume and holds_run(run_dir):  # its rows would mix with that run's
            status = read_run_record(run_dir / "run_info.json", on_corrupt="replace")
            raise RunDirHoldsRun(
                f"output_dir={run_dir} already holds a run (status "
                f"{status.get('status', 'unknown')}): resume=true continues it; choose another "
                "output_dir (or hydra.run.dir), or delete it to start over"
            )
        with run_log(run_dir):  # logging: the console, and <run_dir>/train.log
            return _train(cfg, run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> float:
    """``run`` once the config is valid and the run directory is this process's."""
    apply_threads(cfg.threads)  # threads=0: divided among a launcher's parallel jobs
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    device = init_distributed(resolve_device(cfg.device))  # torchrun: this rank's device
    dtype = resolve_dtype(cfg.model.get("dtype", "auto"), device)
    name, group, overrides = _hydra_names(cfg)

    if cfg.resume and is_main():
        remove_partial(run_dir)  # a kill during a save leaves a temporary folder, never loaded
    resume_from = broadcast_object(latest_readable_checkpoint(run_dir) if cfg.resume else None)
    if cfg.resume and resume_from is None and is_main():  # killed before its first checkpoint
        for log_file in ("metrics.jsonl", "eval_samples.jsonl"):
            truncate_jsonl(run_dir / log_file, "train/step", 0)
    if resume_from is not None:  # the loop counts up to steps: it could never stop
        done = int(load_trainer_state(resume_from)["step"])
        check(
            done <= cfg.steps,
            f"resume=true: the newest checkpoint {resume_from} is at step {done}, beyond "
            f"steps={cfg.steps}; raise steps to continue it, or start a new run",
        )
        log.info("resuming from %s (train/step %d)", resume_from, done)
    info_path = run_dir / "run_info.json"
    # the record is rewritten below; a corrupt one is replaced (the checkpoint keeps the W&B id)
    previous = read_run_record(info_path, on_corrupt="replace") if resume_from else {}
    if resume_from and not previous.get("wandb_id"):  # the checkpoint keeps it too
        previous["wandb_id"] = load_trainer_state(resume_from).get("wandb_id")
    if is_main():
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    info = {
        "overrides": overrides,
        "seed": cfg.seed,
        "sft_seed": cfg.sft.seed,
        "task_seed": cfg.task.get("seed"),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "resumed_from": str(resume_from) if resume_from else None,
        "status": "running",
    }
    info = previous | info
    _write_json(info_path, info)
    logger = (
        NullLogger()
        if not is_main()
        else RunLogger.from_config(
            run_dir,
            cfg.logger,
            job_type=cfg.algorithm.trainer,  # rl | sft | dpo | rft: W&B groups runs by stage
            config=OmegaConf.to_container(cfg, resolve=True),
            name=name,
            group=group,
            run_id=previous.get("wandb_id") or None,
        )
    )
    info["wandb_id"] = logger.run_id
    _write_json(info_path, info)  # now, so that a killed run's restart continues its W&B run
    try:
        task = build_task(cfg.task.name, **{k: v for k, v in cfg.task.items() if k != "name"})
        ctx = RunContext(cfg, task, device, dtype, logger, run_dir, resume_from, info)
        result = TRAINERS.get(cfg.algorithm.trainer).run(ctx)
    except BaseException as err:
        info |= {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        }
        try:
            _write_json(info_path, info)
        except OSError as write_err:  # e.g. the full disk that stopped the run: keep its error
            log.error("could not record the failure in %s: %s", info_path, write_err)
        logger.finish(exit_code=1)
        raise
    info |= {"status": "finished", "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "final": result}
    _write_json(info_path, info)
    if cfg.logger.get("log_model"):
        logger.log_model(final_model_dir(run_dir))
    logger.summary(result)
    logger.finish()
    return float(result.get("eval/sampled_accuracy", result.get("sft/sampled_accuracy", 0.0)))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    return main_guard(run_command, cfg)


def run_command(cfg: DictConfig) -> float:
    """rlexp-train's job: ``resume=true`` there names a run to continue, which must exist
    (``run`` alone, as rlexp-study calls it, also starts a run that is not there yet)."""
    if cfg.resume:
        sweep = Path(HydraConfig.get().sweep.dir) if is_multirun() else None
        check_resume_target(Path(cfg.output_dir), sweep)
    return run(cfg)


def main_guard(fn, cfg: DictConfig):
    """Call ``fn(cfg)``; a ConfigError becomes one clear line and exit code 2.

    A failure (an exception, a config error, a non-finite metric) is recorded in the run's
    run_info.json. In a multirun the member then returns NaN, so the other members still run.
    """
    try:
        with stop_signals_raise():
            return fn(cfg)
    except Terminated as err:  # recorded by run(); one line, the shell's code (143, 130)
        print(f"rlexp: {err}; the run is marked failed, resume=true continues it", file=sys.stderr)
        sys.exit(128 + err.signum)
    except Exception as err:
        if HydraConfig.initialized() and not isinstance(err, OthersRunDir):  # not another's run
            try:
                record_failure(Path(HydraConfig.get().runtime.output_dir), err, cfg)
            except OSError as write_err:  # a full disk: the run's own error is the one to see
                log.error("could not record the failure: %s", write_err)
        if is_multirun():
            if not isinstance(err, ConfigError):
                traceback.print_exc()
            print(f"rlexp: sweep member failed: {type(err).__name__}: {err}", file=sys.stderr)
            return float("nan")
        if isinstance(err, ConfigError):  # one clear line, not a traceback from deep inside
            kind = "data error" if isinstance(err, DataError) else "config error"
            print(f"rlexp: {kind}: {err}", file=sys.stderr)
            sys.exit(2)
        raise


if __name__ == "__main__":  # torchrun --nproc_per_node=N -m rlexp.train ...
    main()
