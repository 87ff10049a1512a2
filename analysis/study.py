"""The DeepSeekMath Pass@K / Maj@K study (theory.md §7): tables, figures and a computed report.

A study directory holds study.json (ks, seeds), eval/<name>/ (one per model and seed) and
runs/seed_<s>/ (the RL runs, with the SFT curve). Every statement in report.md is derived from
the measured numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import SFT_STEP, load_eval, load_metrics
from analysis.metrics import per_problem_table, summarize
from analysis.plots import plot_passk_majk, plot_sft_curve, plot_sharpening, plot_tiers

BASE_LABELS = ("sft", "base", "instruct")
COLUMNS = ["model", "K"] + [f"{m}@K{s}" for m in ("pass", "maj") for s in ("", "_low", "_high")]
COLUMNS += ["seeds", "interval"]


# ------------------------------------------------------------------------------------ tables
def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n samples."""
    return [2**i for i in range(int(np.log2(max(n, 1))) + 1)]


def model_order(labels: Sequence[str]) -> list[str]:
    """The base (SFT) model first, then RL, then the rest alphabetically."""

    def rank(m: str) -> tuple[int, str]:
        return (0 if m.lower() in BASE_LABELS else 1 if m.lower() == "rl" else 2, m)

    return sorted(set(labels), key=rank)


def study_per_problem(
    evals: Sequence[tuple[pd.DataFrame, dict]], ks: Sequence[int]
) -> pd.DataFrame:
    """Per-problem pass@k / maj@k of every eval, with model and seed columns."""
    tables, seen = [], set()
    for samples, summary in evals:
        key = (str(summary.get("model", "model")), int(summary.get("seed", 0)))
        if key in seen:
            raise ValueError(f"two evals of model {key[0]!r} with seed {key[1]}")
        seen.add(key)
        n_min = int(samples.groupby("problem_id").size().min())
        if max(ks) > n_min:
            raise ValueError(f"K = {max(ks)} > {n_min} samples of model {key[0]!r}, seed {key[1]}")
        tables.append(per_problem_table(samples, ks).assign(model=key[0], seed=key[1]))
    return pd.concat(tables, ignore_index=True)


def summarize_models(
    per_problem: pd.DataFrame, ks: Sequence[int], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """`summarize` per model: 95% CIs over problems (one seed) or over seeds x problems (>= 3
    seeds); with exactly 2 seeds the band is the range of the two seeds' means (two draws give
    no meaningful seed-level interval), and the ``interval`` column says which."""
    rows = []
    for model in model_order(per_problem["model"].unique()):
        table = per_problem[per_problem["model"] == model]
        n_seeds = table["seed"].nunique()
        column = "seed" if n_seeds > 1 else None
        summary = summarize(table, ks, n_boot=n_boot, seed=seed, seed_column=column)
        if n_seeds == 2:
            for metric in ("pass", "maj"):
                cols = [f"{metric}@{k}" for k in ks]
                means = table.groupby("seed")[cols].mean().to_numpy()
                summary[f"{metric}@K_low"], summary[f"{metric}@K_high"] = means.min(0), means.max(0)
        interval = "range" if n_seeds == 2 else "95% CI"
        rows.append(summary.assign(model=model, seeds=n_seeds, interval=interval))
    return pd.concat(rows, ignore_index=True)[COLUMNS]


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "&%$#_{}" else c for c in str(text))


def latex_table(summary: pd.DataFrame) -> str:
    """Booktabs table: a row per K, Maj@K and Pass@K columns per model (best in bold)."""
    models = list(dict.fromkeys(summary["model"]))
    wide = summary.pivot(index="K", columns="model", values=["maj@K", "pass@K"])
    lines = [
        "\\begin{tabular}{r" + " cc" * len(models) + "}",
        "\\toprule",
        " & ".join([""] + [f"\\multicolumn{{2}}{{c}}{{{_escape(m)}}}" for m in models]) + " \\\\",
        " ".join(f"\\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(models))),
        " & ".join(["$K$"] + ["Maj@$K$", "Pass@$K$"] * len(models)) + " \\\\",
        "\\midrule",
    ]
    for k, row in wide.iterrows():
        cells = [str(k)]
        for m in models:
            for col in ("maj@K", "pass@K"):
                text = f"{row[(col, m)]:.3f}"
                best = len(models) > 1 and row[(col, m)] == row[col].max()
                cells.append(f"\\textbf{{{text}}}" if best else text)
        lines.append(" & ".join(cells) + " \\\\")
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}", ""])


def markdown_table(summary: pd.DataFrame) -> str:
    """Markdown table: a row per K, Maj@K and Pass@K with 95% CIs per model."""
    models = list(dict.fromkeys(summary["model"]))
    head = ["K"] + [f"{m} {name}" for m in models for name in ("Maj@K", "Pass@K")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    by = summary.set_index(["K", "model"])
    for k in sorted(summary["K"].unique()):
        cells = [str(k)]
        for m in models:
            r = by.loc[(k, m)]
            for c in ("maj@K", "pass@K"):
                cells.append(f"{r[c]:.3f} [{r[c + '_low']:.3f}, {r[c + '_high']:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ numbers
def compare(summary: pd.DataFrame, base: str, treated: str) -> dict[str, Any]:
    """Key numbers of treated (RL) vs base (SFT) from a `summarize_models` frame."""
    b = summary[summary["model"] == base].set_index("K").sort_index()
    t = summary[summary["model"] == treated].set_index("K").sort_index()
    ks = [int(k) for k in b.index.intersection(t.index)]
    b, t = b.loc[ks], t.loc[ks]
    maj_gap, pass_gap = t["maj@K"] - b["maj@K"], t["pass@K"] - b["pass@K"]
    at_or_below = (pass_gap <= 0).to_numpy()
    from_on = [k for i, k in enumerate(ks) if at_or_below[i:].all()]
    return {
        "base": base,
        "treated": treated,
        "k_min": ks[0],
        "k_max": ks[-1],
        "ks": ks,
        "interval": "range" if "range" in set(t.get("interval", [])) else "95% CI",
        "majk_rl_gt_sft_all": bool((maj_gap > 0).all()),
        "majk_not_raised_ks": [k for k in ks if maj_gap[k] <= 0],
        "majk_ci_disjoint_ks": [k for k in ks if t.loc[k, "maj@K_low"] > b.loc[k, "maj@K_high"]],
        "pass1_sft": float(b["pass@K"].iloc[0]),
        "pass1_rl": float(t["pass@K"].iloc[0]),
        "gap_pass1": float(pass_gap.iloc[0]),
        "passmax_sft": float(b["pass@K"].iloc[-1]),
        "passmax_rl": float(t["pass@K"].iloc[-1]),
        "gap_passmax": float(pass_gap.iloc[-1]),
        "crossing_k": from_on[0] if from_on else None,
        "passk_not_raised_ks": [k for k, low in zip(ks, at_or_below, strict=True) if low],
        "first_meet_k": next((k for k, low in zip(ks, at_or_below, strict=True) if low), None),
    }


SATURATED = 0.005  # Pass@K within this of 1.0 counts as saturated


def _per_problem_matrix(per_problem: pd.DataFrame, model: str, column: str, ids) -> np.ndarray:
    """``[seeds, problems]`` values of one model on the problems ``ids`` (in that order)."""
    table = per_problem[per_problem["model"] == model]
    wide = table.pivot(index="seed", columns="problem_id", values=column)
    return wide[ids].to_numpy(dtype=float)


def paired_bootstrap(
    per_problem: pd.DataFrame,
    ks: Sequence[int],
    base: str,
    treated: str,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Treated − base per metric (maj, pass) and K: the point values ``[len(ks)]`` and
    ``n_boot`` paired bootstrap replicates ``[n_boot, len(ks)]``.

    The point is the mean over the problems both models were evaluated on (each model's values
    averaged over its seeds). A replicate resamples the problems once for both models (their
    per-problem results are paired) and, for a model with >= 3 seeds, its seeds too.
    """
    ids = sorted(
        set(per_problem.loc[per_problem["model"] == base, "problem_id"])
        & set(per_problem.loc[per_problem["model"] == treated, "problem_id"])
    )
    rng = np.random.default_rng(seed)
    n = len(ids)
    problems = rng.integers(0, n, (n_boot, n))
    seed_draws: dict[str, np.ndarray | None] = {}
    for model in (base, treated):
        s = per_problem.loc[per_problem["model"] == model, "seed"].nunique()
        seed_draws[model] = rng.integers(0, s, (n_boot, s)) if s >= 3 else None
    points: dict[str, np.ndarray] = {}
    boots: dict[str, np.ndarray] = {}
    for metric in ("maj", "pass"):
        point, boot = np.zeros(len(ks)), np.zeros((n_boot, len(ks)))
        for j, k in enumerate(ks):
            for sign, model in ((-1.0, base), (1.0, treated)):
                m = _per_problem_matrix(per_problem, model, f"{metric}@{k}", ids)
                point[j] += sign * m.mean()
                draws = seed_draws[model]
                if draws is None:
                    boot[:, j] += sign * m.mean(0)[problems].mean(axis=1)
                else:
                    by_seed = m[draws].mean(axis=1)  # [n_boot, problems]
                    boot[:, j] += sign * np.take_along_axis(by_seed, problems, 1).mean(axis=1)
        points[metric], boots[metric] = point, boot
    return points, boots


def paired_differences(
    per_problem: pd.DataFrame, ks: Sequence[int], *models: str, **kw
) -> pd.DataFrame:
    """Per K and metric (maj, pass): treated − base with its paired 95% percentile bootstrap CI
    (``paired_bootstrap(per_problem, ks, base, treated, n_boot=, seed=)``): columns K, metric,
    diff, low, high."""
    return difference_table(ks, *paired_bootstrap(per_problem, ks, *models, **kw))


def difference_table(
    ks: Sequence[int], points: dict[str, np.ndarray], boots: dict[str, np.ndarray]
) -> pd.DataFrame:
    """``paired_bootstrap``'s output as rows K, metric, diff, low, high (95% percentile CI)."""
    rows = []
    for j, k in enumerate(ks):
        for metric in ("maj", "pass"):
            low, high = np.percentile(boots[metric][:, j], [2.5, 97.5])
            rows.append(
                {"K": int(k), "metric": metric, "diff": points[metric][j], "low": low, "high": high}
            )
    return pd.DataFrame(rows)


def crossover_k(ks: Sequence[int], diff: Sequence[float]) -> float | None:
    """K* where the treated − base Pass@K difference changes sign for good: positive at the
    smallest K, at or below 0 from some K on up to the largest. Interpolated linearly in
    log2 K between the last K with a positive difference and the next. ``None`` when the
    difference is positive at the largest K (no crossing yet) or not positive at the smallest
    (no sign change)."""
    d = np.asarray(diff, dtype=float)
    if d[0] <= 0 or d[-1] > 0:
        return None
    last_pos = int(np.flatnonzero(d > 0).max())
    x0, x1 = np.log2(ks[last_pos]), np.log2(ks[last_pos + 1])
    y0, y1 = d[last_pos], d[last_pos + 1]
    return float(2 ** (x0 + (x1 - x0) * y0 / (y0 - y1)))


def crossover(
    ks: Sequence[int],
    point: np.ndarray,
    boots: np.ndarray,
    alpha: float = 0.05,
    saturated_from: int | None = None,
) -> dict[str, Any]:
    """``crossover_k`` of the point differences and its percentile CI over the bootstrap
    replicates that cross; ``share`` is the fraction of replicates with a crossing (the CI
    means little when it is small). ``saturated_from``: the index of the first K from which
    both models' Pass@K are within ``SATURATED`` of 1; curves that meet there meet at the
    ceiling, which is no crossing, so only the Ks before it are searched."""
    n = len(ks) if saturated_from is None else saturated_from
    ks, point, boots = list(ks)[:n], np.asarray(point)[:n], np.asarray(boots)[:, :n]
    if n < 2:
        return {"k_star": None, "share": 0.0, "saturated_from": saturated_from}
    k_star = crossover_k(ks, point)
    reps = [crossover_k(ks, b) for b in boots]
    crossing = np.array([r for r in reps if r is not None])
    out: dict[str, Any] = {"k_star": k_star, "share": len(crossing) / max(len(reps), 1)}
    out["saturated_from"] = saturated_from
    if len(crossing):
        low, high = np.quantile(crossing, [alpha / 2, 1 - alpha / 2])
        out |= {"low": float(low), "high": float(high)}
    return out


def solved_sets(per_problem: pd.DataFrame, base: str, treated: str, k: int) -> dict[str, int]:
    """At K: problems each model solves (pass@K > 0.5 averaged over its seeds): base only,
    treated only, both, neither."""
    solved = {}
    for model in (base, treated):
        t = per_problem[per_problem["model"] == model].groupby("problem_id")[f"pass@{k}"].mean()
        solved[model] = set(t.index[t > 0.5])
    ids = set(per_problem["problem_id"])
    b, t = solved[base], solved[treated]
    return {
        "base_only": len(b - t),
        "treated_only": len(t - b),
        "both": len(b & t),
        "neither": len(ids - b - t),
    }


def verdict(diffs: pd.DataFrame, pass_base: float, pass_treated: float) -> tuple[str, str]:
    """The DeepSeekMath claim by a stated rule, from the paired differences and both models'
    Pass@K_max: (label, the numbers it used).

    - both Pass@K_max within 0.005 of 1 → "saturated: uninformative at large K";
    - the ΔPass@K_max CI above 0 → "not reproduced: RL raises Pass@K";
    - the ΔMaj@K CI above 0 at every K ≥ 2, and the ΔPass@K_max CI containing 0 or below it,
      both Pass@K_max below 1 → "reproduced";
    - otherwise "inconclusive".
    """
    k_max = int(diffs["K"].max())
    maj = diffs[(diffs["metric"] == "maj") & (diffs["K"] >= 2)]
    last = diffs[(diffs["metric"] == "pass") & (diffs["K"] == k_max)].iloc[0]
    maj_up = bool(len(maj)) and bool((maj["low"] > 0).all())
    used = (
        f"ΔMaj@K CI above 0 at {int((maj['low'] > 0).sum())} of {len(maj)} K ≥ 2 "
        f"(lowest bound {maj['low'].min():+.3f}); ΔPass@{k_max} = {last['diff']:+.3f} "
        f"[{last['low']:+.3f}, {last['high']:+.3f}]; Pass@{k_max} {pass_base:.3f} (base), "
        f"{pass_treated:.3f} (RL)"
    )
    if min(pass_base, pass_treated) >= 1 - SATURATED:
        return "saturated: uninformative at large K", used
    if last["low"] > 0:
        return "not reproduced: RL raises Pass@K", used
    if maj_up and last["low"] <= 0 and max(pass_base, pass_treated) < 1:
        return "reproduced", used
    return "inconclusive", used


def study_numbers(
    per_problem: pd.DataFrame,
    summary: pd.DataFrame,
    ks: Sequence[int],
    base: str,
    treated: str,
    seed: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """`compare`'s numbers plus the paired differences, the verdict, the solved sets and the
    Pass@K crossover K* with its bootstrap CI."""
    numbers = compare(summary, base, treated)
    points, boots = paired_bootstrap(per_problem, ks, base, treated, seed=seed)
    diffs = difference_table(ks, points, boots)
    label, used = verdict(diffs, numbers["passmax_sft"], numbers["passmax_rl"])
    numbers |= {
        "verdict": label,
        "verdict_numbers": used,
        "solved": solved_sets(per_problem, base, treated, ks[-1]),
        "crossover": crossover(
            ks, points["pass"], boots["pass"], saturated_from=_saturated_from(summary, ks)
        ),
    }
    return numbers, diffs


def _saturated_from(summary: pd.DataFrame, ks: Sequence[int]) -> int | None:
    """The index of the first K from which every model's Pass@K is within ``SATURATED`` of 1
    (None when they never all are, up to the largest K)."""
    low = summary.groupby("K")["pass@K"].min().reindex(list(ks)).to_numpy()
    at_ceiling = low >= 1 - SATURATED
    if not at_ceiling[-1]:
        return None
    first = len(ks) - int(np.argmin(at_ceiling[::-1])) if not at_ceiling.all() else 0
    return first


def _window_slope(steps: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """OLS slope of the held-out loss over the window's logged points, per 100 steps, and its
    t statistic (slope / standard error from the residuals; needs >= 3 points)."""
    if len(steps) < 2 or np.ptp(steps) == 0:
        return {}
    x = steps - steps.mean()
    slope = float((x * (loss - loss.mean())).sum() / (x * x).sum())
    out = {"sft_slope_per_100": 100 * slope, "sft_window_points": float(len(steps))}
    if len(steps) >= 3:
        resid = loss - loss.mean() - slope * x
        se = float(np.sqrt((resid**2).sum() / (len(steps) - 2) / (x * x).sum()))
        out["sft_slope_t"] = slope / se if se > 0 else float("-inf") * np.sign(-slope)
    return out


def sft_plateau(sft_df: pd.DataFrame, frac: float = 0.2) -> dict[str, float] | None:
    """Final held-out loss and its change over the last `frac` of the SFT steps."""
    d = sft_df.dropna(subset=[SFT_STEP, "sft/heldout_loss"]) if len(sft_df) else sft_df
    if len(d) == 0:
        return None
    d = d.sort_values(SFT_STEP)
    steps, loss = d[SFT_STEP].to_numpy(), d["sft/heldout_loss"].to_numpy()
    start = steps[-1] - frac * (steps[-1] - steps[0])
    # the last logged step at or before the window's start, so the change spans the whole window
    # even when only the final evaluation falls inside it
    i = max(int(np.searchsorted(steps, start, side="right")) - 1, 0)
    if i == len(steps) - 1 and len(steps) > 1:
        i -= 1
    floor = d.get("sft/heldout_loss_floor")
    floor_value = (
        {} if floor is None or floor.isna().all() else {"sft_loss_floor": float(floor.max())}
    )
    return (
        floor_value
        | _window_slope(steps[i:], loss[i:])
        | {
            "sft_final_step": float(steps[-1]),
            "sft_final_loss": float(loss[-1]),
            "sft_window_start_step": float(steps[i]),
            "sft_loss_change_last": float(loss[-1] - loss[i]),
            "sft_loss_rel_change_last": float((loss[-1] - loss[i]) / abs(loss[i]))
            if loss[i]
            else 0.0,
        }
    )


# ------------------------------------------------------------------------------------ report
def _ks_text(ks: Sequence[int]) -> str:
    return ", ".join(str(k) for k in ks)


def _direction(gap: float, eps: float = 5e-4) -> str:
    return "raises" if gap > eps else "lowers" if gap < -eps else "leaves unchanged"


def result_lines(c: dict[str, Any]) -> list[str]:
    """The measured result in words, one bullet per question of theory.md §7."""
    rl, sft, k0, kx = c["treated"], c["base"], c["k_min"], c["k_max"]
    if c["majk_rl_gt_sft_all"]:
        maj = f"{rl} raises Maj@K over {sft} at every K ({k0}–{kx})"
    else:
        maj = (
            f"{rl} does not raise Maj@K at every K: not at K = {_ks_text(c['majk_not_raised_ks'])}"
        )
    n_sig, n_k = len(c["majk_ci_disjoint_ks"]), len(c["ks"])
    band = c.get("interval", "95% CI")
    maj += f"; {rl}'s {band} lies above {sft}'s at {n_sig} of {n_k} Ks."
    p1 = f"{rl} {_direction(c['gap_pass1'])} Pass@{k0}: {c['pass1_sft']:.3f} ({sft}) → "
    p1 += f"{c['pass1_rl']:.3f} ({rl}), {c['gap_pass1']:+.3f}."
    trend = "narrows" if abs(c["gap_passmax"]) < abs(c["gap_pass1"]) else "widens"
    if np.sign(c["gap_passmax"]) * np.sign(c["gap_pass1"]) < 0:
        trend = "reverses sign"
    gap = f"The {rl} − {sft} Pass@K gap is {c['gap_pass1']:+.3f} at K = {k0} and "
    gap += f"{c['gap_passmax']:+.3f} at K = {kx}: it {trend} as K grows."
    if c["crossing_k"] is None:
        cross = f"The Pass@K curves do not cross within K ≤ {kx}"
        if c["first_meet_k"] is None:
            cross += f" ({rl} stays above {sft})."
        else:
            below = _ks_text(c["passk_not_raised_ks"])
            cross += f" from above: {rl} is at or below {sft} at K = {below} but above at K = {kx}."
    elif c["crossing_k"] == k0:
        cross = f"{rl}'s Pass@K is at or below {sft}'s at every K."
    else:
        cross = f"The Pass@K curves meet or cross at K = {c['crossing_k']}: from there on {rl}'s "
        cross += f"Pass@K is at or below {sft}'s."
    lines = [f"- {maj}", f"- {p1}", f"- {gap}", f"- {cross}"]
    if "verdict" in c:
        s = c["solved"]
        lines.append(
            f"- Solved at K = {kx} (pass@{kx} > 0.5): {sft} only {s['base_only']}, {rl} only "
            f"{s['treated_only']}, both {s['both']}, neither {s['neither']}."
        )
        x = c["crossover"]
        at = x.get("saturated_from")
        if x["k_star"] is None and at is not None:
            cross_text = (
                f"- No crossover K*: from K = {c['ks'][at]} on both Pass@K are within "
                f"{SATURATED} of 1, and curves that meet at the ceiling do not cross; before it "
                "ΔPass@K does not turn from > 0 to ≤ 0"
            )
        elif x["k_star"] is None:
            cross_text = (
                f"- No crossover K* within K ≤ {kx} (ΔPass@K does not turn from > 0 to ≤ 0)"
            )
        else:
            cross_text = f"- Crossover K* = {x['k_star']:.1f} (log2-interpolated)"
        if "low" in x:
            cross_text += (
                f"; {x['share']:.0%} of the paired bootstrap replicates cross, at K* in "
                f"[{x['low']:.1f}, {x['high']:.1f}] (95% of those)."
            )
        else:
            cross_text += "; no bootstrap replicate crosses."
        lines.append(cross_text)
        lines.append(
            f"- DeepSeekMath claim (Maj@K up at every K ≥ 2, no Pass@K gain at K_max, neither "
            f"saturated; paired 95% bootstrap CIs of {rl} − {sft}): **{c['verdict']}** — "
            f"{c['verdict_numbers']}."
        )
    return lines


def plateau_lines(p: dict[str, float] | None) -> list[str]:
    if p is None:
        return ["No sft_metrics.jsonl was found under runs/, so the SFT plateau is not reported."]
    return [
        f"Final held-out loss {p['sft_final_loss']:.4f} at SFT step {p['sft_final_step']:g}; "
        f"over the last 20% of the SFT steps (from step {p['sft_window_start_step']:g}) it "
        f"changed by {p['sft_loss_change_last']:+.4f} ({p['sft_loss_rel_change_last']:+.1%})."
        + _floor_text(p)
    ]


PLATEAU_REL_CHANGE = 0.05  # |change| over the last window below this share: flat
SLOPE_T = 2.0  # the window's slope counts as a trend when |t| exceeds this
PLATEAU_FLOOR_RATIO = 1.10  # within 10% of the imitation floor: at the data's limit


def _floor_text(p: dict[str, float]) -> str:
    """How far the final loss is from the loss of a model imitating the demonstrations exactly,
    and what that says, by a stated rule: "the data limits the base" only when the loss is
    within 10% of the floor and changed by less than 5% over the last window; "still
    improving" when it fell by more and, with >= 3 points in the window, the fall is larger
    than its noise (the OLS slope's t statistic below -2)."""
    t = p.get("sft_slope_t")
    beyond_noise = t is None or t < -SLOPE_T
    still = p["sft_loss_rel_change_last"] < -PLATEAU_REL_CHANGE and beyond_noise
    trend = ""
    if still:
        trend = " It is still improving (it fell by more than 5% over that window"
        trend += f", slope t = {t:.1f})." if t is not None and np.isfinite(t) else ")."
    if "sft_loss_floor" not in p or p["sft_loss_floor"] <= 0:
        return trend
    floor, final = p["sft_loss_floor"], p["sft_final_loss"]
    text = (
        f" The irreducible held-out loss of a model that imitates the task's noisy demonstrations "
        f"exactly is {floor:.4f}; the base ends at {final / floor:.0%} of it."
    )
    if final <= PLATEAU_FLOOR_RATIO * floor and not still:
        return (
            text
            + " Further SFT cannot lower it meaningfully: the data, not the SFT budget, limits the base."
        )
    return text + trend


def _table_note(summary: pd.DataFrame) -> str:
    """What the table's brackets are, per model: a 95% percentile-bootstrap CI (over problems,
    or seeds x problems with >= 3 seeds) or, with 2 seeds, the range of the seeds' means."""
    kinds = summary.groupby("model", sort=False)[["seeds", "interval"]].first()
    parts = [
        f"{m}: range over its {int(r.seeds)} seeds"
        if r.interval == "range"
        else f"{m}: 95% percentile-bootstrap CI over {'seeds × problems' if r.seeds >= 3 else 'problems'}"
        for m, r in kinds.iterrows()
    ]
    return "Mean over problems (and seeds); in brackets, " + "; ".join(parts) + "."


def report_markdown(
    summary: pd.DataFrame, numbers: dict[str, Any] | None, plateau: dict | None, meta: str
) -> str:
    """report.md: the result in words, the SFT plateau, the table and the figure links."""
    lines = ["# Pass@K and Maj@K after RL (DeepSeekMath §5.2.2 at toy scale)", "", meta, ""]
    lines += ["## Result", ""]
    lines += result_lines(numbers) if numbers else ["Only one model: nothing to compare."]
    lines += ["", "## SFT base plateau", "", *plateau_lines(plateau), "", "## Table", ""]
    lines += [_table_note(summary), ""]
    lines += [markdown_table(summary), "", "## Figures", ""]
    lines += ["- Maj@K and Pass@K vs K: [passk_majk.png](passk_majk.png) ([PDF](passk_majk.pdf))"]
    if plateau is not None:
        lines += ["- SFT curve: [sft_curve.png](sft_curve.png) ([PDF](sft_curve.pdf))"]
    return "\n".join([*lines, ""])


# ------------------------------------------------------------------------------------ sharpening
def sharpening(samples: pd.DataFrame) -> dict[str, Any]:
    """Sharpening diagnostics of one model's samples: per-problem success rates c/n, distinct
    parsed answers per problem, the shares of problems never and always solved, and (with a
    ``logp`` column) the mean token entropy estimated as −Σ log p / Σ tokens of the sampled
    completions (unbiased for the sampling distribution's entropy per token)."""
    by = samples.groupby("problem_id")
    rate = by["correct"].mean().to_numpy(dtype=float)
    distinct = by["answer"].nunique(dropna=True).to_numpy(dtype=float)
    out: dict[str, Any] = {
        "success": rate,
        "distinct": distinct,
        "never_solved": float((rate == 0).mean()),
        "always_solved": float((rate == 1).mean()),
        "distinct_mean": float(distinct.mean()),
    }
    if "logp" in samples and samples["logp"].notna().all():
        out["token_entropy"] = float(-samples["logp"].sum() / max(samples["length"].sum(), 1))
    return out


def sharpening_lines(sharp: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for model, d in sharp.items():
        text = (
            f"- {model}: never solved {d['never_solved']:.1%} of the problems, always solved "
            f"{d['always_solved']:.1%}; {d['distinct_mean']:.2f} distinct answers per problem"
        )
        if "token_entropy" in d:
            text += f"; mean token entropy {d['token_entropy']:.3f} nats"
        lines.append(text + ".")
    return lines


# ------------------------------------------------------------------------------------ driver
def _eval_dirs(study_dir: Path) -> list[Path]:
    dirs = sorted(p.parent for p in (study_dir / "eval").glob("*/samples.parquet"))
    if not dirs:
        raise ValueError(f"{study_dir}/eval holds no eval directories (samples.parquet)")
    return dirs


def _first_sft_curve(study_dir: Path) -> pd.DataFrame:
    """sft_metrics.jsonl of the first run (runs/seed_<s>, lowest seed); empty if none."""

    def seed_of(path: Path) -> tuple[int, str]:
        tail = path.parent.name.rsplit("_", 1)[-1]
        return (int(tail) if tail.isdigit() else 1 << 60, path.parent.name)

    paths = sorted((study_dir / "runs").glob("*/sft_metrics.jsonl"), key=seed_of)
    return load_metrics(paths[0].parent, "sft_metrics.jsonl") if paths else pd.DataFrame()


def analyze_study(
    study_dir: str | Path,
    out_dir: str | Path | None = None,
    ks: Sequence[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Tables, figures and report.md of a study directory (written to out_dir, default study_dir).

    Returns the key numbers (see `compare`, `sft_plateau`) and "files": the written paths.
    """
    study_dir = Path(study_dir)
    out = Path(out_dir) if out_dir is not None else study_dir
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((study_dir / "study.json").read_text())
    evals = [load_eval(d) for d in _eval_dirs(study_dir)]
    n_min = min(int(s.groupby("problem_id").size().min()) for s, _ in evals)
    ks = sorted(int(k) for k in (ks or config.get("ks") or default_ks(n_min)))
    per_problem = study_per_problem(evals, ks)
    summary = summarize_models(per_problem, ks, n_boot=n_boot, seed=seed)
    models = list(dict.fromkeys(summary["model"]))
    base = models[0]
    treated = "RL" if "RL" in models[1:] else (models[1] if len(models) > 1 else None)
    numbers, diffs = (
        study_numbers(per_problem, summary, ks, base, treated, seed) if treated else (None, None)
    )
    if diffs is not None:
        diffs.to_csv(out / "paired_differences.csv", index=False)
    sft = _first_sft_curve(study_dir)
    plateau = sft_plateau(sft)
    sharp: dict[str, dict[str, Any]] = {}
    for model in models:
        parts = [smp for smp, summ in evals if str(summ.get("model", "model")) == model]
        sharp[model] = sharpening(pd.concat(parts, ignore_index=True))

    files = {"csv": out / "passk_majk.csv", "tex": out / "passk_majk.tex"}
    summary.to_csv(files["csv"], index=False)
    files["tex"].write_text(latex_table(summary))
    per_problem.to_csv(out / "per_problem.csv", index=False)
    files["per_problem"] = out / "per_problem.csv"
    files["figure"] = plot_passk_majk(summary, out / "passk_majk")
    if plateau is not None:
        files["sft_curve"] = plot_sft_curve(sft, out / "sft_curve")
    files["sharpening"] = plot_sharpening(
        {m: d["success"] for m, d in sharp.items()},
        {m: d["distinct"] for m, d in sharp.items()},
        out / "sharpening",
    )
    n_problems = per_problem.groupby("model")["problem_id"].nunique().to_dict()
    seeds = summary.groupby("model")["seeds"].first().to_dict()
    meta = f"Study `{study_dir}`: K = {_ks_text(ks)}; " + "; ".join(
        f"{m}: {seeds[m]} seed(s), {n_problems[m]} problems" for m in models
    )
    meta += f"; at least n = {n_min} samples per problem."
    files["report"] = out / "report.md"
    report = report_markdown(summary, numbers, plateau, meta)
    report += "\n## Sharpening\n\n" + "\n".join(sharpening_lines(sharp)) + "\n"
    report += "\n- Histograms: [sharpening.png](sharpening.png) ([PDF](sharpening.pdf))\n"
    files["report"].write_text(report)
    scalars = {
        m: {k: v for k, v in d.items() if not isinstance(v, np.ndarray)} for m, d in sharp.items()
    }
    return (
        (numbers or {})
        | (plateau or {})
        | {"ks": ks, "files": files, "sharpening": scalars, "summary": summary}
    )


def analyze_tiers(study_dir: str | Path, tiers: Sequence[str]) -> dict[str, Any]:
    """The study across tiers (each analysed by ``analyze_study`` in ``<study_dir>/<tier>``): the
    Figure 7 layout (``passk_majk_tiers``), ``tiers.csv`` (one row per tier: Pass@1, Maj@K_max,
    Pass@K_max of both models, the verdict, K*) and a report.md linking the tiers' reports."""
    study_dir = Path(study_dir)
    results = {t: analyze_study(study_dir / t) for t in tiers}
    figure = plot_tiers(
        {t: r["summary"] for t, r in results.items()}, study_dir / "passk_majk_tiers"
    )
    rows = []
    for t, r in results.items():
        if "verdict" not in r:
            continue
        x = r["crossover"]
        rows.append(
            {
                "tier": t,
                "k_max": r["k_max"],
                "pass1_sft": r["pass1_sft"],
                "pass1_rl": r["pass1_rl"],
                "passmax_sft": r["passmax_sft"],
                "passmax_rl": r["passmax_rl"],
                "verdict": r["verdict"],
                "k_star": x["k_star"],
                "k_star_low": x.get("low"),
                "k_star_high": x.get("high"),
                **{f"solved_{k}": v for k, v in r["solved"].items()},
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(study_dir / "tiers.csv", index=False)
    lines = ["# Pass@K and Maj@K after RL, per tier (DeepSeekMath Figure 7 layout)", ""]
    lines += ["![tiers](passk_majk_tiers.png)", ""]
    for row in rows:
        lines.append(
            f"- **{row['tier']}**: Pass@1 {row['pass1_sft']:.3f} → {row['pass1_rl']:.3f}; "
            f"Pass@{row['k_max']} {row['passmax_sft']:.3f} (SFT) vs {row['passmax_rl']:.3f} (RL); "
            f"verdict **{row['verdict']}** (details: [{row['tier']}/report.md]({row['tier']}/report.md))."
        )
    (study_dir / "report.md").write_text("\n".join([*lines, ""]))
    files = {"figure": figure, "csv": study_dir / "tiers.csv", "report": study_dir / "report.md"}
    return {"files": files, "table": table}
