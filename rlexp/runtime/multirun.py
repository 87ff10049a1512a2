"""Running as a sweep member: CPU threads per launcher, failed members, the sweep summary.

- ``torch_threads``: jobs × threads ≤ cores when ``threads=0`` (auto) and the launcher runs
  several jobs on one machine (joblib ``n_jobs``) or gives each job its own CPUs (SLURM
  ``cpus_per_task``, Ray ``remote.num_cpus``).
- ``record_failure``: a member that failed before ``rlexp.train.run`` wrote its run_info.json (a
  config error, an interpolation that cannot resolve) still leaves one, with status ``failed``.
- ``SweepSummary``: a Hydra callback that, at the end of a multirun, writes
  ``<sweep dir>/sweep_summary.json`` (one entry per member: overrides, status, error, final
  accuracy) and prints it as a table.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rlexp.runtime.errors import DataError
from rlexp.runtime.io import atomic_write_json, read_run_record

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
ACCURACY = "eval/sampled_accuracy"


def override_key(override: str) -> str:
    """The config key a Hydra override names: ``+a.b=1`` -> ``a.b``, ``task=gsm8k`` -> ``task``,
    ``~x`` -> ``x``, ``hydra/launcher@p=joblib`` -> ``hydra/launcher``."""
    return override.split("=", 1)[0].lstrip("+~").split("@")[0]


def is_multirun() -> bool:
    """True inside a job launched by ``rlexp-train -m`` (any launcher)."""
    if not HydraConfig.initialized():
        return False
    mode = HydraConfig.get().mode
    return mode is not None and mode.name == "MULTIRUN"


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask or cgroup share, not the whole host)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _joblib_jobs(n_jobs: int, cores: int) -> int:
    """Concurrent joblib workers: n_jobs > 0 as given; -1 = all cores, -2 = all but one, ..."""
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def launcher_threads(launcher: DictConfig | dict, cores: int) -> int | None:
    """Torch threads per job that the launcher config implies, or None when it says nothing.

    Joblib runs ``n_jobs`` jobs side by side on this machine: ``max(1, cores // n_jobs)`` each.
    SLURM (submitit) and Ray give each job ``cpus_per_task`` / ``remote.num_cpus`` CPUs.
    """
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        return max(1, cores // _joblib_jobs(int(launcher.get("n_jobs") or -1), cores))
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    if "ray" in target:
        remote = (launcher.get("ray") or {}).get("remote") or {}
        if remote.get("num_cpus"):
            return max(1, int(remote["num_cpus"]))
    return None


def torch_threads(threads: int) -> int | None:
    """The torch thread count for a run: ``threads`` if > 0, else what the launcher implies
    (None: leave torch's default)."""
    if threads > 0:
        return threads
    if not is_multirun():
        return None
    return launcher_threads(HydraConfig.get().launcher, cpu_count())


def apply_threads(threads: int) -> int | None:
    """Set torch's intra-op threads (and the OpenMP/MKL variables that child processes and
    not-yet-initialised pools read); returns the count set, or None for torch's default."""
    import torch

    n = torch_threads(threads)
    if n is not None:
        torch.set_num_threads(n)
        for var in THREAD_ENV:
            os.environ[var] = str(n)
    return n


def record_failure(run_dir: Path, err: BaseException, cfg: DictConfig | None = None) -> None:
    """Mark ``run_dir/run_info.json`` failed with ``err`` unless the run already recorded it;
    save ``cfg`` as config.yaml when the run failed before writing one (resolved if it can be)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg is not None and not (run_dir / "config.yaml").exists():
        try:
            OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        except Exception:  # an interpolation that cannot resolve may be the error itself
            OmegaConf.save(cfg, run_dir / "config.yaml")
    path = run_dir / "run_info.json"
    info = read_run_record(path, on_corrupt="replace")
    if info.get("status") == "failed":
        return
    info |= {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(err)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if HydraConfig.initialized():
        info.setdefault("overrides", list(HydraConfig.get().overrides.task))
    atomic_write_json(path, info)


# ------------------------------------------------------------------------------ summary
def summarize_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    """One entry per member directory of a multirun (those Hydra wrote ``.hydra/`` into)."""
    members = sorted(
        (p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/overrides.yaml")),
        key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name),
    )
    rows = []
    for member in members:
        overrides = OmegaConf.to_container(OmegaConf.load(member / ".hydra/overrides.yaml"))
        try:
            info = read_run_record(member / "run_info.json")
        except DataError as err:  # listed as such; the other members are still summarised
            info = {"status": "unreadable", "error": str(err)}
        final = info.get("final") or {}
        rows.append(
            {
                "member": member.name,
                "overrides": [o for o in overrides if not o.startswith("+sweep=")],
                "status": info.get("status", "missing"),  # missing: killed before run started
                "error": info.get("error"),
                "final_accuracy": final.get(ACCURACY),
                "run_dir": str(member),
            }
        )
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The summary as a plain-text table (overrides shared by all members left out), failed
    members' errors underneath."""
    shared = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    head = ["member", "status", "final acc", "overrides"]
    body = [
        [
            r["member"],
            r["status"],
            "-" if r["final_accuracy"] is None else f"{r['final_accuracy']:.3f}",
            " ".join(o for o in r["overrides"] if o not in shared),
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in (head, *body)
    ]
    failed = [r for r in rows if r["status"] != "finished"]
    for r in failed:
        lines.append(f"member {r['member']} {r['status']}: {r['error'] or 'no run_info.json'}")
    lines.append(f"{len(rows) - len(failed)} of {len(rows)} members finished")
    return "\n".join(lines)


class SweepSummary(Callback):
    """``hydra.callbacks.sweep_summary``: the table of members at the end of every multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = summarize_sweep(sweep_dir)
        atomic_write_json(sweep_dir / "sweep_summary.json", rows)
        print(f"sweep summary ({sweep_dir / 'sweep_summary.json'}):\n{format_summary(rows)}")
        if rows and not any(r["status"] == "finished" for r in rows):
            print(f"rlexp: every member of the sweep failed ({sweep_dir})", file=sys.stderr)
            sys.exit(1)
