"""Paper figures: Pass@K / Maj@K curves, learning curves across seeds, the SFT curve.

Every function builds a matplotlib Figure (no pyplot state) in the paper style, saves PDF + PNG
with `save_figure` and returns the written paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from analysis.load import SFT_STEP, STEP
from analysis.style import (
    COLUMN_WIDTH,
    model_color,
    model_marker,
    paper_style,
    save_figure,
    series_styles,
)

LABELS = {
    "train/reward_mean": "mean reward",
    "train/accuracy": "train accuracy",
    "train/kl_ref": "KL to reference",
    "train/entropy": "entropy",
    "loss/policy": "policy loss",
    "eval/sampled_accuracy": "eval accuracy (sampled)",
    "eval/greedy_accuracy": "eval accuracy (greedy)",
    "eval/format_rate": "answer-format rate",
    "adv/var": "advantage variance",
    "adv/mc_var": "MC advantage variance",
    "adv/mc_corr": "corr(A, A$_{\\mathrm{MC}}$)",
    "adv/mc_mse": "MSE(A, A$_{\\mathrm{MC}}$)",
    "critic/explained_variance": "critic explained variance",
    "train/sampled_tokens": "sampled tokens",
    "advantage.lam": "GAE $\\lambda$",
    "algorithm.critic.lam": "critic $\\lambda$",
    "advantage.gamma": "$\\gamma$",
    "algorithm.group_size": "group size $G$",
    "algorithm.prompts_per_step": "prompts per step",
    "algorithm": "algorithm",
    "algorithm.name": "algorithm",
    "sft/heldout_loss": "held-out loss",
    "sft/greedy_accuracy": "greedy",
    "sft/sampled_accuracy": "sampled",
    STEP: "RL step",
    SFT_STEP: "SFT step",
}
WIDE = (6.0, 2.3)  # two panels side by side
NOISE_ABS = 1e-9  # a curve whose every value is below this in size is floating-point noise


def is_rate(metric: str) -> bool:
    """Accuracy-like metrics, bounded by [0, 1]."""
    bounded = metric.startswith(("eval/", "maj@", "pass@", "sft/greedy", "sft/sampled"))
    return (bounded or metric == "train/accuracy") and not metric.endswith("length_mean")


def is_float_noise(values) -> bool:
    """Every finite value is below ``NOISE_ABS`` in size (e.g. a KL of 1e-14 between a policy
    and its identical reference): rounding, not a signal worth a curve."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and float(np.abs(v).max()) < NOISE_ABS


def set_rate_ylim(ax: Axes, lo: float, hi: float) -> None:
    """An accuracy axis hugging [lo, hi] (the data and its bands), its ticks inside [0, 1]; the
    limits leave 0.01 past 0 or 1 so a curve at 1.0 is not drawn on the frame."""
    pad = max(0.01, 0.08 * (hi - lo))
    bottom, top = max(lo - pad, -0.01), min(hi + pad, 1.01)
    ax.set_ylim(bottom, top)
    ax.set_yticks(
        [t for t in ax.get_yticks() if max(bottom, 0.0) - 1e-9 <= t <= min(top, 1.0) + 1e-9]
    )
    ax.set_ylim(bottom, top)


def runs_note(counts: Sequence[int]) -> str:
    """How many runs (seeds) each line averages, and what its band is."""
    lo, hi = min(counts), max(counts)
    if hi <= 1:
        return "one run per line"
    n = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return f"mean of {n} seeds per line, band: 95% bootstrap CI over seeds"


def legend_layout(labels: Sequence[str], width: float, title: bool = False) -> tuple[int, float]:
    """(columns, height in inches) of a legend of `labels` under a figure `width` inches wide:
    as many columns as fit (8-pt text, ~0.055 in per character plus the handle), and the
    height its rows take, which the figure adds so the axes keep their size."""
    entry = 0.5 + 0.055 * max((len(str(x)) for x in labels), default=1)
    ncol = max(1, min(len(labels), int(width // entry)))
    rows = -(-len(labels) // ncol)
    return ncol, 0.17 * rows + 0.12 + (0.17 if title else 0.0)


def label(key: str) -> str:
    """Axis label for a metric key (the key itself when it has no nicer name)."""
    if key in LABELS:
        return LABELS[key]
    kind, _, k = key.partition("@")  # maj@16 / pass@16 from eval samples, eval/pass@8 logged
    if k.isdigit() and kind.rsplit("/", 1)[-1] in ("maj", "pass"):
        return f"{kind.rsplit('/', 1)[-1].capitalize()}@{k}"
    return key


def _log2_axis(ax: Axes, ks: Sequence[int]) -> None:
    """Log2 x-axis with integer tick labels at the Ks (powers of two when there are many)."""
    ks = sorted(int(k) for k in ks)
    ticks = ks if len(ks) <= 8 else [2**i for i in range(int(np.log2(ks[-1])) + 1)]
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(ks[0] / 1.3, ks[-1] * 1.3)


def _tight_ylim(lows: np.ndarray, highs: np.ndarray) -> tuple[float, float]:
    """Accuracy limits hugging the data (and the CI bands), never beyond [0, 1] plus a margin."""
    lo, hi = float(np.nanmin(lows)), float(np.nanmax(highs))
    pad = max(0.03, 0.08 * (hi - lo))
    return max(0.0, lo - pad), min(1.0, hi) + pad


def plot_passk_majk(
    summary_df: pd.DataFrame,
    path: str | Path,
    styles: dict[str, tuple[str, str]] | None = None,
    legend_title: str | None = None,
) -> list[Path]:
    """Maj@K (left) and Pass@K (right) vs K, one line + CI band per model.

    summary_df: `analysis.metrics.summarize` rows with a `model` column (models in order).
    styles: (colour, marker) per model, e.g. a sweep's settings (default: the model colours).
    """
    models = list(dict.fromkeys(summary_df["model"]))
    metrics = (("maj@K", "Maj@K"), ("pass@K", "Pass@K"))
    with paper_style():
        fig = Figure(figsize=WIDE, layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, (col, title) in zip(axes, metrics, strict=True):
            for i, model in enumerate(models):
                d = summary_df[summary_df["model"] == model].sort_values("K")
                color, marker = (styles or {}).get(
                    model, (model_color(model, i), model_marker(model, i))
                )
                band = d[f"{col}_low"], d[f"{col}_high"]
                ax.fill_between(d["K"], *band, color=color, alpha=0.18, linewidth=0)
                ax.plot(d["K"], d[col], color=color, marker=marker, label=model)
            _log2_axis(ax, summary_df["K"].unique())
            ax.set(title=title, xlabel="$K$")
        lows = summary_df[[f"{c}_low" for c, _ in metrics]].to_numpy()
        highs = summary_df[[f"{c}_high" for c, _ in metrics]].to_numpy()
        axes[0].set(ylabel="accuracy", ylim=_tight_ylim(lows, highs))
        handles, labels = axes[0].get_legend_handles_labels()
        ncol = len(models) if len(models) <= 6 else 4
        fig.legend(handles, labels, loc="outside upper center", ncol=ncol, title=legend_title)
        return save_figure(fig, path)


def seed_band(
    values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs and its percentile-bootstrap CI (runs resampled), per step.

    values: [S, R] (steps x runs), NaN where a run has no value at a step.
    Returns (mean, low, high), each [S]; low = high = mean with a single run.
    """
    v = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(v)
    mean = np.nansum(v, axis=1) / np.maximum(present.sum(axis=1), 1)
    mean[~present.any(axis=1)] = np.nan
    if v.shape[1] < 2:
        return mean, mean.copy(), mean.copy()
    picks = np.random.default_rng(seed).integers(0, v.shape[1], size=(n_boot, v.shape[1]))
    low, high = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    rows = np.flatnonzero(present.any(axis=1))
    block = max(1, (1 << 22) // (n_boot * v.shape[1]))
    filled = np.nan_to_num(v)
    for lo in range(0, len(rows), block):
        r = rows[lo : lo + block]
        with np.errstate(invalid="ignore"):  # NaN where a replicate drew no run with a value
            boot = filled[r][:, picks].sum(axis=2) / present[r][:, picks].sum(axis=2)
        low[r], high[r] = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2], axis=1)
    return mean, low, high


def _ordered(values: pd.Series) -> list:
    """Distinct values in order: a categorical's own order, else sorted."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna())
        return [c for c in values.cat.categories if c in present]
    uniq = values.dropna().unique().tolist()
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def plot_learning_curves(
    df: pd.DataFrame,
    metric: str,
    hue: str | None,
    path: str | Path,
    step: str = STEP,
    unit: str = "run",
    smooth: int = 1,
    n_boot: int = 1000,
    styles: dict[str, tuple[str, str]] | None = None,
    facet: str | None = None,
    note: str | None = None,
) -> list[Path]:
    """Mean and 95% bootstrap CI across runs (seeds) of `metric` vs `step`, a line per hue value.

    df: tidy, one row per run per step (`load_sweep`); without a `unit` column it is one run.
    smooth > 1 averages each run over a trailing window of that many logged points first.
    styles: (colour, marker) per hue value, so a setting looks the same in every figure.
    facet: a column splitting the runs into panels (e.g. the algorithm when the lines are G).
    note: said under the title with the number of seeds per line (e.g. the evaluation set).
    Steps get integer ticks, accuracies an axis within [0, 1]; a metric that is
    floating-point noise everywhere (`is_float_noise`) gets no figure (returns []).
    """
    df = df if unit in df else df.assign(**{unit: "run"})
    data = df.dropna(subset=[step, metric]).sort_values(step)
    if data.empty:
        raise ValueError(f"no values of {metric!r} to plot")
    if is_float_noise(data[metric]):
        print(f"{metric}: every value is below {NOISE_ABS:g} (floating-point noise): no figure")
        return []
    if smooth > 1:
        roll = data.groupby(unit)[metric].transform(lambda s: s.rolling(smooth, 1).mean())
        data = data.assign(**{metric: roll})
    groups = _ordered(data[hue]) if hue else [None]
    styles = styles or series_styles([str(g) for g in groups])
    panels = _ordered(data[facet]) if facet else [None]
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    width = COLUMN_WIDTH if facet is None else min(6.9, 2.3 * ncols)
    title = None if hue in (None, "setting") else hue
    ncol, extra = legend_layout([str(g) for g in groups], width, bool(title))
    height = (2.0 if facet is None else 1.8 * nrows + 0.2) + (extra if hue is not None else 0.0)
    with paper_style():
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
        handles: dict[str, object] = {}
        counts, lows, highs = [], [], []
        for i, (ax, panel) in enumerate(zip(axes, panels, strict=False)):
            rows = data if facet is None else data[data[facet] == panel]
            for group in groups:
                part = rows if hue is None else rows[rows[hue] == group]
                if part.empty:
                    continue
                wide = part.pivot_table(index=step, columns=unit, values=metric, aggfunc="last")
                mean, low, high = seed_band(wide.to_numpy(), n_boot)
                counts.append(wide.shape[1])
                lows.append(np.nanmin(low))
                highs.append(np.nanmax(high))
                color, marker = styles[str(group)]
                ax.fill_between(wide.index, low, high, color=color, alpha=0.2, linewidth=0)
                dense = len(wide) > 30  # many logged steps: thin lines, no markers
                line = {"linewidth": 1.0} if dense else {"marker": marker}
                (handles[str(group)],) = ax.plot(wide.index, mean, color=color, **line)
            if facet is not None:
                ax.set_title(str(panel), fontsize=9)
            if step in (STEP, SFT_STEP):  # steps are whole numbers: no tick at 2.5
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i >= len(panels) - ncols:  # bottom row
                ax.set_xlabel(label(step))
            if i % ncols == 0:
                ax.set_ylabel(label(metric))
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        if is_rate(metric) and lows:
            set_rate_ylim(axes[0], float(np.nanmin(lows)), float(np.nanmax(highs)))  # shared y
        caption = runs_note(counts) + (f"; {note}" if note else "")
        fig.suptitle(caption, fontsize=7, color="0.3")
        if hue is not None:  # below the axes: never covers a curve
            names = [str(g) for g in groups if str(g) in handles]
            fig.legend(
                [handles[n] for n in names],
                names,
                title=title,
                loc="outside lower center",
                ncol=ncol,
            )
        return save_figure(fig, path)


def plot_sft_curve(sft_df: pd.DataFrame, path: str | Path, plateau: float = 0.2) -> list[Path]:
    """Held-out loss (left) and greedy / sampled accuracy (right) vs SFT step.

    The last `plateau` fraction of the steps is shaded and the final loss drawn dashed, so a
    converged base shows a flat curve inside the shaded window.
    """
    loss = sft_df.dropna(subset=[SFT_STEP, "sft/heldout_loss"]).sort_values(SFT_STEP)
    if loss.empty:
        raise ValueError("sft_metrics has no sft/heldout_loss values")
    accs = [c for c in ("sft/greedy_accuracy", "sft/sampled_accuracy") if sft_df.get(c) is not None]
    accs = [c for c in accs if sft_df[c].notna().any()]
    first, last = loss[SFT_STEP].iloc[0], loss[SFT_STEP].iloc[-1]
    start = last - plateau * (last - first)
    with paper_style():
        fig = Figure(figsize=WIDE if accs else (COLUMN_WIDTH, 2.3), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, 2 if accs else 1))
        for ax in axes:
            ax.axvspan(start, last, color="0.9", linewidth=0, zorder=0)
        ax = axes[0]
        marker = "o" if len(loss) <= 20 else None
        ax.plot(loss[SFT_STEP], loss["sft/heldout_loss"], color=model_color("SFT"), marker=marker)
        ax.axhline(loss["sft/heldout_loss"].iloc[-1], color="0.4", linestyle="--", linewidth=0.8)
        floor = loss.get("sft/heldout_loss_floor")
        if floor is not None and floor.notna().any() and floor.max() > 0:
            ax.axhline(floor.max(), color="#D55E00", linestyle=":", linewidth=1.2)
            ax.text(
                first,
                floor.max(),
                " floor: exact imitation",
                color="#D55E00",
                fontsize=7,
                va="bottom",
            )
            ax.set_yscale("log")
        ax.set(xlabel=label(SFT_STEP), ylabel=label("sft/heldout_loss"))
        note = f" last {plateau:.0%}"
        ax.text(start, 1.0, note, transform=ax.get_xaxis_transform(), va="top", fontsize=7)
        if accs:
            for col, color, marker in zip(accs, ("#0072B2", "#009E73"), "os", strict=False):
                d = sft_df.dropna(subset=[SFT_STEP, col]).sort_values(SFT_STEP)
                ax2 = axes[1]
                ax2.plot(d[SFT_STEP], d[col], color=color, marker=marker, label=label(col))
            ax2.set(xlabel=label(SFT_STEP), ylabel="held-out accuracy", ylim=(0, 1.02))
            ax2.legend(loc="best")
        return save_figure(fig, path)


def plot_tiers(summaries: dict[str, pd.DataFrame], path: str | Path) -> list[Path]:
    """DeepSeekMath's Figure 7 layout: a row per tier (task difficulty), Maj@K (left) and
    Pass@K (right) of every model against K on a log2 axis, with CI bands; each tier keeps its
    own K range (the hard tier's Pass@K out to its largest K)."""
    tiers = list(summaries)
    metrics = (("maj@K", "Maj@K"), ("pass@K", "Pass@K"))
    with paper_style():
        fig = Figure(figsize=(WIDE[0], 2.0 * len(tiers) + 0.4), layout="constrained")
        axes = fig.subplots(len(tiers), 2, squeeze=False)
        handles: dict[str, object] = {}
        for row, tier in enumerate(tiers):
            summary = summaries[tier]
            models = list(dict.fromkeys(summary["model"]))
            lows = summary[[f"{c}_low" for c, _ in metrics]].to_numpy()
            highs = summary[[f"{c}_high" for c, _ in metrics]].to_numpy()
            for ax, (col, title) in zip(axes[row], metrics, strict=True):
                for i, model in enumerate(models):
                    d = summary[summary["model"] == model].sort_values("K")
                    color, marker = model_color(model, i), model_marker(model, i)
                    band = d[f"{col}_low"], d[f"{col}_high"]
                    ax.fill_between(d["K"], *band, color=color, alpha=0.18, linewidth=0)
                    (handles[model],) = ax.plot(d["K"], d[col], color=color, marker=marker)
                _log2_axis(ax, summary["K"].unique())
                ax.set(title=f"{tier}: {title}", ylim=_tight_ylim(lows, highs))
                if row == len(tiers) - 1:
                    ax.set_xlabel("$K$")
            axes[row][0].set_ylabel("accuracy")
        fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=4)
        return save_figure(fig, path)


def plot_sharpening(
    success: dict[str, np.ndarray], distinct: dict[str, np.ndarray], path
) -> list[Path]:
    """Sharpening per model: the histogram of per-problem success rates c/n (left; RL that
    sharpens moves mass to 1 and leaves the problems at 0 there) and of distinct answers per
    problem (right), as shares of the problems."""
    models = list(success)
    bins = np.linspace(0, 1, 11)
    with paper_style():
        fig = Figure(figsize=WIDE, layout="constrained")
        left, right = fig.subplots(1, 2)
        top = max((int(v.max()) for v in distinct.values() if len(v)), default=1)
        answer_bins = np.arange(0.5, top + 1.5)
        for i, model in enumerate(models):
            color = model_color(model, i)
            for ax, values, edges in (
                (left, success[model], bins),
                (right, distinct[model], answer_bins),
            ):
                weights = np.full(len(values), 1 / max(len(values), 1))
                ax.hist(
                    values,
                    bins=edges,
                    weights=weights,
                    histtype="step",
                    color=color,
                    linewidth=1.4,
                    label=model,
                )
        left.set(xlabel="per-problem success rate $c/n$", ylabel="share of problems", xlim=(0, 1))
        right.set(xlabel="distinct answers per problem", ylabel="share of problems")
        handles, labels = left.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncol=len(models))
        return save_figure(fig, path)
