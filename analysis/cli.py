"""rlexp-analyze PATH: tables and figures for an eval, run, sweep or study directory.

    rlexp-analyze multirun/2025-01-01/12-00-00 --metric eval/sampled_accuracy train/kl_ref
    rlexp-analyze studies/deepseekmath --out paper/figures --ks 1,2,4,8,16,32,64

Outputs go to PATH/analysis unless --out is given; every written file is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import STEP, detect_kind, load_eval, load_run, load_sweep, sweep_members
from analysis.metrics import bootstrap_ci
from analysis.plots import plot_learning_curves, plot_passk_majk, plot_sft_curve
from analysis.study import (
    analyze_study,
    default_ks,
    markdown_table,
    study_per_problem,
    summarize_models,
)

MAIN_METRICS = [
    "train/reward_mean",
    "train/accuracy",
    "eval/sampled_accuracy",
    "eval/greedy_accuracy",
    "train/kl_ref",
]
FINAL_METRICS = ["eval/sampled_accuracy", "eval/greedy_accuracy"]


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
    files = []
    for metric in _present(run["metrics"], metrics or MAIN_METRICS):
        path = out / f"curve_{slug(metric)}"
        files += plot_learning_curves(run["metrics"], metric, None, path, smooth=smooth)
    if "sft/heldout_loss" in run["sft_metrics"]:
        files += plot_sft_curve(run["sft_metrics"], out / "sft_curve")
    for eval_dir in sorted(p.parent for p in run_dir.glob("eval/*/samples.parquet")):
        files += analyze_eval(eval_dir, out / "eval" / eval_dir.name)
    return files


# ------------------------------------------------------------------------------------ sweeps
def with_setting(df: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """Adds a `setting` column, "algorithm=ppo, lam=0.9" over the knobs (seeds excluded).

    Knobs are named by their last dotted part, so legends stay short.
    """
    knobs = [k for k in knobs if k != "seed"]
    if not knobs:
        return df.assign(setting="all runs")
    names = {k: k.rsplit(".", 1)[-1] for k in knobs}
    labels = (
        df[knobs]
        .astype(str)
        .apply(lambda r: ", ".join(f"{names[k]}={r[k]}" for k in knobs), axis=1)
    )
    return df.assign(setting=labels)


def sweep_summary(
    df: pd.DataFrame, metric: str, knobs: Sequence[str], n_boot: int = 1000
) -> pd.DataFrame:
    """Final `metric` per setting over its non-failed runs: runs, failed, mean, 95% CI (runs).

    df: `with_setting(load_sweep(...))`; one row per setting with its knob values.
    """
    knobs = [k for k in knobs if k != "seed"]
    rows = []
    for setting, group in df.groupby("setting", sort=True):
        failed = group["status"] == "failed"
        ok = group[~failed].dropna(subset=[metric]).sort_values(STEP)
        finals = ok.groupby("run")[metric].last().to_numpy(dtype=float)
        mean, low, high = bootstrap_ci(finals, n_boot) if len(finals) else (np.nan,) * 3
        row = {"setting": setting, **group[knobs].iloc[0].to_dict(), "metric": metric}
        row |= {"runs": len(finals), "failed": group.loc[failed, "run"].nunique()}
        rows.append(row | {"mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def summary_latex(summary: pd.DataFrame) -> str:
    """Booktabs table: a row per setting (its knob values), "mean [low, high]" per metric."""
    knobs = list(summary.columns[1 : summary.columns.get_loc("metric")]) or ["setting"]
    values = summary[["mean", "low", "high"]].to_numpy()
    cells = summary.assign(value=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in values])
    cells = cells.astype({k: str for k in knobs})  # knob values as written: 0.9, not 0.900000
    index = [*knobs, "runs", "failed"]
    wide = cells.pivot_table(index=index, columns="metric", values="value", aggfunc="first")
    return wide.reset_index().to_latex(index=False, escape=True)


def analyze_sweep(
    sweep_dir: Path,
    out: Path,
    metrics: Sequence[str] | None = None,
    smooth: int = 1,
    n_boot: int = 1000,
) -> list[Path]:
    """sweep_metrics.csv, curves per swept setting, sweep_summary.csv/.tex, failed_members.csv."""
    df = load_sweep(sweep_dir)
    knobs = df.attrs["knobs"]
    df = with_setting(df, knobs)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "sweep_metrics.csv"]
    df.to_csv(files[0], index=False)
    finished = df[df["status"] != "failed"]
    for metric in _present(finished, metrics or MAIN_METRICS):
        path = out / f"curve_{slug(metric)}"
        files += plot_learning_curves(finished, metric, "setting", path, smooth=smooth)
    finals = [sweep_summary(df, m, knobs, n_boot) for m in _present(df, FINAL_METRICS)]
    if finals:
        summary = pd.concat(finals, ignore_index=True)
        summary.to_csv(out / "sweep_summary.csv", index=False)
        (out / "sweep_summary.tex").write_text(summary_latex(summary))
        files += [out / "sweep_summary.csv", out / "sweep_summary.tex"]
        print(summary.to_string(index=False, float_format="%.3f"))
    members = sweep_members(sweep_dir)
    bad = members[members["status"] != "finished"]
    bad.to_csv(out / "failed_members.csv", index=False)
    files.append(out / "failed_members.csv")
    for row in bad.itertuples():
        note = "left out of curves and summary" if row.status == "failed" else "kept"
        print(f"member {row.run}: {row.status}, {note}: {row.error or ''}")
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
    parser.add_argument("path", type=Path, help="an eval, run, multirun sweep or study directory")
    parser.add_argument("--out", type=Path, help="output directory (default: PATH/analysis)")
    parser.add_argument(
        "--metric", dest="metrics", nargs="+", help="metrics to plot (runs, sweeps)"
    )
    parser.add_argument("--ks", type=_ks, help="K values, e.g. 1,2,4,8 (evals, studies)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average window for curves")
    return parser.parse_args(argv)


def build(kind: str, args: argparse.Namespace, out: Path) -> list[Path]:
    """Writes the outputs of one directory kind; returns the written paths."""
    if kind == "eval":
        return analyze_eval(args.path, out, args.ks, args.n_boot)
    if kind == "run":
        return analyze_run(args.path, out, args.metrics, args.smooth)
    if kind == "sweep":
        return analyze_sweep(args.path, out, args.metrics, args.smooth, args.n_boot)
    result = analyze_study(args.path, out, ks=args.ks, n_boot=args.n_boot)
    files = result["files"].values()
    return [p for f in files for p in (f if isinstance(f, list) else [f])]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of rlexp-analyze; 0 on success, 2 for a path that is not analysable."""
    args = parse_args(argv)
    try:
        kind = detect_kind(args.path)
    except ValueError as err:
        print(f"rlexp-analyze: error: {err}", file=sys.stderr)
        return 2
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
