"""What each piece of a recipe moves, from a leave-one-out sweep's compute fits (ScaleRL's question:
the asymptote A, or only the efficiency B / C_mid?).

Input: ``scaling_fit.csv``'s rows (one per setting, with A, B, C_mid and their CIs), one of which
is the whole recipe. The rule, stated in the report and applied per left-out piece:

* **identical to the recipe** when the member measured exactly the recipe's points, seed for
  seed (the piece never acted: an FP32 head on a float32 model, or dropping solved prompts in a
  run too short to draw any prompt twice);
* **moves A** when the member's A interval and the recipe's do not overlap;
* otherwise **moves efficiency** when the B or the C_mid intervals do not overlap;
* otherwise **no detectable effect**: every interval overlaps the recipe's;
* **no interval** when either fit has none (fewer than 3 seeds, or a failed refit).

Two 95 % intervals that do not overlap imply a difference at well below the 5 % level, so the
rule is conservative: an effect it calls undetected may still be there.
"""

from __future__ import annotations

import math

import pandas as pd

RULE = (
    "identical: the member measured the recipe's points exactly (the piece never acted); moves A: the A intervals of member and recipe do not overlap; moves efficiency: they "
    "overlap but the B or C_mid intervals do not; no detectable effect: every interval overlaps; "
    "no interval: fewer than 3 seeds or a failed refit (95 % jackknife intervals over seeds)"
)


def _interval(row: pd.Series, param: str) -> tuple[float, float] | None:
    low, high = float(row.get(f"{param}_low", math.nan)), float(row.get(f"{param}_high", math.nan))
    return None if math.isnan(low) or math.isnan(high) else (low, high)


def _disjoint(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and (a[1] < b[0] or b[1] < a[0])


def same_points(points: pd.DataFrame, setting: str, recipe: str) -> bool:
    """Did ``setting``'s runs measure exactly ``recipe``'s (step, compute, value) points, run for
    run in member order (seeds), whatever the run directories are called?"""

    def runs(name: str) -> list[list[tuple]]:
        part = points[points["setting"].astype(str) == name]
        order = sorted(part["run"].unique(), key=lambda r: (len(str(r)), str(r)))
        cols = ["step", "compute", "value"]
        return [list(part[part["run"] == r][cols].itertuples(index=False)) for r in order]

    mine, theirs = runs(setting), runs(recipe)
    return bool(mine) and mine == theirs


def effect_verdict(recipe: pd.Series, member: pd.Series, identical: bool = False) -> str:
    """The rule of the module docstring for one left-out piece (``identical``: ``same_points``)."""
    if identical:
        return "identical to the recipe (the piece never acted)"
    if not (bool(recipe.get("has_ci")) and bool(member.get("has_ci"))):
        return "no interval"
    if _disjoint(_interval(member, "A"), _interval(recipe, "A")):
        lower = float(member["A"]) < float(recipe["A"])
        return f"moves A (without it A is {'lower' if lower else 'higher'})"
    if any(_disjoint(_interval(member, p), _interval(recipe, p)) for p in ("B", "C_mid")):
        return "moves efficiency (B / C_mid)"
    return "no detectable effect"


def component_effects(
    table: pd.DataFrame, knob: str, recipe: str = "none", identical: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """One row per left-out piece (``table[knob]`` ≠ ``recipe``): its A, B, C_mid with CIs, the
    recipe's A, and ``verdict`` by ``effect_verdict``; ``identical``: the settings (``table``'s
    ``setting``) that measured the recipe's points. Empty without the recipe's row."""
    values = table[knob].astype(str)
    if recipe not in set(values):
        return pd.DataFrame()
    base = table[values == recipe].iloc[0]
    rows = []
    for _, member in table[values != recipe].iterrows():
        row = {"left_out": member[knob]}
        for p in ("A", "B", "C_mid"):
            row |= {p: member[p], f"{p}_low": member[f"{p}_low"], f"{p}_high": member[f"{p}_high"]}
        row |= {
            "recipe_A": base["A"],
            "recipe_A_low": base["A_low"],
            "recipe_A_high": base["A_high"],
        }
        same = str(member.get("setting")) in identical
        rows.append(row | {"verdict": effect_verdict(base, member, same)})
    return pd.DataFrame(rows)


def effects_markdown(effects: pd.DataFrame) -> str:
    """The table as markdown, the rule under it."""

    def ci(r: pd.Series, p: str) -> str:
        if math.isnan(float(r[p])):
            return "n/a"
        low, high = float(r[f"{p}_low"]), float(r[f"{p}_high"])
        bounds = "" if math.isnan(low) else f" [{low:.3g}, {high:.3g}]"
        return f"{float(r[p]):.3g}{bounds}"

    lines = [
        "| left out | A [95 % CI] | B [95 % CI] | C_mid [95 % CI] | recipe's A | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in effects.iterrows():
        recipe = pd.Series(
            {"A": r["recipe_A"], "A_low": r["recipe_A_low"], "A_high": r["recipe_A_high"]}
        )
        lines.append(
            f"| {r['left_out']} | {ci(r, 'A')} | {ci(r, 'B')} | {ci(r, 'C_mid')} | "
            f"{ci(recipe, 'A')} | {r['verdict']} |"
        )
    return "\n".join(lines) + f"\n\nRule: {RULE}.\n"
