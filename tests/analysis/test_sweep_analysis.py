"""Sweep analysis on hand-written multirun directories and a fake W&B API (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import cli
from analysis.load import load_sweep, members_table, wandb_runs
from analysis.scaling import fit_scaling, fit_scaling_runs, scaling_curve
from analysis.sweep import (
    analyze_wandb,
    compute_points,
    run_values,
    split_knobs,
    summarize_settings,
    with_setting,
)
from analysis.sweep_plots import knob_positions

TOKENS_PER_STEP = 500.0


# ------------------------------------------------------------------------------------ writers
def member_rows(
    lam: float, seed: int, steps: int = 12, eval_every: int = 3, critic: bool = True
) -> list[dict[str, Any]]:
    """metrics.jsonl rows shaped like the trainer's: the eval in a step's row is taken before
    that step's update, the cumulative token count after it; a last eval-only row."""
    rng = np.random.default_rng(100 * seed + int(10 * lam))
    a = 0.55 + 0.3 * lam  # larger λ, higher asymptote (made up)
    rows = []
    for step in range(steps + 1):
        row: dict[str, Any] = {"train/step": step}
        if step % eval_every == 0 or step == steps:
            acc = scaling_curve(step * TOKENS_PER_STEP, a, 1.5, 2000.0, 0.2)
            row |= {"eval/sampled_accuracy": float(acc) + 0.01 * seed, "eval/pass@4": 0.9}
        if step < steps:
            row |= {
                "train/reward_mean": 0.3 + 0.02 * step,
                "train/sampled_tokens": (step + 1) * TOKENS_PER_STEP,
            }
            if critic:
                row |= {"adv/var": 0.05 + 0.2 * lam + 0.01 * rng.random(), "adv/mc_var": 0.26}
                row |= {"adv/mc_corr": 0.5 + 0.5 * lam, "adv/mc_mse": 0.2 * (1 - lam)}
        rows.append(row)
    return rows  # fmt: skip


def write_member(
    member: Path,
    overrides: dict[str, Any],
    seed: int,
    rows: list[dict[str, Any]],
    status: str = "finished",
    error: str | None = None,
) -> None:
    member.mkdir(parents=True)
    lam = overrides.get("advantage.lam", 0.95)
    algo = overrides.get("algorithm", "ppo")
    config = {
        "seed": seed,
        "output_dir": str(member),
        "algorithm": {"name": algo, "group_size": overrides.get("algorithm.group_size", 4)},
        "advantage": {"name": "gae" if algo == "ppo" else "group_relative", "lam": lam},
        "logger": {"group": "sweep"},
    }
    (member / "config.yaml").write_text(yaml.safe_dump(config))
    info = {
        "overrides": ["+sweep=test", *[f"{k}={v}" for k, v in overrides.items()], f"seed={seed}"],
        "seed": seed,
        "status": status,
        "error": error,
    }
    (member / "run_info.json").write_text(json.dumps(info))
    (member / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_eval(eval_dir: Path, accuracy: float, n: int = 8, problems: int = 6) -> None:
    """rlexp-eval's samples.parquet: the first round(accuracy·n) samples right, the rest "0"."""
    eval_dir.mkdir(parents=True)
    right = round(accuracy * n)
    rows = [
        {"problem_id": f"p{p}", "sample_idx": i, "completion": "", "answer": "7" if i < right else "0",
         "gold": "7", "correct": i < right, "length": 5}
        for p in range(problems) for i in range(n)
    ]  # fmt: skip
    pd.DataFrame(rows).to_parquet(eval_dir / "samples.parquet")
    (eval_dir / "summary.json").write_text(json.dumps({"model": "RL", "seed": 0}))


LAMS = (0.0, 0.5, 1.0)


def write_lambda_sweep(root: Path) -> Path:
    """λ ∈ {0, 0.5, 1} × seeds {0, 1}, Hydra's numbering; member 5 (λ = 1, seed 1) failed."""
    sweep = root / "multirun"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for i, (lam, seed) in enumerate((lam, s) for lam in LAMS for s in (0, 1)):
        failed = i == 5
        rows = member_rows(lam, seed)[: 4 if failed else None]
        error = "FloatingPointError: non-finite loss/policy = nan at step 3" if failed else None
        member = sweep / str(i)
        write_member(
            member, {"advantage.lam": lam}, seed, rows, "failed" if failed else "finished", error
        )
        if not failed:
            write_eval(member / "eval" / "final", accuracy=0.5 + 0.25 * lam)
    return sweep  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_lambda_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def analyzed(sweep: Path, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("out")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        args = [str(sweep), "--out", str(out), "--n-boot", "50"]
        assert cli.main([*args, "--metric", "eval/sampled_accuracy", "adv/var"]) == 0
    return out, buf.getvalue()


def assert_figure(base: Path) -> None:
    png, pdf = base.with_suffix(".png"), base.with_suffix(".pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000


# ------------------------------------------------------------------------------------ tidy table
def test_tidy_table_has_one_row_per_run_and_step(sweep: Path) -> None:
    df = load_sweep(sweep)
    assert df.attrs["knobs"] == ["seed", "advantage.lam"]  # +sweep=test is the same everywhere
    assert list(df.columns[:4]) == ["run", "status", "seed", "advantage.lam"]
    assert len(df) == 5 * 13 + 4  # five finished members (steps 0..12), the failed one 4 rows
    assert not df.duplicated(["run", "train/step"]).any()
    assert set(df.loc[df["run"] == "5", "status"]) == {"failed"}
    first = df[(df["run"] == "2") & (df["train/step"] == 0)].iloc[0]
    assert (first["advantage.lam"], first["seed"]) == (0.5, 0)
    settings = with_setting(df, df.attrs["knobs"])["setting"]
    assert list(settings.cat.categories) == ["lam=0", "lam=0.5", "lam=1"]


def test_settings_sort_by_value_and_aliases_count_once(tmp_path: Path) -> None:
    sweep = tmp_path / "g"
    for i, g in enumerate((2, 16, 4)):
        write_member(sweep / str(i), {"algorithm.group_size": g}, 0, member_rows(0.5, 0)[:2])
    df = with_setting(load_sweep(sweep), ["algorithm.group_size"])
    assert list(df["setting"].cat.categories) == ["group_size=2", "group_size=4", "group_size=16"]
    # no overrides recorded: the knobs come from config.yaml, and the keys an algorithm choice
    # brings along (advantage.name) are the same knob; the seed always stays its own column
    algos = tmp_path / "algos"
    for i, (algo, seed) in enumerate([("ppo", 0), ("grpo", 1)]):
        write_member(algos / str(i), {"algorithm": algo}, seed, member_rows(0.5, seed)[:2])
        info = json.loads((algos / str(i) / "run_info.json").read_text())
        (algos / str(i) / "run_info.json").write_text(json.dumps(info | {"overrides": []}))
    df = load_sweep(algos)
    assert df.attrs["knobs"] == ["seed", "algorithm.name"]
    assert df.attrs["aliases"] == {"algorithm.name": ["advantage.name"]}
    assert split_knobs(df, df.attrs["knobs"]) == ("algorithm.name", [])


def test_run_values_last_eval_and_mean_diagnostics(sweep: Path) -> None:
    df = with_setting(load_sweep(sweep), ["advantage.lam"])
    values = run_values(df, ["advantage.lam"]).set_index(["run", "metric"])["value"]
    rows = member_rows(0.5, 1)  # member 3
    assert values["3", "eval/sampled_accuracy"] == pytest.approx(rows[-1]["eval/sampled_accuracy"])
    var = [r["adv/var"] for r in rows if "adv/var" in r]
    assert values["3", "adv/var"] == pytest.approx(sum(var) / len(var))
    assert values["5", "eval/sampled_accuracy"] == pytest.approx(
        member_rows(1.0, 1)[3]["eval/sampled_accuracy"]
    )


def test_summary_leaves_failed_members_out(sweep: Path) -> None:
    df = with_setting(load_sweep(sweep), ["advantage.lam"])
    members = df.drop_duplicates("run")
    summary = summarize_settings(run_values(df, ["advantage.lam"]), members, ["advantage.lam"], 50)
    acc = summary[summary["metric"] == "eval/sampled_accuracy"].set_index("setting")
    final = {
        (lam, s): member_rows(lam, s)[-1]["eval/sampled_accuracy"] for lam in LAMS for s in (0, 1)
    }
    assert acc.loc["lam=0.5", "mean"] == pytest.approx((final[0.5, 0] + final[0.5, 1]) / 2)
    assert acc.loc["lam=0.5", "low"] <= acc.loc["lam=0.5", "mean"] <= acc.loc["lam=0.5", "high"]
    assert acc.loc["lam=1", ["runs", "failed"]].tolist() == [1, 1]
    assert acc.loc["lam=1", "mean"] == pytest.approx(final[1.0, 0])  # seed 1 failed
    assert acc.loc["lam=1", "low"] == acc.loc["lam=1", "high"]  # one run: no spread


# ------------------------------------------------------------------------------------ CLI
OUTPUTS = [
    "sweep_metrics.csv", "sweep_runs.csv", "sweep_summary.csv", "sweep_summary.tex",
    "failed_members.csv", "passk_majk.csv", "scaling_fit.csv", "scaling_fit.tex",
]  # fmt: skip
FIGURES = [
    "curve_eval_sampled_accuracy", "curve_adv_var", "final_vs_knob", "adv_diagnostics",
    "passk_majk", "scaling_fit",
]  # fmt: skip


def test_cli_writes_every_table_and_figure(analyzed: tuple[Path, str]) -> None:
    out, printed = analyzed
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in printed
    for name in FIGURES:
        assert_figure(out / name)
    tidy = pd.read_csv(out / "sweep_metrics.csv")
    assert {"run", "status", "seed", "advantage.lam", "setting", "adv/mc_corr"} <= set(tidy.columns)


def test_cli_lists_failed_members_with_their_error(analyzed: tuple[Path, str]) -> None:
    out, printed = analyzed
    failed = pd.read_csv(out / "failed_members.csv")
    assert failed["run"].tolist() == [5] and failed["status"].tolist() == ["failed"]
    assert failed["error"].iloc[0].startswith("FloatingPointError: non-finite loss/policy")
    assert "member 5: failed, left out of curves and summary: FloatingPointError" in printed


def test_cli_summary_tables(analyzed: tuple[Path, str]) -> None:
    out, _ = analyzed
    summary = pd.read_csv(out / "sweep_summary.csv")
    metrics = set(summary["metric"])
    assert {
        "eval/sampled_accuracy",
        "eval/pass@4",
        "adv/var",
        "adv/mc_corr",
        "maj@8",
        "pass@8",
    } <= metrics
    maj = summary[summary["metric"] == "maj@8"].set_index("advantage.lam")["mean"]
    # every problem: 4, 6 or 8 of 8 samples right (λ = 0, 0.5, 1); Maj@8 = 1 only with a majority
    assert maj.to_dict() == pytest.approx({0.0: 0.5, 0.5: 1.0, 1.0: 1.0})
    tex = (out / "sweep_summary.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and "\\toprule" in tex and "GAE $\\lambda$" in tex
    assert "corr($A$, $A_{\\mathrm{MC}}$)" in tex and "\n0.5 & 2 & 0 & $" in tex  # λ, runs, failed
    assert "Pass@4" not in tex and "Pass@8" in tex  # Pass@K of the eval samples instead
    passk = pd.read_csv(out / "passk_majk.csv")
    assert set(passk["setting"]) == {"lam=0", "lam=0.5", "lam=1"} and passk["K"].max() == 8


def test_cli_scaling_fit_table(analyzed: tuple[Path, str]) -> None:
    out, printed = analyzed
    fits = pd.read_csv(out / "scaling_fit.csv").set_index("setting")
    # the accuracies were generated from the curve with A = 0.55 + 0.3λ, B = 1.5, C_mid = 2000
    for lam, name in zip(LAMS, ["lam=0", "lam=0.5", "lam=1"], strict=True):
        assert fits.loc[name, "A"] == pytest.approx(0.55 + 0.3 * lam + 0.005, abs=0.02)
        assert fits.loc[name, "B"] == pytest.approx(1.5, rel=0.15)
        assert fits.loc[name, "C_mid"] == pytest.approx(2000, rel=0.15)
    # 2, 2 and 1 seeds: too few for an interval, said in the CSV, the LaTeX and the printout
    assert fits.loc["lam=1", "runs"] == 1 and not fits["has_ci"].any()
    assert fits["ci"].str.startswith("too few runs for an interval").all()
    assert fits[["A_low", "A_high", "C_mid_low", "C_mid_high"]].isna().all().all()
    tex = (out / "scaling_fit.tex").read_text()
    assert "$C_{\\mathrm{mid}}$" in tex and "$^\\dagger$ too few runs for an interval" in tex
    assert "scaling fit of lam=0: too few runs for an interval (2 runs, needs >= 3)" in printed


def test_compute_points_pair_each_eval_with_the_tokens_before_it(sweep: Path) -> None:
    df = with_setting(load_sweep(sweep), ["advantage.lam"])
    points = compute_points(df)
    run0 = points[points["run"] == "0"].set_index("step")
    assert run0.loc[0, "compute"] == 0.0
    assert run0.loc[3, "compute"] == 3 * TOKENS_PER_STEP  # updates 0, 1, 2 came before
    assert run0.loc[12, "compute"] == 12 * TOKENS_PER_STEP  # the last, eval-only row
    assert "5" not in set(points["run"])  # failed members are not fitted


# ------------------------------------------------------------------------------------ scaling
def test_scaling_fit_recovers_known_parameters() -> None:
    c = np.concatenate([[0.0], np.geomspace(1e3, 1e6, 20)])
    exact = fit_scaling(c, scaling_curve(c, 0.8, 1.5, 2e4, 0.1))
    assert (exact.a, exact.b, exact.c_mid, exact.r0) == pytest.approx(
        (0.8, 1.5, 2e4, 0.1), rel=1e-6
    )
    assert exact(2e4) == pytest.approx(0.45)  # half-way between R0 and A at C_mid
    free = fit_scaling(c[1:], scaling_curve(c[1:], 0.8, 1.5, 2e4, 0.1))  # R0 fitted too
    assert free.r0 == pytest.approx(0.1, abs=1e-6)
    rng = np.random.default_rng(0)
    runs = [
        (c, scaling_curve(c, 0.8, 1.5, 2e4, 0.1) + rng.normal(0, 0.01, len(c))) for _ in range(4)
    ]
    fit = fit_scaling_runs(runs, a_bounds=(0, 1))
    assert fit["ci"] == "jackknife over 4 runs, t(3)" and fit["has_ci"] and "note" not in fit
    for name, true in (("A", 0.8), ("B", 1.5), ("C_mid", 2e4)):
        assert fit[name] == pytest.approx(true, rel=0.1)
        assert fit[f"{name}_low"] <= fit[name] <= fit[f"{name}_high"]
    few = fit_scaling_runs([(c[:5], r[:5]) for c, r in runs[:3]], a_bounds=(0, 1))  # A unsure
    assert 0 <= few["A_low"] <= few["A"] <= few["A_high"] <= 1  # a CI within A's bounds
    two_evals = [(c[[0, 5, 10]] * (1 + 0.01 * i), runs[i][1][[0, 5, 10]]) for i in range(3)]
    with pytest.raises(ValueError, match="evaluations after the start"):  # 2 compute levels
        fit_scaling_runs(two_evals, a_bounds=(0, 1))
    with pytest.raises(ValueError, match="needs >= 3 points"):
        fit_scaling([0, 1, 2], [0.1, 0.2, 0.3])
    flat = fit_scaling_runs([(c, np.full(len(c), 0.3))] * 3, a_bounds=(0, 1))
    assert flat["A"] == pytest.approx(0.3) and math.isnan(flat["B"]) and "no gain" in flat["note"]


def test_scaling_fit_has_no_interval_with_too_few_runs() -> None:
    rng = np.random.default_rng(1)
    c = np.concatenate([[0.0], np.geomspace(1e3, 1e6, 12)])
    runs = [(c, scaling_curve(c, 0.8, 1.5, 2e4, 0.1) + rng.normal(0, 0.01, len(c)))] * 2
    for n in (1, 2):
        fit = fit_scaling_runs(runs[:n], a_bounds=(0, 1))
        assert fit["A"] == pytest.approx(0.8, abs=0.03) and not fit["has_ci"]  # fitted, no CI
        reason = f"too few runs for an interval ({n} run{'s' * (n > 1)}, needs >= 3)"
        assert fit["ci"] == reason and fit["note"] == reason
        assert all(
            math.isnan(fit[f"{p}_{s}"]) for p in ("A", "B", "C_mid", "R0") for s in ("low", "high")
        )
    # 3 runs, but only one with enough evaluations: the fit without it is not allowed
    short = [(c, runs[0][1]), (c[:4], runs[0][1][:4]), (c[:4] * 1.01, runs[0][1][:4])]
    fit = fit_scaling_runs(short, a_bounds=(0, 1))
    assert not fit["has_ci"] and math.isnan(fit["A_low"])
    assert fit["ci"].startswith("too few runs for an interval (the fit without run 0 failed")


# the coverage simulation: seeds differ in asymptote, midpoint and tokens per step; every
# evaluation (11 per run, every 10 of 100 steps) has its own noise; R0 is the shared base model
TRUE = {"A": 0.7, "B": 1.5, "C_mid": 2e5, "R0": 0.2}


def simulated_runs(rng: np.random.Generator, n_runs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    runs = []
    for _ in range(n_runs):
        c = np.arange(0, 101, 10) * 1e4 * (1 + 0.05 * rng.standard_normal())
        a = TRUE["A"] + 0.03 * rng.standard_normal()
        c_mid = TRUE["C_mid"] * np.exp(0.15 * rng.standard_normal())
        r = scaling_curve(c, a, TRUE["B"], c_mid, TRUE["R0"]) + rng.normal(0, 0.015, len(c))
        runs.append((c, r))
    return runs


def coverage(n_sim: int, n_runs: int, seed: int) -> dict[str, float]:
    """Fraction of simulated sweeps whose 95% interval holds the true parameter."""
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(TRUE, 0)
    for _ in range(n_sim):
        fit = fit_scaling_runs(simulated_runs(rng, n_runs), a_bounds=(0, 1))
        for p, true in TRUE.items():
            hits[p] += fit[f"{p}_low"] <= true <= fit[f"{p}_high"]
    return {p: h / n_sim for p, h in hits.items()}


def test_scaling_interval_coverage_quick() -> None:
    # 60 sweeps of 4 runs (~2 s); the old percentile bootstrap over runs: A 0.83, C_mid 0.78
    cover = coverage(60, 4, seed=7)
    assert cover["A"] >= 0.85 and cover["C_mid"] >= 0.85, cover


@pytest.mark.slow
def test_scaling_interval_coverage() -> None:
    # 300 sweeps of 4 runs (~15 s; binomial se of a 0.95 coverage: 0.013) and 150 of 3
    for n_sim, n_runs in ((300, 4), (150, 3)):
        cover = coverage(n_sim, n_runs, seed=n_runs)
        assert all(0.9 <= v <= 0.99 for v in cover.values()), (n_runs, cover)


def test_knob_axis_kinds() -> None:
    assert knob_positions(pd.Series([0.0, 0.5, 0.9, 0.95, 1.0]))[1] == "ordinal"
    assert knob_positions(pd.Series([2, 4, 8, 16, 32]))[1] == "log2"
    assert knob_positions(pd.Series([0.1, 0.2, 0.3]))[1] == "linear"
    positions, kind = knob_positions(pd.Series(["ppo", "grpo", "rloo"]))
    assert kind == "category" and positions == {"grpo": 0.0, "ppo": 1.0, "rloo": 2.0}


# ------------------------------------------------------------------------------------ W&B
class FakeRun:
    def __init__(self, run_id: str, lam: float, seed: int, state: str) -> None:
        self.id, self.name, self.state = run_id, f"{run_id}:advantage.lam={lam}", state
        self.config = {"seed": seed, "advantage": {"lam": lam, "name": "gae"},
                       "output_dir": f"/x/{run_id}", "_wandb": {"cli_version": "0"}}  # fmt: skip
        self.rows = member_rows(lam, seed)[: 4 if state == "crashed" else None]

    def scan_history(self):
        for i, row in enumerate(self.rows):
            yield {"_step": i, "_runtime": 1.0} | row


class FakeApi:
    def __init__(self, runs: list[FakeRun]) -> None:
        self._runs, self.calls = runs, []

    def runs(self, path: str, filters: dict | None = None):
        self.calls.append((path, filters))
        return self._runs


def _no_render(fig, path) -> list[Path]:
    """save_figure without the rendering (the slow part); the CLI test renders for real."""
    base = Path(path)
    return [base.with_name(base.name + ext) for ext in (".pdf", ".png")]


def test_wandb_source(tmp_path: Path, capsys, monkeypatch) -> None:
    import analysis.plots
    import analysis.sweep_plots

    monkeypatch.setattr(analysis.plots, "save_figure", _no_render)
    monkeypatch.setattr(analysis.sweep_plots, "save_figure", _no_render)
    runs = [FakeRun(f"r{i}", lam, s, "crashed" if i == 3 else "finished")
            for i, (lam, s) in enumerate([(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)])]  # fmt: skip
    api = FakeApi(runs)
    loaded = wandb_runs("team", "rlexp", "multirun_x", api)
    assert api.calls == [("team/rlexp", {"group": "multirun_x"})]
    members = members_table(loaded)
    assert members["run"].tolist() == [r.name for r in runs]
    assert members["status"].tolist() == ["finished"] * 3 + ["failed"]
    assert list(members.columns) == ["run", "status", "error", "seed", "advantage.lam"]
    assert "_step" not in loaded[0]["metrics"] and len(loaded[0]["metrics"]) == 13
    files = analyze_wandb("team", "rlexp", "multirun_x", tmp_path, api, n_boot=20)
    assert tmp_path / "final_vs_knob.png" in files and tmp_path / "adv_diagnostics.png" in files
    failed = pd.read_csv(tmp_path / "failed_members.csv")
    assert failed["error"].tolist() == ["W&B run state 'crashed'"]
    assert math.isclose(
        pd.read_csv(tmp_path / "sweep_summary.csv").query("metric == 'adv/mc_corr'")["mean"].max(),
        1.0,
    )
    assert cli.wandb_source("wandb:team/rlexp/g") == ("team", "rlexp", "g")
    assert cli.wandb_source("wandb:team/rlexp") == ("team", "rlexp", None)
    assert cli.wandb_source("runs/x") is None
    assert cli.main(["wandb:team"]) == 2
    assert "wandb:ENTITY/PROJECT" in capsys.readouterr().err


def test_wandb_unwraps_value_dicts() -> None:
    run = SimpleNamespace(
        id="a", name=None, state="finished", config={"seed": {"value": 3, "desc": None}},
        scan_history=lambda: iter([{"train/step": 0, "x": "NaN"}]),
    )  # fmt: skip
    (loaded,) = wandb_runs("e", "p", None, FakeApi([run]))
    assert loaded["config"] == {"seed": 3} and loaded["name"] == "a"
    assert math.isnan(loaded["metrics"]["x"].iloc[0])


def test_latex_cells() -> None:
    from analysis.tables import with_ci

    assert with_ci(0.532, 0.504, 0.552) == "$0.532^{+0.020}_{-0.028}$"
    assert with_ci(4.2e5, 3.2e5, 4.81e5) == "$4.20^{+0.61}_{-1.00} \\times 10^{5}$"
    assert with_ci(0.8, 0.8, 0.8) == "$0.800$"  # one run: no interval
    assert with_ci(float("nan"), 0.0, 1.0) == "--"
