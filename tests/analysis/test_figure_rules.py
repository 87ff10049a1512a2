"""What a reader of a figure relies on (issue 16, item 9): integer step ticks, accuracy axes
within [0, 1], the seeds behind each line and the evaluation set said on the figure, and no
curve of pure floating-point noise. The figures are captured before rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis.plots
import analysis.sweep_plots
from analysis.plots import is_float_noise, plot_learning_curves, runs_note
from analysis.sweep import eval_notes, eval_set_text, note_for
from analysis.sweep_plots import plot_against_knob


@pytest.fixture
def captured(monkeypatch) -> list:
    figures = []

    def keep(fig, path) -> list[Path]:
        figures.append(fig)
        return [Path(f"{path}.png")]

    monkeypatch.setattr(analysis.plots, "save_figure", keep)
    monkeypatch.setattr(analysis.sweep_plots, "save_figure", keep)
    return figures


def _curves(values: dict[int, list[float]], steps: list[int]) -> pd.DataFrame:
    """One row per run (seed) per step: {seed: values over steps}."""
    return pd.DataFrame(
        [
            {"run": f"s{seed}", "seed": seed, "train/step": step, "m": v, "setting": "a"}
            for seed, vs in values.items()
            for step, v in zip(steps, vs, strict=True)
        ]
    )


def test_step_ticks_are_whole_numbers_and_accuracy_stays_in_the_unit_interval(captured) -> None:
    steps = [0, 1, 2]  # matplotlib's default locator ticks this at 0, 0.25, 0.5, ...
    df = _curves({0: [0.9, 0.99, 1.0], 1: [0.85, 1.0, 1.0]}, steps)
    df = df.rename(columns={"m": "eval/sampled_accuracy"})
    plot_learning_curves(df, "eval/sampled_accuracy", "setting", "x", n_boot=50)
    (ax,) = [a for a in captured[0].axes if a.get_visible()]
    ticks = ax.get_xticks()
    assert np.allclose(ticks, np.round(ticks)) and len(ticks) >= 3
    yticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert min(yticks) >= 0.0 and max(yticks) <= 1.0 + 1e-9
    assert ax.get_ylim()[1] <= 1.01 and ax.get_ylim()[0] >= 0.8  # hugs the data


def test_the_figure_says_how_many_seeds_and_which_evaluation_set(captured) -> None:
    df = _curves({0: [0.2, 0.4], 1: [0.3, 0.5], 2: [0.1, 0.6]}, [0, 10])
    df = df.rename(columns={"m": "eval/sampled_accuracy"})
    note = eval_set_text("held-out eval during training", {200}, {8})
    plot_learning_curves(df, "eval/sampled_accuracy", "setting", "x", n_boot=50, note=note)
    title = captured[0].get_suptitle()
    assert "mean of 3 seeds per line" in title
    assert "held-out eval during training: 200 problems × 8 samples" in title
    assert runs_note([1]) == "one run per line" and runs_note([2, 3]).startswith("mean of 2-3")


def test_a_curve_of_floating_point_noise_gets_no_figure(captured, capsys) -> None:
    df = _curves({0: [0.0, 3e-15, -2e-14], 1: [1e-16, 0.0, 4e-15]}, [0, 1, 2])
    assert plot_learning_curves(df, "m", None, "x", n_boot=20) == []
    assert not captured and "floating-point noise" in capsys.readouterr().out
    assert is_float_noise([1e-12, np.nan]) and not is_float_noise([1e-12, 1e-3])
    assert not is_float_noise([np.nan])  # nothing to judge


def test_final_vs_knob_panels_name_their_evaluation_sets(captured) -> None:
    runs = [{"config": {"eval.n_problems": 200, "eval.n_samples": 8}}] * 2
    per_problem = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 3, "problem_id": [0, 1, 2] * 2, "n": 64})
    notes = eval_notes(runs, per_problem)
    assert note_for("eval/sampled_accuracy", notes) == (
        "held-out eval during training: 200 problems × 8 samples"
    )
    assert note_for("maj@16", notes) == "rlexp-eval of the final policy: 3 problems × 64 samples"
    assert note_for("train/reward_mean", notes) is None
    values = pd.DataFrame(
        [
            {"run": f"{lam}-{s}", "metric": m, "value": v, "lam": lam, "setting": f"lam={lam}"}
            for lam in (0.0, 1.0)
            for s in (0, 1)
            for m, v in (("eval/sampled_accuracy", 0.5 + 0.1 * s), ("maj@16", 0.7 + lam / 10))
        ]
    )
    panel_notes = {m: note_for(m, notes) for m in ("eval/sampled_accuracy", "maj@16")}
    plot_against_knob(values, list(panel_notes), "lam", "x", n_boot=20, panel_notes=panel_notes)
    titles = [a.get_title() for a in captured[0].axes if a.get_visible()]
    assert titles == list(panel_notes.values())
