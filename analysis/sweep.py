"""Sweep analysis: a multirun directory (or a W&B group) -> one tidy table, summaries, figures.

The swept knobs are found automatically: the overrides (without them, the config keys) whose
values differ between members, minus the seed; keys that always change together count once
(`analysis.load`). A *setting* is one combination of knob values; its runs are the seeds.

Per run, the final value of a metric is its last logged value (held-out evaluations), except the
advantage diagnostics (`DIAGNOSTICS`), which are averaged over the run's steps. Means over runs
come with 95% percentile-bootstrap CIs over runs; failed members are listed, never averaged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.ablation import component_effects, effects_markdown, same_points
from analysis.load import (
    STEP,
    load_eval,
    load_members,
    members_table,
    tidy_sweep,
    wandb_runs,
)
from analysis.metrics import bootstrap_ci, per_problem_table, summarize
from analysis.plots import label, plot_learning_curves, plot_passk_majk
from analysis.scaling import PARAMS, fit_scaling_runs, scaling_curve
from analysis.study import default_ks
from analysis.style import series_styles
from analysis.sweep_plots import plot_against_knob, plot_scaling
from analysis.tables import scaling_latex, summary_latex, value_text

LOO_KNOB = "ablate"  # the config group of a leave-one-out sweep (conf/ablate/)

CURVE_METRICS = (
    "train/reward_mean",
    "train/accuracy",
    "eval/sampled_accuracy",
    "eval/greedy_accuracy",
    "train/kl_ref",
    "adv/var",
    "adv/mc_corr",
    "adv/mc_mse",
)
FINAL = ("eval/sampled_accuracy", "eval/greedy_accuracy")  # + every logged eval/pass@n
DIAGNOSTICS = ("adv/var", "adv/mc_var", "adv/mc_corr", "adv/mc_mse")
COMPUTE = "train/sampled_tokens"  # cumulative completion tokens sampled for training
SCALED = "eval/sampled_accuracy"
# crashed: a W&B run state; unreadable: a member whose files do not load (analysis.load)
_FAILED = ("failed", "crashed", "unreadable")


# ------------------------------------------------------------------------------------ settings
def _sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers by value, then strings, then missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    if pd.api.types.is_number(value) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _short(knob: str) -> str:
    """Legend name of a knob: "advantage.lam" -> "lam", "algorithm.name" -> "algorithm"."""
    parts = knob.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def with_setting(df: pd.DataFrame, knobs: Sequence[str], column: str = "setting") -> pd.DataFrame:
    """Adds `column`, "algorithm=ppo, lam=0.9" over the knobs (the seed excluded), as an ordered
    categorical: settings sort by their knob values (numbers numerically), so G=2 precedes G=16."""
    knobs = [k for k in knobs if k != "seed"]
    if not knobs:
        return df.assign(**{column: pd.Categorical(["all runs"] * len(df))})

    def name(values: Sequence[Any]) -> str:
        return ", ".join(f"{_short(k)}={value_text(v)}" for k, v in zip(knobs, values, strict=True))

    combos = df[knobs].drop_duplicates().itertuples(index=False, name=None)
    order = sorted(combos, key=lambda r: tuple(_sort_key(v) for v in r))
    labels = [name(r) for r in df[knobs].itertuples(index=False, name=None)]
    categories = list(dict.fromkeys(name(r) for r in order))
    return df.assign(**{column: pd.Categorical(labels, categories=categories, ordered=True)})


def split_knobs(df: pd.DataFrame, knobs: Sequence[str]) -> tuple[str | None, list[str]]:
    """The knob for the x-axis (the one with most values; numbers before names) and the rest,
    which become the series of a figure."""
    knobs = [k for k in knobs if k != "seed"]
    if not knobs:
        return None, []

    def rank(k: str) -> tuple[int, int]:
        values = df[k].dropna().unique()
        numeric = all(_sort_key(v)[0] == 0 for v in values)
        return (-len(values), 0 if numeric else 1)

    x = min(knobs, key=rank)
    return x, [k for k in knobs if k != x]


# ------------------------------------------------------------------------------------ per-run values
def _member_columns(df: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    cols = ["run", "setting", "status", "seed", *[k for k in knobs if k != "seed"]]
    return df.drop_duplicates("run")[[c for c in cols if c in df]]


def run_values(df: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """One row per run and metric (columns run, setting, status, seed, knobs, metric, value):
    the last logged value of the held-out metrics, the mean over steps of the diagnostics."""
    data = df.sort_values(["run", STEP], kind="stable")
    passes = sorted((c for c in df if c.startswith("eval/pass@")), key=lambda c: int(c[10:]))
    parts = []
    for metric, how in [
        *((m, "last") for m in (*FINAL, *passes)),
        *((m, "mean") for m in DIAGNOSTICS),
    ]:
        if metric not in data or data[metric].isna().all():
            continue
        per_run = data.dropna(subset=[metric]).groupby("run", sort=False)[metric].agg(how)
        parts.append(
            pd.DataFrame({"run": per_run.index, "metric": metric, "value": per_run.values})
        )
    if not parts:
        return pd.DataFrame(columns=[*_member_columns(df, knobs).columns, "metric", "value"])
    return _member_columns(df, knobs).merge(pd.concat(parts, ignore_index=True), on="run")


def eval_values(
    per_problem: pd.DataFrame, ks: Sequence[int], members: pd.DataFrame
) -> pd.DataFrame:
    """Maj@K and Pass@K at the largest K per run from its eval samples, as `run_values` rows."""
    k = max(ks)
    means = per_problem.groupby("run")[[f"maj@{k}", f"pass@{k}"]].mean()
    long = means.reset_index().melt(id_vars="run", var_name="metric", value_name="value")
    return members.merge(long, on="run")


def summarize_settings(
    values: pd.DataFrame, members: pd.DataFrame, knobs: Sequence[str], n_boot: int = 1000
) -> pd.DataFrame:
    """Per setting and metric: finished runs with a value, failed members, mean and 95% CI.

    values: `run_values` rows; members: one row per member (run, setting, status, knobs).
    """
    knobs = [k for k in knobs if k != "seed"]
    failed = members[members["status"].isin(_FAILED)].groupby("setting", observed=True).size()
    metrics = list(dict.fromkeys(values["metric"]))
    rows = []
    for setting in members["setting"].cat.categories:
        first = members[members["setting"] == setting].iloc[0]
        for metric in metrics:
            part = values[(values["setting"] == setting) & (values["metric"] == metric)]
            if part.empty:  # not logged in this setting (e.g. critic diagnostics under GRPO)
                continue
            ok = part.loc[~part["status"].isin(_FAILED), "value"].dropna().to_numpy(float)
            mean, low, high = bootstrap_ci(ok, n_boot) if len(ok) else (np.nan,) * 3
            row = {"setting": setting, **{k: first[k] for k in knobs}, "metric": metric}
            row |= {"runs": len(ok), "failed": int(failed.get(setting, 0))}
            rows.append(row | {"mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ scaling
def compute_points(df: pd.DataFrame, metric: str = SCALED, compute: str = COMPUTE) -> pd.DataFrame:
    """(compute, metric) at every evaluation of every finished run: columns run, setting,
    step, compute, value. A step's row holds the evaluation made *before* that step's update
    and the tokens counted *after* it, so an evaluation's compute is the previous row's count
    (0 at step 0)."""
    data = df[~df["status"].isin(_FAILED)].sort_values(["run", STEP], kind="stable")
    before = data.groupby("run", sort=False)[compute].transform(
        lambda s: s.ffill().shift(1).fillna(0.0)
    )
    out = data.assign(compute=before).dropna(subset=[metric])
    return out[["run", "setting", STEP, "compute", metric]].rename(
        columns={STEP: "step", metric: "value"}
    )


def scaling_fits(points: pd.DataFrame, members: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """`fit_scaling_runs` per setting (accuracy: A bounded to [0, 1]); a setting whose fit fails
    keeps a row with NaN parameters and the reason in `note` (as does one with too few runs for
    an interval, with its parameters)."""
    knobs = [k for k in knobs if k != "seed"]
    rows = []
    for setting in members["setting"].cat.categories:
        part = points[points["setting"] == setting]
        first = members[members["setting"] == setting].iloc[0]
        row: dict[str, Any] = {"setting": setting, **{k: first[k] for k in knobs}}
        runs = [(g["compute"].to_numpy(), g["value"].to_numpy()) for _, g in part.groupby("run")]
        try:
            if not runs:  # e.g. offline methods (dpo, rft) count no sampled tokens
                raise ValueError(f"no evaluation with a {COMPUTE} count")
            row |= {"note": ""} | fit_scaling_runs(runs, a_bounds=(0.0, 1.0))
        except (ValueError, RuntimeError) as err:
            row |= {"runs": len(runs), "note": str(err)} | {p: np.nan for p in PARAMS}
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ sources
def eval_set_text(what: str, problems: set, samples: set) -> str:
    """ "<what>: 200 problems × 8 samples", or where the runs differ, the ranges."""

    def span(values: set) -> str:
        values = sorted(v for v in values if v is not None)
        return (
            "?"
            if not values
            else f"{values[0]}"
            if len(values) == 1
            else f"{values[0]}-{values[-1]}"
        )

    return f"{what}: {span(problems)} problems × {span(samples)} samples"


def eval_notes(runs: Sequence[dict[str, Any]], per_problem: pd.DataFrame | None) -> dict[str, str]:
    """Which evaluation set a metric comes from, by metric prefix: ``eval/`` the held-out
    evaluation during training (``eval.n_problems`` × ``eval.n_samples`` of the runs' configs),
    ``maj@``/``pass@`` the members' ``rlexp-eval`` samples."""
    configs = [r.get("config", {}) for r in runs]
    notes = {
        "eval/": eval_set_text(
            "held-out eval during training",
            {c.get("eval.n_problems") for c in configs},
            {c.get("eval.n_samples") for c in configs},
        )
    }
    if per_problem is not None and len(per_problem):
        counts = per_problem.groupby("run")["problem_id"].nunique()
        notes["maj@"] = notes["pass@"] = eval_set_text(
            "rlexp-eval of the final policy", set(counts.tolist()), set(per_problem["n"].tolist())
        )
    return notes


def note_for(metric: str, notes: dict[str, str]) -> str | None:
    return next((text for prefix, text in notes.items() if metric.startswith(prefix)), None)


def member_evals(sweep_dir: Path, runs: Sequence[str]) -> tuple[pd.DataFrame | None, list[int]]:
    """Per-problem pass@k / maj@k of each member's last ``eval/<name>/samples.parquet`` (as
    written by rlexp-eval with ``output_dir=<member>/eval/<name>``), with a run column; K = 1,
    2, 4, ... up to the fewest samples per problem of any member."""
    found = {}
    for run in runs:
        paths = sorted((sweep_dir / str(run)).glob("eval/*/samples.parquet"))
        if paths:
            try:
                found[run] = load_eval(paths[-1].parent)[0]
            except (OSError, ValueError) as err:  # a corrupt Parquet file (ArrowInvalid)
                warnings.warn(
                    f"skipping the samples of sweep member {run}: {paths[-1]}: {err}", stacklevel=2
                )
    if not found:
        return None, []
    ks = default_ks(min(int(s.groupby("problem_id").size().min()) for s in found.values()))
    tables = [per_problem_table(s, ks).assign(run=run) for run, s in found.items()]
    return pd.concat(tables, ignore_index=True), ks


def sweep_passk(per_problem: pd.DataFrame, ks: Sequence[int], n_boot: int = 1000) -> pd.DataFrame:
    """Maj@K and Pass@K per setting and K, CIs over runs x problems (over problems for one run)."""
    rows = []
    for setting, table in per_problem.groupby("setting", observed=True, sort=True):
        column = "run" if table["run"].nunique() > 1 else None
        s = summarize(table, ks, n_boot=n_boot, seed_column=column)
        rows.append(s.assign(setting=str(setting), runs=table["run"].nunique()))
    return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------------------------ analysis
def analyze_sweep(
    sweep_dir: Path,
    out: Path,
    metrics: Sequence[str] | None = None,
    smooth: int = 1,
    n_boot: int = 1000,
) -> list[Path]:
    """All tables and figures of a multirun directory (see `analyze_runs`); a member whose files
    do not load is skipped with a warning and listed in failed_members.csv."""
    runs = load_members(sweep_dir)
    if not runs:
        raise ValueError(f"{sweep_dir} holds no run directories")
    return analyze_runs(runs, out, metrics, smooth, n_boot, sweep_dir=Path(sweep_dir))


def analyze_wandb(
    entity: str,
    project: str,
    group: str | None,
    out: Path,
    api: Any = None,
    metrics: Sequence[str] | None = None,
    smooth: int = 1,
    n_boot: int = 1000,
) -> list[Path]:
    """All tables and figures of a W&B group (no eval samples: no passk_majk)."""
    runs = wandb_runs(entity, project, group, api)
    if not runs:
        raise ValueError(f"W&B project {entity}/{project} has no runs in group {group!r}")
    return analyze_runs(runs, out, metrics, smooth, n_boot)


def analyze_runs(
    runs: list[dict[str, Any]],
    out: Path,
    metrics: Sequence[str] | None = None,
    smooth: int = 1,
    n_boot: int = 1000,
    sweep_dir: Path | None = None,
) -> list[Path]:
    """sweep_metrics.csv, curves, sweep_runs.csv, sweep_summary.csv/.tex, final_vs_knob,
    adv_diagnostics, passk_majk, scaling_fit, failed_members.csv; returns the written paths."""
    df = tidy_sweep(runs)
    knobs = [k for k in df.attrs["knobs"] if k != "seed"]
    for kept, dropped in df.attrs.get("aliases", {}).items():
        print(f"knob {kept} also stands for {', '.join(dropped)} (they always change together)")
    df = with_setting(df, knobs)
    members = with_setting(members_table(runs), knobs)
    settings = [str(s) for s in df["setting"].cat.categories]
    styles = series_styles(settings)
    shown = _Shown(members, knobs)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "sweep_metrics.csv"]
    df.to_csv(files[0], index=False)
    per_problem, ks = member_evals(sweep_dir, members["run"]) if sweep_dir else (None, [])
    notes = eval_notes(runs, per_problem)
    files += _curves(df, out, metrics, smooth, n_boot, shown, notes)
    values = run_values(df, knobs)
    if per_problem is not None:
        ids = _member_columns(df, knobs)
        per_problem = per_problem.merge(ids[["run", "setting", "status"]], on="run")
        per_problem = per_problem[~per_problem["status"].isin(_FAILED)]
        values = pd.concat([values, eval_values(per_problem, ks, ids)], ignore_index=True)
        table = sweep_passk(per_problem, ks, n_boot)
        table.to_csv(out / "passk_majk.csv", index=False)
        files += [out / "passk_majk.csv"]
        one = shown.facet is None  # several knobs: one line per setting
        models = table.assign(model=table["setting"].map(shown.names) if one else table["setting"])
        legend = (shown.styles, shown.title) if one else (styles, None)
        files += plot_passk_majk(models, out / "passk_majk", *legend)
    files += _summaries(values, members, knobs, out, n_boot)
    files += _knob_figures(values, knobs, out, styles, n_boot, notes)
    files += _scaling(df, members, knobs, out, shown)
    files += _failed(members, out)
    return files


class _Shown:
    """How figures name the settings. One knob: a line per value, the knob's label as legend
    title ("GAE λ": 0, 0.5, ...). Several: a line per value of the x knob (`split_knobs`) and a
    panel per combination of the others ("algorithm=grpo"). Colours follow the line values, so
    λ = 0.9 has one colour in every figure of a sweep."""

    def __init__(self, members: pd.DataFrame, knobs: Sequence[str]) -> None:
        x, rest = split_knobs(members, knobs)
        self.title = label(x) if x else None
        self.column = self.title or "setting"
        self.facet = "panel" if rest else None
        first = members.astype({"setting": str}).drop_duplicates("setting")
        lines = with_setting(first, [x] if x else [], "line")["line"]  # "lam=0.9"
        panels = with_setting(first, rest, "panel")["panel"]  # "algorithm=grpo"
        value = (lambda t: t.split("=", 1)[1]) if x else (lambda t: t)  # "0.9"
        self.order = [value(c) for c in lines.cat.categories]
        self.names = dict(zip(first["setting"], lines.astype(str).map(value), strict=True))
        self.panels = dict(zip(first["setting"], panels.astype(str), strict=True))
        self.panel_order = list(panels.cat.categories)
        self.styles = series_styles(self.order)

    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """df with its line name in `column` (and panel name in "panel"), ordered categoricals."""
        setting = df["setting"].astype(str)
        cols = {self.column: pd.Categorical(setting.map(self.names), self.order, ordered=True)}
        if self.facet:
            cols["panel"] = pd.Categorical(setting.map(self.panels), self.panel_order, ordered=True)
        return df.assign(**cols)


def _curves(df, out, metrics, smooth, n_boot, shown: _Shown, notes) -> list[Path]:
    finished = shown.frame(df[~df["status"].isin(_FAILED)])
    files = []
    for metric in metrics or CURVE_METRICS:
        if metric in finished and finished[metric].notna().any():
            path = out / f"curve_{metric.replace('/', '_').replace('@', '_at_')}"
            files += plot_learning_curves(
                finished,
                metric,
                shown.column,
                path,
                smooth=smooth,
                n_boot=n_boot,
                styles=shown.styles,
                facet=shown.facet,
                note=note_for(metric, notes),
            )
    return files


def paper_metrics(values: pd.DataFrame) -> list[str]:
    """The metrics a paper shows: held-out accuracy, Maj@K and Pass@K from eval samples (else the
    training-time eval/pass@n), and the advantage diagnostics (not the MC variance)."""
    present = list(dict.fromkeys(values["metric"]))
    finals = [m for m in present if m in FINAL or m.startswith(("maj@", "pass@"))]
    if not any(m.startswith("pass@") for m in finals):
        finals += [m for m in present if m.startswith("eval/pass@")][-1:]
    return finals + [m for m in ("adv/var", "adv/mc_corr", "adv/mc_mse") if m in present]


def _summaries(values, members, knobs, out, n_boot) -> list[Path]:
    files = [out / "sweep_runs.csv"]
    values.to_csv(files[0], index=False)
    if values.empty:
        return files
    summary = summarize_settings(values, members, knobs, n_boot)
    summary.to_csv(out / "sweep_summary.csv", index=False)
    (out / "sweep_summary.tex").write_text(summary_latex(summary, knobs, paper_metrics(values)))
    print(summary.to_string(index=False, float_format="%.4g"))
    return [*files, out / "sweep_summary.csv", out / "sweep_summary.tex"]


def _knob_figures(values, knobs, out, styles, n_boot, notes) -> list[Path]:
    """final_vs_knob (held-out accuracy, Maj@K, Pass@K; each panel says its evaluation set) and
    adv_diagnostics against the knob."""
    ok = values[~values["status"].isin(_FAILED)]
    x, rest = split_knobs(ok, knobs)
    if x is None or ok.empty:
        return []
    hue = label(rest[0]) if len(rest) == 1 else "hue" if rest else None
    if len(rest) == 1:  # lines named by the other knob's values, its label as legend title
        order = [value_text(v) for v in sorted(ok[rest[0]].unique(), key=_sort_key)]
        ok = ok.assign(**{hue: pd.Categorical(ok[rest[0]].map(value_text), order, ordered=True)})
    elif rest:
        ok = with_setting(ok, rest, column="hue")
    present = list(dict.fromkeys(ok["metric"]))
    finals = [m for m in paper_metrics(ok) if not m.startswith("adv/")]
    files = []
    if finals:
        panel_notes = {m: note_for(m, notes) for m in finals if note_for(m, notes)}
        files += plot_against_knob(
            ok,
            finals,
            x,
            out / "final_vs_knob",
            hue,
            styles,
            n_boot=n_boot,
            panel_notes=panel_notes,
        )
    diag = [m for m in ("adv/var", "adv/mc_corr", "adv/mc_mse") if m in present]
    if diag:
        ref = {"adv/var": ("adv/mc_var", "Monte Carlo ($\\lambda$ = 1)")}
        files += plot_against_knob(ok, diag, x, out / "adv_diagnostics", hue, styles, ref, n_boot)
    return files


def _scaling(df, members, knobs, out, shown: _Shown) -> list[Path]:
    if COMPUTE not in df or SCALED not in df:
        return []
    points = compute_points(df)
    table = scaling_fits(points, members, knobs)
    for r in table[table["note"] != ""].itertuples():
        print(f"scaling fit of {r.setting}: {r.note}")
    table.to_csv(out / "scaling_fit.csv", index=False)
    (out / "scaling_fit.tex").write_text(scaling_latex(table, knobs))
    files = [out / "scaling_fit.csv", out / "scaling_fit.tex"]
    if LOO_KNOB in knobs:  # a leave-one-out sweep (sweeps/scalerl_loo.yaml): what each piece moves
        values = table[LOO_KNOB].astype(str)
        pairs = zip(table["setting"], values, strict=True)
        recipe = next((str(s) for s, v in pairs if v == "none"), None)
        identical = frozenset(
            str(s) for s in table["setting"] if recipe and same_points(points, str(s), recipe)
        )
        effects = component_effects(table, LOO_KNOB, identical=identical)
        if not effects.empty:
            text = effects_markdown(effects)
            effects.to_csv(out / "component_effects.csv", index=False)
            (out / "component_effects.md").write_text(text)
            print(text)
            files += [out / "component_effects.csv", out / "component_effects.md"]
    fitted = table.dropna(subset=["A"])
    if fitted.empty:
        return files
    fits = {str(r["setting"]): (_curve(r), float(r["A"])) for _, r in fitted.iterrows()}
    return files + plot_scaling(
        shown.frame(points),
        fits,
        out / "scaling_fit",
        SCALED,
        shown.column,
        shown.facet,
        shown.styles,
        shown.title,
    )


def _curve(row: pd.Series):
    a, b, c_mid, r0 = (float(row[p]) for p in PARAMS)
    return lambda c: scaling_curve(c, a, b, c_mid, r0)


def _failed(members: pd.DataFrame, out: Path) -> list[Path]:
    bad = members[members["status"] != "finished"]
    bad.to_csv(out / "failed_members.csv", index=False)
    for row in bad.itertuples():
        note = "left out of curves and summary" if row.status in _FAILED else "kept"
        error = row.error or ("no run_info.json" if row.status == "missing" else "no error")
        print(f"member {row.run}: {row.status}, {note}: {error}")
    return [out / "failed_members.csv"]
