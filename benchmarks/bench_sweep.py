"""Sequential vs parallel local sweeps: the same small multirun, timed both ways.

Run on a quiet machine (nothing else using the CPU):
    .venv/bin/python benchmarks/bench_sweep.py [--members 4] [--steps 10]
    .venv/bin/python benchmarks/bench_sweep.py --tiny      # a smoke test of the script, seconds

- sequential: the basic launcher, one member at a time, threads=2;
- parallel: ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, threads=1 per member.

Both sweeps are ``rlexp-train -m seed=0,1,...`` of default GRPO with a short run and a small
held-out evaluation; the SFT base is trained (or found in the cache) by a warm-up run first, so
neither side pays for it. Prints both wall times and the ratio sequential / parallel (> 1: the
parallel sweep is faster). On 2 cores, two 1-thread jobs beat one 2-thread job because the
small matrices of the tiny model do not keep two threads busy, and Python, sampling and
logging are single-threaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/
from tests.conftest import TINY as SMOKE_OVERRIDES  # noqa: E402

RLEXP_TRAIN = str(Path(sys.executable).parent / "rlexp-train")
TINY = [  # the test suite's sizes: the --tiny smoke test
    *SMOKE_OVERRIDES,
    "algorithm.prompts_per_step=4",
    "algorithm.minibatch_size=16",
]


def run_sweep(args: list[str], threads: int, sweep_dir: Path) -> float:
    """Wall seconds of one ``rlexp-train -m`` call; raises if any member did not finish."""
    env = os.environ | {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": str(threads),
    }
    cmd = [RLEXP_TRAIN, "-m", *args, f"threads={threads}", f"hydra.sweep.dir={sweep_dir}"]
    tic = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - tic
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    failed = [r for r in summary if r["status"] != "finished"]
    if failed:
        raise RuntimeError(f"{len(failed)} members failed, e.g. {failed[0]['error']}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4, help="sweep members (seeds)")
    parser.add_argument("--steps", type=int, default=10, help="RL steps per member")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--out", type=Path, default=None, help="keep the sweeps here")
    opts = parser.parse_args()

    out = opts.out or Path(tempfile.mkdtemp(prefix="bench_sweep-"))
    sizes = TINY if opts.tiny else ["eval.n_problems=100", "eval.n_samples=4"]
    cache = [f"cache_dir={out / 'cache'}"] if opts.tiny else []
    seeds = "seed=" + ",".join(str(s) for s in range(opts.members))

    def sized(steps: int) -> list[str]:
        return [*sizes, *cache, f"steps={steps}", f"eval_every={steps}", f"save_every={steps}"]

    common = sized(opts.steps)
    print(f"warm-up (SFT base into the cache), sweeps under {out}", flush=True)
    run_sweep([*sized(1), "seed=0"], 2, out / "warmup")
    sequential = run_sweep([*common, seeds], 2, out / "sequential")
    print(f"sequential (basic launcher, threads=2): {sequential:7.1f} s", flush=True)
    parallel = run_sweep(
        [*common, seeds, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 1, out / "parallel"
    )
    print(f"parallel (joblib n_jobs=2, threads=1):  {parallel:7.1f} s")
    print(
        f"{opts.members} members × {opts.steps} steps: sequential / parallel = "
        f"{sequential / parallel:.2f}"
    )


if __name__ == "__main__":
    main()
