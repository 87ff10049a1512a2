"""LaTeX (booktabs) tables of a sweep: the summary per setting and the scaling fits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.plots import label
from analysis.scaling import PARAMS, TOO_FEW_RUNS


def value_text(value: Any) -> str:
    """A knob value as written on a command line: 0.9, not 0.900000; 1.0 as 1."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _latex(text: str) -> str:
    """Escape LaTeX specials outside $...$ math."""
    parts = str(text).split("$")
    for i in range(0, len(parts), 2):
        parts[i] = "".join("\\" + c if c in "&%#_{}" else c for c in parts[i])
    return "$".join(parts)


# Column names of the summary table (shorter than the figures' axis labels).
HEADERS = {
    "eval/sampled_accuracy": "accuracy",
    "eval/greedy_accuracy": "greedy acc.",
    "adv/var": "Var($A$)",
    "adv/mc_corr": "corr($A$, $A_{\\mathrm{MC}}$)",
    "adv/mc_mse": "MSE($A$, $A_{\\mathrm{MC}}$)",
}


def with_ci(mean: float, low: float, high: float) -> str:
    """LaTeX "$0.532^{+0.020}_{-0.028}$": the mean and how far its CI reaches above and below
    (the mean alone when the CI has no width, e.g. one run); 3 decimals, and a power of ten
    outside [0.01, 1000): "$4.20^{+0.60}_{-1.00} \\times 10^{5}$"."""
    if not np.isfinite(mean):
        return "--"
    exp = 0 if mean == 0 or 1e-2 <= abs(mean) < 1e3 else int(np.floor(np.log10(abs(mean))))
    digits = 3 if exp == 0 else 2
    m, lo, hi = (v / 10.0**exp for v in (mean, low, high))
    body = f"{m:.{digits}f}"
    if np.isfinite(lo) and np.isfinite(hi) and hi - lo > 1e-12 * max(1.0, abs(m)):
        body += f"^{{+{hi - m:.{digits}f}}}_{{-{m - lo:.{digits}f}}}"
    return f"${body} \\times 10^{{{exp}}}$" if exp else f"${body}$"


def _tabular(
    header: list[str], rows: list[list[str]], n_left: int, notes: Sequence[str] = ()
) -> str:
    """Booktabs tabular; ``notes`` become full-width lines under the bottom rule."""
    spec = "l" * n_left + "r" * (len(header) - n_left)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(header) + r" \\", "\\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += ["\\bottomrule"]
    lines += [f"\\multicolumn{{{len(header)}}}{{l}}{{\\footnotesize {n}}} \\\\" for n in notes]
    return "\n".join([*lines, "\\end{tabular}", ""])


def summary_latex(
    summary: pd.DataFrame, knobs: Sequence[str], metrics: Sequence[str] | None = None
) -> str:
    """Booktabs table: a row per setting (its knob values, runs, failed), the mean and its 95%
    CI (`with_ci`) per metric (default: every metric of the summary)."""
    knobs = [k for k in knobs if k != "seed"] or ["setting"]
    metrics = list(metrics or dict.fromkeys(summary["metric"]))
    names = [HEADERS.get(m) or _latex(label(m)) for m in metrics]
    header = [_latex(label(k)) for k in knobs] + ["runs", "failed"] + names
    rows = []
    for _, group in summary.groupby("setting", observed=True, sort=True):
        cells = [_latex(value_text(group[k].iloc[0])) for k in knobs]
        cells += [str(int(group["runs"].max())), str(int(group["failed"].iloc[0]))]
        by_metric = group.set_index("metric")
        for m in metrics:
            r = by_metric.loc[m] if m in by_metric.index else None
            ok = r is not None and r["runs"] > 0
            cells.append(with_ci(r["mean"], r["low"], r["high"]) if ok else "--")
        rows.append(cells)
    return _tabular(header, rows, len(knobs))


def scaling_latex(table: pd.DataFrame, knobs: Sequence[str]) -> str:
    """Booktabs table of A, B, C_mid and R0 with their CIs, one row per fitted setting; a
    setting without an interval (``has_ci`` False) is marked "$^\\dagger$ too few runs for an
    interval" under the table."""
    knobs = [k for k in knobs if k != "seed"] or ["setting"]
    header = [_latex(label(k)) for k in knobs] + [
        "runs",
        "$A$",
        "$B$",
        "$C_{\\mathrm{mid}}$",
        "$R_0$",
    ]
    rows = []
    dagger = False
    for _, r in table.dropna(subset=["A"]).iterrows():
        no_ci = not pd.isna(r.get("has_ci")) and not r["has_ci"]
        dagger |= no_ci
        runs = str(int(r["runs"])) + ("$^\\dagger$" if no_ci else "")
        cells = [_latex(value_text(r[k])) for k in knobs] + [runs]
        cells += [with_ci(r[p], r[p + "_low"], r[p + "_high"]) for p in PARAMS]
        rows.append(cells)
    notes = [f"$^\\dagger$ {TOO_FEW_RUNS}"] if dagger else []
    return _tabular(header, rows, len(knobs), notes)
