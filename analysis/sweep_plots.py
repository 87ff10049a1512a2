"""Sweep figures: final metrics against the swept knob, and compute-scaling fits.

Same conventions as `analysis.plots`: a matplotlib Figure in the paper style, saved as PDF + PNG,
the written paths returned. A setting keeps its colour and marker across every figure of a
sweep (``styles``, from `analysis.style.series_styles` over the sweep's ordered settings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    EngFormatter,
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

from analysis.metrics import bootstrap_ci
from analysis.plots import _ordered, is_rate, label, legend_layout, set_rate_ylim
from analysis.style import COLUMN_WIDTH, TEXT_WIDTH, paper_style, save_figure, series_styles

Styles = Mapping[str, tuple[str, str]]
LINE_GREY = "0.45"


# ------------------------------------------------------------------------------------ knob axis
def knob_positions(values: pd.Series) -> tuple[dict, str]:
    """x position of each knob value and the axis kind: "linear", "log2" (powers of two, e.g.
    group sizes), "ordinal" (numbers so unevenly spaced, like λ ∈ {0, .5, .9, .95, 1}, that
    they are drawn evenly spaced) or "category" (algorithm names)."""
    uniq = _ordered(values)
    if not all(pd.api.types.is_number(v) and not isinstance(v, bool) for v in uniq):
        return {v: float(i) for i, v in enumerate(uniq)}, "category"
    xs = np.array([float(v) for v in uniq])
    powers = np.all(xs > 0) and all(v.is_integer() and (int(v) & (int(v) - 1)) == 0 for v in xs)
    if powers and len(xs) > 2 and xs.max() / xs.min() >= 4:
        return {v: float(x) for v, x in zip(uniq, xs, strict=True)}, "log2"
    span = xs.max() - xs.min() if len(xs) > 1 else 1.0
    if len(xs) > 2 and np.diff(np.sort(xs)).min() < 0.08 * span:
        return {v: float(i) for i, v in enumerate(uniq)}, "ordinal"
    return {v: float(x) for v, x in zip(uniq, xs, strict=True)}, "linear"


def _format_axis(ax: Axes, positions: dict, kind: str) -> None:
    ticks = list(positions.values())
    if kind == "log2":
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(min(ticks) / 1.4, max(ticks) * 1.4)
    elif kind in ("ordinal", "category"):
        ax.set_xlim(-0.5, len(ticks) - 0.5)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    if kind in ("ordinal", "category"):
        names = [f"{v:g}" if kind == "ordinal" else str(v) for v in positions]
        rotate = kind == "category" and sum(len(n) for n in names) > 28
        ax.set_xticks(
            ticks, names, rotation=30 if rotate else 0, ha="right" if rotate else "center"
        )
    ax.grid(axis="x", visible=False)


def _dodge(kind: str, n_groups: int, i: int) -> Callable[[float], float]:
    """Shift of hue group i so that error bars of several groups do not overlap."""
    step = (i - (n_groups - 1) / 2) * 0.12
    if kind == "log2":
        return lambda x: x * 2**step
    if kind == "linear":
        return lambda x: x  # real distances: never moved
    return lambda x: x + step


# ------------------------------------------------------------------------------------ knob figure
def plot_against_knob(
    values: pd.DataFrame,
    metrics: Sequence[str],
    knob: str,
    path: str | Path,
    hue: str | None = None,
    styles: Styles | None = None,
    reference: Mapping[str, tuple[str, str]] | None = None,
    n_boot: int = 1000,
    panel_notes: Mapping[str, str] | None = None,
) -> list[Path]:
    """One panel per metric: each run's value (small dots) and the mean over runs with its 95%
    bootstrap CI against the knob, one series per hue value. panel_notes: metric -> a line over
    its panel (which evaluation set the panel's numbers come from).

    values: one row per run and metric (columns run, metric, value, the knob, "setting" and the
    hue column); failed runs already removed. reference: metric -> (other metric, legend
    label), drawn as a dashed grey line in that panel (e.g. the Monte-Carlo variance).
    """
    metrics = [m for m in metrics if (values["metric"] == m).any()]
    if not metrics:
        raise ValueError("none of the metrics has a value")
    positions, kind = knob_positions(values[knob])
    groups = _ordered(values[hue]) if hue else [None]
    styles = styles or series_styles([str(s) for s in _ordered(values["setting"])])
    hue_styles = series_styles([str(g) for g in groups]) if hue else {}
    ncols = 2 if len(metrics) == 4 else min(len(metrics), 3)
    nrows = -(-len(metrics) // ncols)
    width = COLUMN_WIDTH if ncols == 1 else min(TEXT_WIDTH, 2.3 * ncols)
    with paper_style():
        title = None if hue in (None, "hue", "setting") else hue
        ncol, extra = legend_layout([str(g) for g in groups], width, title is not None)
        height = 2.1 * nrows + (extra if hue is not None else 0.0)
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, metric in zip(axes, metrics, strict=False):
            part = values[values["metric"] == metric]
            for i, group in enumerate(groups):
                sub = part if group is None else part[part[hue] == group]
                shift = _dodge(kind, len(groups), i)
                style = hue_styles.get(str(group))
                connect = kind != "category"
                _draw_series(ax, sub, knob, positions, shift, styles, style, n_boot, connect)
            if reference and metric in reference:
                _draw_reference(ax, values, knob, positions, *reference[metric])
            _format_axis(ax, positions, kind)
            ax.set(xlabel=label(knob), ylabel=label(metric))
            if panel_notes and metric in panel_notes:  # e.g. which evaluation set it is
                ax.set_title(panel_notes[metric], fontsize=7, color="0.3")
            v = part["value"].to_numpy(dtype=float)
            if is_rate(metric) and np.isfinite(v).any():  # accuracies: never far past [0, 1]
                set_rate_ylim(ax, np.nanmin(v), np.nanmax(v))  # the CIs of means lie inside
        for ax in axes[len(metrics) :]:
            ax.set_visible(False)
        if hue is not None:
            handles = [Line2D([], [], color=c, marker=m) for c, m in hue_styles.values()]
            labels = list(hue_styles)
            fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=title)
        return save_figure(fig, path)


def _draw_series(
    ax: Axes,
    sub: pd.DataFrame,
    knob: str,
    positions: dict,
    shift: Callable[[float], float],
    styles: Styles,
    group_style: tuple[str, str] | None,
    n_boot: int,
    connect: bool = True,
) -> None:
    """Runs as dots, the mean and CI per knob value; coloured by setting (or by hue group).
    connect: join the means by a line (ordered knobs; never across algorithm names)."""
    xs, means = [], []
    for value in positions:
        runs = sub[sub[knob].astype(str) == str(value)]
        if runs.empty:
            continue
        x = shift(positions[value])
        setting = str(runs["setting"].iloc[0])
        color, marker = group_style or styles.get(setting, (LINE_GREY, "o"))
        v = runs["value"].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if not len(v):
            continue
        mean, low, high = bootstrap_ci(v, n_boot)
        ax.scatter(np.full(len(v), x), v, s=12, color=color, alpha=0.5, linewidths=0, zorder=2)
        ax.errorbar(
            x,
            mean,
            yerr=[[mean - low], [high - mean]],
            color=color,
            marker=marker,
            markersize=5,
            capsize=2.5,
            linewidth=1.2,
            zorder=3,
        )
        xs.append(x)
        means.append(mean)
    if len(xs) > 1 and connect:
        line = group_style[0] if group_style else LINE_GREY
        ax.plot(xs, means, color=line, linewidth=1.0, zorder=1)


def _draw_reference(
    ax: Axes, values: pd.DataFrame, knob: str, positions: dict, metric: str, text: str
) -> None:
    part = values[values["metric"] == metric]
    if part.empty:
        return
    xs, ys = [], []
    for value, x in positions.items():
        v = part.loc[part[knob].astype(str) == str(value), "value"].to_numpy(dtype=float)
        if np.isfinite(v).any():
            xs.append(x)
            ys.append(float(np.nanmean(v)))
    ax.plot(
        xs, ys, color="0.3", linestyle="--", linewidth=1.0, marker="x", markersize=4, label=text
    )
    low, high = ax.get_ylim()  # headroom, so the legend never sits on the data
    ax.set_ylim(low, high + 0.25 * (high - low))
    ax.legend(loc="upper right", handlelength=1.8)


# ------------------------------------------------------------------------------------ scaling
def plot_scaling(
    points: pd.DataFrame,
    fits: Mapping[str, tuple[Callable[[np.ndarray], np.ndarray], float]],
    path: str | Path,
    metric: str,
    hue: str = "setting",
    facet: str | None = None,
    styles: Styles | None = None,
    title: str | None = None,
    compute_label: str = "sampled tokens",
) -> list[Path]:
    """Measured points (one dot per run and evaluation, compute > 0) and the fitted saturating
    curve of each setting: solid over the measured range, dashed where it extrapolates (to 4×
    the largest compute). A line per `hue` value, a panel per `facet` value.

    points: columns setting, compute, value and the hue / facet columns; fits: setting ->
    (R(C), asymptote A). Settings without a fit are left out.
    """
    settings = [str(s) for s in _ordered(points["setting"]) if str(s) in fits]
    if not settings:
        raise ValueError("no setting has a scaling fit")
    styles = styles or series_styles([str(h) for h in _ordered(points[hue])])
    panels = _ordered(points[facet]) if facet else [None]
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    first = points.assign(setting=points["setting"].astype(str)).drop_duplicates("setting")
    first = first.set_index("setting")
    names = {s: str(first.loc[s, hue]) for s in settings}
    texts = {s: names[s] if facet else f"{names[s]} (A = {fits[s][1]:.2f})" for s in settings}
    width = COLUMN_WIDTH if facet is None else min(TEXT_WIDTH, 2.3 * ncols)
    ncol, extra = legend_layout(list(dict.fromkeys(texts.values())), width, title is not None)
    height = (2.1 if facet is None else 1.9 * nrows + 0.2) + extra
    with paper_style():
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
        handles: dict[str, object] = {}
        for i, (ax, panel) in enumerate(zip(axes, panels, strict=False)):
            for setting in settings:
                d = points[(points["setting"].astype(str) == setting) & (points["compute"] > 0)]
                if d.empty or (facet is not None and d[facet].iloc[0] != panel):
                    continue
                color, marker = styles[names[setting]]
                ax.scatter(
                    d["compute"],
                    d["value"],
                    s=10,
                    color=color,
                    marker=marker,
                    alpha=0.45,
                    linewidths=0,
                )
                fit = fits[setting][0]
                lo, hi = d["compute"].min(), d["compute"].max()
                inside, beyond = np.geomspace(lo, hi, 200), np.geomspace(hi, 4 * hi, 50)
                (handles[texts[setting]],) = ax.plot(
                    inside, fit(inside), color=color, linewidth=1.5
                )
                ax.plot(beyond, fit(beyond), color=color, linewidth=1.2, linestyle="--")
            ax.set_xscale("log")
            _compact_log_ticks(ax)
            if facet is not None:
                ax.set_title(str(panel), fontsize=9)
            if i >= len(panels) - ncols:
                ax.set_xlabel(f"{compute_label} (log scale)")
            if i % ncols == 0:
                ax.set_ylabel(label(metric))
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncol=ncol,
            title=title,
        )
        return save_figure(fig, path)


def _compact_log_ticks(ax: Axes) -> None:
    """Short tick labels on a log compute axis (``50k``, ``2M``): 1, 2 and 5 per decade when it
    spans under 2 decades, powers of ten only otherwise, so labels never overlap."""
    lo, hi = ax.get_xlim()
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    if hi / lo < 100:
        minor = [m * 10.0**k for k in decades for m in (2, 5) if lo <= m * 10.0**k <= hi]
        ax.xaxis.set_minor_locator(FixedLocator(minor))
        ax.xaxis.set_minor_formatter(EngFormatter(sep=""))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())
