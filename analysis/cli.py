"""rlexp-analyze PATH: tables and figures for an eval, run, sweep or study directory.

    rlexp-analyze multirun/2025-01-01/12-00-00 --metric eval/sampled_accuracy train/kl_ref
    rlexp-analyze studies/deepseekmath --out paper/figures --ks 1,2,4,8,16,32,64
    rlexp-analyze wandb:my-team/rlexp/multirun_2025-01-01_12-00-00 --out paper/lambda

Outputs go to PATH/analysis unless --out is given (a W&B source: ./analysis-<project>[-<group>]);
every written file is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.load import detect_kind, load_eval, load_run
from analysis.plots import plot_learning_curves, plot_passk_majk, plot_sft_curve
from analysis.study import (
    analyze_study,
    default_ks,
    markdown_table,
    study_per_problem,
    summarize_models,
)
from analysis.sweep import analyze_sweep, analyze_wandb, eval_notes, note_for

MAIN_METRICS = [
    "train/reward_mean",
    "train/accuracy",
    "eval/sampled_accuracy",
    "eval/greedy_accuracy",
    "train/kl_ref",
]


def slug(metric: str) -> str:
    """A metric key as a file name: "eval/pass@8" -> "eval_pass_at_8"."""
    return metric.replace("/", "_").replace("@", "_at_")


def _present(df: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if m in df and df[m].notna().any()]


# ------------------------------------------------------------------------------------ evals
def analyze_eval(
    eval_dir: Path, out: Path, ks: Sequence[int] | None = None, n_boot: int = 1000
) -> list[Path]:
    """passk_majk.csv (printed too) and the passk_majk figure of one eval directory."""
    samples, summary = load_eval(eval_dir)
    ks = ks or default_ks(int(samples.groupby("problem_id").size().min()))
    table = summarize_models(study_per_problem([(samples, summary)], ks), ks, n_boot=n_boot)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "passk_majk.csv", index=False)
    print(markdown_table(table))
    return [out / "passk_majk.csv", *plot_passk_majk(table, out / "passk_majk")]


# ------------------------------------------------------------------------------------ runs
def analyze_run(
    run_dir: Path, out: Path, metrics: Sequence[str] | None = None, smooth: int = 1
) -> list[Path]:
    """Learning curves of the main metrics, the SFT curve, and any eval/<name>/ inside."""
    run = load_run(run_dir)
    info = run["info"]
    error = f" ({info['error']})" if info.get("error") else ""
    print(f"run {run_dir}: status {info.get('status', 'unknown')}{error}")
    files, notes = [], eval_notes([run], None)
    for metric in _present(run["metrics"], metrics or MAIN_METRICS):
        path = out / f"curve_{slug(metric)}"
        note = note_for(metric, notes)
        files += plot_learning_curves(run["metrics"], metric, None, path, smooth=smooth, note=note)
    if "sft/heldout_loss" in run["sft_metrics"]:
        files += plot_sft_curve(run["sft_metrics"], out / "sft_curve")
    for eval_dir in sorted(p.parent for p in run_dir.glob("eval/*/samples.parquet")):
        files += analyze_eval(eval_dir, out / "eval" / eval_dir.name)
    return files


# ------------------------------------------------------------------------------------ main
def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ks wants integers like 1,2,4, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"--ks wants integers >= 1, got {text!r}")
    return ks


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rlexp-analyze", description="Tables and figures for a run, sweep, eval or study."
    )
    parser.add_argument(
        "path",
        type=Path,
        help="an eval, run, multirun sweep or study directory, or wandb:ENTITY/PROJECT[/GROUP]",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: PATH/analysis)")
    parser.add_argument(
        "--metric", dest="metrics", nargs="+", help="metrics to plot (runs, sweeps)"
    )
    parser.add_argument("--ks", type=_ks, help="K values, e.g. 1,2,4,8 (evals, studies)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average window for curves")
    return parser.parse_args(argv)


def build(kind: str, args: argparse.Namespace, out: Path) -> list[Path]:
    """Writes the outputs of one source kind; returns the written paths."""
    if kind == "eval":
        return analyze_eval(args.path, out, args.ks, args.n_boot)
    if kind == "run":
        return analyze_run(args.path, out, args.metrics, args.smooth)
    if kind == "sweep":
        return analyze_sweep(args.path, out, args.metrics, args.smooth, args.n_boot)
    if kind == "wandb":
        entity, project, group = wandb_source(str(args.path))
        return analyze_wandb(
            entity, project, group, out, None, args.metrics, args.smooth, args.n_boot
        )
    result = analyze_study(args.path, out, ks=args.ks, n_boot=args.n_boot)
    files = result["files"].values()
    return [p for f in files for p in (f if isinstance(f, list) else [f])]


def wandb_source(text: str) -> tuple[str, str, str | None] | None:
    """ "wandb:ENTITY/PROJECT[/GROUP]" -> (entity, project, group); None for a plain path."""
    if not text.startswith("wandb:"):
        return None
    parts = text[len("wandb:") :].strip("/").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"a W&B source is wandb:ENTITY/PROJECT[/GROUP], got {text!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of rlexp-analyze; 0 on success, 2 for a path that is not analysable."""
    args = parse_args(argv)
    try:
        source = wandb_source(str(args.path))
        kind = "wandb" if source else detect_kind(args.path)
    except ValueError as err:
        print(f"rlexp-analyze: error: {err}", file=sys.stderr)
        return 2
    if source:  # W&B runs: no directory to write into
        out = args.out or Path("analysis-" + "-".join(p for p in source[1:] if p))
        print(f"{args.path}: W&B runs")
    else:
        out = args.out or args.path / "analysis"
        print(f"{args.path}: {kind} directory")
    try:
        files = build(kind, args, out)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"rlexp-analyze: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    for path in files:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
