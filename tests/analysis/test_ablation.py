"""What each left-out piece moved (analysis/ablation.py): the stated rule on hand-made fits."""

from __future__ import annotations

import math

import pandas as pd

from analysis.ablation import RULE, component_effects, effect_verdict, effects_markdown, same_points

NAN = math.nan


def _fit(name, a, a_ci, b=2.0, b_ci=(1.5, 2.5), c=1e5, c_ci=(8e4, 1.2e5), has_ci=True):
    return {
        "ablate": name,
        "A": a,
        "A_low": a_ci[0],
        "A_high": a_ci[1],
        "B": b,
        "B_low": b_ci[0],
        "B_high": b_ci[1],
        "C_mid": c,
        "C_mid_low": c_ci[0],
        "C_mid_high": c_ci[1],
        "has_ci": has_ci,
    }


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _fit("none", 0.90, (0.88, 0.92)),
            _fit("loss", 0.80, (0.77, 0.83)),  # A's intervals apart: moves A, lower
            _fit("lag", 0.91, (0.89, 0.93), c=3e5, c_ci=(2.5e5, 3.5e5)),  # only C_mid apart
            _fit("loss_agg", 0.89, (0.86, 0.92), b=2.2, b_ci=(1.9, 2.6)),  # all overlap
            _fit("fp32_lm_head", 0.91, (NAN, NAN), has_ci=False),  # 2 seeds: no interval
            _fit("drop_solved", 0.95, (0.93, 0.97)),  # moves A, higher
            _fit("zero_variance", 0.90, (0.88, 0.92)),  # measured the recipe's own points
        ]
    )


def test_each_branch_of_the_rule() -> None:
    table = _table().assign(setting=lambda t: "ablate=" + t["ablate"])
    effects = component_effects(table, "ablate", identical=frozenset({"ablate=zero_variance"}))
    effects = effects.set_index("left_out")["verdict"]
    assert effects.to_dict() == {
        "loss": "moves A (without it A is lower)",
        "lag": "moves efficiency (B / C_mid)",
        "loss_agg": "no detectable effect",
        "fp32_lm_head": "no interval",
        "drop_solved": "moves A (without it A is higher)",
        "zero_variance": "identical to the recipe (the piece never acted)",
    }


def test_touching_intervals_overlap_and_an_undefined_b_is_no_evidence() -> None:
    recipe = pd.Series(_fit("none", 0.9, (0.88, 0.92)))
    touching = pd.Series(_fit("x", 0.86, (0.84, 0.88)))  # A differs: not identical
    assert effect_verdict(recipe, touching) == "no detectable effect"
    flat = pd.Series(_fit("y", 0.9, (0.88, 0.92), b=NAN, b_ci=(NAN, NAN), c=NAN, c_ci=(NAN, NAN)))
    assert effect_verdict(recipe, flat) == "no detectable effect"


def test_the_markdown_names_the_rule_and_no_recipe_gives_no_table() -> None:
    text = effects_markdown(component_effects(_table(), "ablate"))
    assert "| loss | 0.8 [0.77, 0.83] |" in text and text.rstrip().endswith(RULE + ".")
    assert "| fp32_lm_head | 0.91 |" in text  # no interval shown when there is none
    assert component_effects(_table()[1:], "ablate").empty


def test_same_points_ignores_run_names_but_not_values() -> None:
    def pts(setting, runs, bump=0.0):
        return [
            {
                "run": r,
                "setting": setting,
                "step": s,
                "compute": 10.0 * s,
                "value": 0.5 + s / 10 + bump,
            }
            for i, r in enumerate(runs)
            for s in range(3)
        ]

    points = pd.DataFrame(
        pts("none", ["0", "1"]) + pts("a", ["9", "10"]) + pts("b", ["2", "3"], 1e-9)
    )
    assert same_points(points, "a", "none")  # runs 9, 10 are seeds 0, 1 like runs 0, 1
    assert not same_points(points, "b", "none")  # one value off in the 9th digit
    assert not same_points(points, "c", "none")  # no runs
