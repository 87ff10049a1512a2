"""Kill a training run with SIGKILL, restart it with ``resume=true``, and compare it with an
uninterrupted run of the same config: every logged step and the final evaluation must agree.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/resume_demo.py [override ...]``
(e.g. ``algorithm=ppo``). Defaults: the default model and algorithm (GRPO) on fewer, smaller
steps (``DEMO_OVERRIDES``), one torch thread, W&B offline; the SFT base is the cached one
in ``$RLEXP_CACHE_DIR`` or ``.cache/rlexp`` (trained first if missing: minutes). Takes ~2-4 minutes on 2 CPU cores.

Both runs are ``rlexp-train`` subprocesses. The interrupted one is killed as soon as it has logged
a step *after* its newest checkpoint, so the restart must both reload the checkpoint and drop the
rows the killed process logged past it. tests/trainers/test_resume.py does the same at smoke sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_OVERRIDES = [
    "steps=12",
    "save_every=4",
    "eval_every=6",
    "algorithm.prompts_per_step=16",
    "algorithm.group_size=8",
    "eval.n_problems=64",
    "threads=1",
]
SHOWN = ["train/reward_mean", "loss/policy", "train/grad_norm", "adv/std"]
VOLATILE = ("time/", "train/tokens_per_s")  # wall-clock numbers differ between any two runs


def train_command(run_dir: Path, overrides: list[str]) -> list[str]:
    """``rlexp-train`` with its output in ``run_dir`` (this checkout's code, not an installed one)."""
    return [
        sys.executable,
        "-c",
        "from rlexp.train import main; main()",
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]


def train_env() -> dict[str, str]:
    """Each run its own W&B service (as from a fresh shell): with a parent's service (the
    ``WANDB_SERVICE`` it exports), a killed child's run id would stay "in use" there."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return env | {
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }


def run_to_end(run_dir: Path, overrides: list[str], timeout: float = 1800) -> None:
    out = subprocess.run(
        train_command(run_dir, overrides),
        env=train_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"rlexp-train failed ({out.returncode}):\n{out.stderr[-3000:]}")


def logged_steps(run_dir: Path) -> list[int]:
    """``train/step`` of the rows in metrics.jsonl so far (a line being written is skipped)."""
    steps = []
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                steps.append(json.loads(line)["train/step"])
            except (json.JSONDecodeError, KeyError):
                continue
    return steps


def newest_checkpoint_step(run_dir: Path) -> int | None:
    found = [int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step_*") if p.is_dir()]
    return max(found, default=None)


def kill_after_checkpoint(
    run_dir: Path,
    overrides: list[str] | None = None,
    timeout: float = 1800,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Start a run (``rlexp-train`` with ``overrides``, or ``command``, e.g. torchrun), SIGKILL
    its whole process group (torchrun and every rank at once) as soon as a row past its newest
    checkpoint is logged; says when. Its stderr goes to a file, so a chatty run never blocks."""
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            command or train_command(run_dir, overrides or []),
            env=env or train_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group, killed as one
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    stderr.seek(0)
                    raise RuntimeError(f"the run ended before it was killed:\n{stderr.read()}")
                ckpt = newest_checkpoint_step(run_dir)
                steps = logged_steps(run_dir)
                if ckpt is not None and steps and steps[-1] >= ckpt:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return {"checkpoint_step": ckpt, "last_logged_step": steps[-1]}
                time.sleep(0.02)
            raise TimeoutError("no checkpoint before the deadline")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def step_rows(run_dir: Path) -> dict[int, dict]:
    """One row of metrics per ``train/step``, without wall-clock metrics; a second row for a step
    is an error (a resume that repeated it)."""
    rows: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        step = row["train/step"]
        if step in rows:
            raise AssertionError(f"train/step {step} logged twice")
        rows[step] = {k: v for k, v in row.items() if not k.startswith(VOLATILE)}
    return rows


def max_difference(a: dict[int, dict], b: dict[int, dict]) -> float:
    """Largest absolute difference over every step and metric; inf if keys or steps differ."""
    if a.keys() != b.keys() or any(a[s].keys() != b[s].keys() for s in a):
        return float("inf")
    diffs = [
        0.0 if a[s][k] == b[s][k] else abs(float(a[s][k]) - float(b[s][k])) for s in a for k in a[s]
    ]
    return max(diffs, default=0.0)


def side_by_side(a: dict[int, dict], b: dict[int, dict], keys: list[str]) -> str:
    """A table: per step, each metric of the uninterrupted (a) and the resumed (b) run."""
    head = ["step"] + [f"{k} ({w})" for k in keys for w in ("full", "resumed")]
    lines = ["  ".join(f"{h:>24}" if i else f"{h:>4}" for i, h in enumerate(head))]
    for step in sorted(a):
        cells = [f"{step:>4}"]
        for k in keys:
            for rows in (a, b):
                v = rows.get(step, {}).get(k)
                cells.append(f"{v:>24.10f}" if isinstance(v, float) else f"{'-':>24}")
        lines.append("  ".join(cells))
    final = max(a)
    evals = [k for k in a[final] if k.startswith("eval/")]
    lines.append(f"final evaluation (train/step {final}):")
    for k in evals:
        lines.append(
            f"  {k:<28} full {a[final][k]:.10f}  resumed {b[final].get(k, float('nan')):.10f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="extra rlexp-train overrides")
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args()
    overrides = [*DEMO_OVERRIDES, *args.overrides]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="resume_demo_"))
    work.mkdir(parents=True, exist_ok=True)
    full, resumed = work / "uninterrupted", work / "interrupted"
    print(f"overrides: {' '.join(overrides)}\nrun dirs: {work}", flush=True)
    t0 = time.perf_counter()
    run_to_end(full, overrides)  # also trains the SFT base if it is not cached yet
    t1 = time.perf_counter()
    killed = kill_after_checkpoint(resumed, overrides)
    print(
        f"killed with SIGKILL after logging train/step {killed['last_logged_step']}; newest "
        f"checkpoint: step {killed['checkpoint_step']}",
        flush=True,
    )
    run_to_end(resumed, [*overrides, "resume=true"])
    t2 = time.perf_counter()
    a, b = step_rows(full), step_rows(resumed)
    print(side_by_side(a, b, SHOWN))
    diff = max_difference(a, b)
    print(f"max |full - resumed| over {len(a)} rows, all metrics but wall-clock ones: {diff:.3g}")
    print(f"time: uninterrupted {t1 - t0:.0f} s, killed + resumed {t2 - t1:.0f} s")
    sys.exit(0 if diff <= 1e-6 else 1)


if __name__ == "__main__":
    main()
