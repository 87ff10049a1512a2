"""Does a fresh clone reproduce the README's headline numbers? Clone, `make train`, compare.

    python benchmarks/reproduce_readme.py                   # clone HEAD into a temp dir, fresh
                                                            # .venv and SFT cache, `make train`
    python benchmarks/reproduce_readme.py --reuse-venv      # the same with this checkout's .venv
    python benchmarks/reproduce_readme.py --run-dir D --log L   # compare a finished run instead

The README's table "Numbers a fresh clone reproduces" lists each figure with its key; this script
measures each key from the run (`sft_metrics.jsonl` for the SFT base, the run's printed
`<metric>: base x -> final y` lines for accuracies), prints README value, measured value,
difference and tolerance, and exits 1 when any figure is outside its tolerance. The tolerances
are stated in TOLERANCES: a run is deterministic on one machine, so on the machine that wrote
the README every difference is 0; on another machine the SFT base's numerics differ, and the
tolerances allow for the sampling noise of the evaluation (200 problems × 8 samples: standard
error ≈ 0.012 on a sampled accuracy) and for a converged base's spread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE_TITLE = "Numbers a fresh clone reproduces"
# absolute tolerance per key (a wall time is reported, never compared)
TOLERANCES = {
    "sft/heldout_loss": 0.003,
    "sft/floor_ratio": 0.15,
    "eval/sampled_accuracy base": 0.05,
    "eval/sampled_accuracy final": 0.05,
    "eval/greedy_accuracy base": 0.05,
    "eval/greedy_accuracy final": 0.05,
}
BASE_FINAL = re.compile(r"^(eval/\w+): base ([\d.]+|nan) -> final ([\d.]+|nan)\s*$")


def readme_figures(text: str) -> dict[str, float]:
    """``{key: value}`` from the README table under ``TABLE_TITLE``: rows ``| `key` | value | ...``."""
    start = text.find(TABLE_TITLE)
    if start < 0:
        raise SystemExit(f"README.md has no table titled {TABLE_TITLE!r}")
    figures: dict[str, float] = {}
    for line in text[start:].splitlines()[1:]:
        if figures and not line.startswith("|"):
            break  # the end of the table
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and cells[0].endswith("`"):
            figures[cells[0].strip("`")] = float(cells[1])
    if not figures:
        raise SystemExit(f"the table {TABLE_TITLE!r} in README.md has no `key` | value rows")
    return figures


def measured_figures(run_dir: Path, log: str) -> dict[str, float]:
    """The same keys measured from a finished ``make train`` run and its console output."""
    rows = [json.loads(line) for line in (run_dir / "sft_metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    out = {
        "sft/heldout_loss": last["sft/heldout_loss"],
        "sft/floor_ratio": last["sft/heldout_loss"] / last["sft/heldout_loss_floor"],
    }
    for line in log.splitlines():
        match = BASE_FINAL.match(line.strip())
        if match:
            key, base, final = match.groups()
            out[f"{key} base"], out[f"{key} final"] = float(base), float(final)
    return out


def fresh_make_train(reuse_venv: bool) -> tuple[Path, str, float]:
    """Clone HEAD into a temporary directory and run ``make train`` there with an empty SFT cache
    of its own (never the user's cache, which may hold a base trained elsewhere)."""
    work = Path(tempfile.mkdtemp(prefix="rlexp-reproduce-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"fresh clone of {commit} in {clone} (console output: {work / 'make_train.log'})",
        flush=True,
    )
    if reuse_venv:
        os.symlink(ROOT / ".venv", clone / ".venv")
        print("(reusing this checkout's .venv: installed packages are not fresh)", flush=True)
    run_dir = work / "run"
    env = os.environ | {"WANDB_MODE": "offline"}
    start = time.perf_counter()
    proc = subprocess.run(
        ["make", "train", f"ARGS=hydra.run.dir={run_dir} cache_dir={work / 'cache'}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    (work / "make_train.log").write_text(proc.stdout + proc.stderr)  # for --run-dir/--log later
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"make train failed (exit {proc.returncode}) in {clone}")
    return run_dir, proc.stdout, seconds


def compare(readme: dict[str, float], measured: dict[str, float]) -> bool:
    """Print one row per README figure; True when every figure is within its tolerance."""
    ok = True
    print(f"{'figure':32} {'README':>9} {'measured':>9} {'diff':>8} {'tol':>6}  verdict")
    for key, quoted in readme.items():
        tol = TOLERANCES.get(key)
        if key not in measured or tol is None:
            print(f"{key:32} {quoted:9.4f} {'-':>9}  not measured by this script")
            ok = False
            continue
        diff = measured[key] - quoted
        verdict = "reproduced" if abs(diff) <= tol else "DIFFERS"
        ok &= verdict == "reproduced"
        print(f"{key:32} {quoted:9.4f} {measured[key]:9.4f} {diff:+8.4f} {tol:6.3f}  {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse-venv", action="store_true", help="symlink this .venv")
    parser.add_argument("--run-dir", type=Path, help="a finished `make train` run directory")
    parser.add_argument("--log", type=Path, help="that run's console output")
    args = parser.parse_args()
    if args.run_dir:
        if not args.log:
            parser.error("--run-dir needs --log (the run's console output)")
        run_dir, log, seconds = args.run_dir, args.log.read_text(), None
    else:
        run_dir, log, seconds = fresh_make_train(args.reuse_venv)
    measured = measured_figures(run_dir, log)
    print("measured: " + ", ".join(f"{k} = {v:.4f}" for k, v in measured.items()))
    ok = compare(readme_figures((ROOT / "README.md").read_text()), measured)
    if seconds is not None:
        print(f"make train (install, SFT, RL, evaluations): {seconds / 60:.1f} min")
        shutil.rmtree(run_dir.parent / "cache", ignore_errors=True)  # the fresh SFT base
    print("every figure reproduced" if ok else "some figures differ from the README")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
