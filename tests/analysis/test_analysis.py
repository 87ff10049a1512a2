"""The analysis package on tiny synthetic run, sweep, eval and study directories (no rlexp)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import cli
from analysis.load import detect_kind, load_eval, load_metrics, load_run, load_sweep, sweep_members
from analysis.metrics import per_problem_table, summarize
from analysis.plots import seed_band
from analysis.study import (
    latex_table,
    paired_differences,
    report_markdown,
    sft_plateau,
    study_numbers,
    study_per_problem,
    summarize_models,
    verdict,
)

KS = [1, 2, 4, 8, 16]
N = 16  # samples per problem


# ------------------------------------------------------------------------------------ writers
def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_run(
    run_dir: Path, seed: int = 0, algo: str = "grpo", lift: float = 0.3, failed: bool = False
) -> None:
    """A run directory: config.yaml, run_info.json, metrics.jsonl (8 steps), sft_metrics.jsonl."""
    run_dir.mkdir(parents=True)
    config = {
        "seed": seed,
        "steps": 8,
        "output_dir": str(run_dir),
        "algorithm": {"name": algo, "group_size": 4},
        "advantage": {"lam": 0.95},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    info = {"overrides": [f"algorithm={algo}", f"seed={seed}"], "seed": seed, "status": "finished"}
    if failed:
        info |= {"status": "failed", "error": "RuntimeError: CUDA out of memory"}
    (run_dir / "run_info.json").write_text(json.dumps(info))
    rows = []
    for step in range(3 if failed else 9):
        acc = 0.3 + lift * step / 8 + 0.01 * seed
        row = {"train/step": step}
        if step % 4 == 0:
            row |= {"eval/sampled_accuracy": acc, "eval/greedy_accuracy": acc + 0.05}
            row |= {"eval/pass@8": min(1.0, acc + 0.3)}
        if step < 8:
            row |= {"train/reward_mean": acc, "train/accuracy": acc, "loss/policy": -0.1}
            row |= {"train/kl_ref": 0.01 * step, "train/entropy": 1.0, "train/sampled_tokens": step}
        rows.append(row)
    rows[1]["train/kl_ref"] = "nan"
    rows[2]["loss/policy"] = "inf"
    write_jsonl(run_dir / "metrics.jsonl", rows)
    sft = [
        {"sft/step": s, "sft/heldout_loss": 0.3 + 2.0 * math.exp(-s / 15)}
        for s in range(0, 101, 10)
    ]
    for r in sft[::2]:
        r |= {"sft/greedy_accuracy": 1 - r["sft/heldout_loss"] / 2.3, "sft/sampled_accuracy": 0.5}
    write_jsonl(run_dir / "sft_metrics.jsonl", sft)


def answers(gold: int, wrong: int, other: int, none: int) -> list[str | None]:
    """n = 16 answers: gold "7", a dominant wrong "9", spread wrong "1", "2", ..., None."""
    spread = [str(i % 3 + 1) for i in range(other)]
    out = ["7"] * gold + ["9"] * wrong + spread + [None] * none
    assert len(out) == N
    return [out[i] for i in np.random.default_rng(gold).permutation(N)]


def write_eval(eval_dir: Path, model: str, seed: int, per_problem: list[list[str | None]]) -> None:
    eval_dir.mkdir(parents=True)
    rows = [
        {
            "problem_id": f"p{p:02d}",
            "sample_idx": i,
            "completion": f"... {a}",
            "answer": a,
            "gold": "7",
            "correct": a == "7",
            "length": 10 + i,
        }  # fmt: skip
        for p, ans in enumerate(per_problem)
        for i, a in enumerate(ans)
    ]
    pd.DataFrame(rows).to_parquet(eval_dir / "samples.parquet")
    summary = {"model": model, "seed": seed, "n_samples": N, "temperature": 1.0, "checkpoint": "x"}
    (eval_dir / "summary.json").write_text(json.dumps(summary))


# Broad (SFT-like): gold in 6 of 16, a dominant wrong answer: high Pass@16, low Maj@16.
BROAD = [answers(6, 7, 2, 1)] * 8 + [answers(5, 8, 2, 1)] * 4
# Sharp (RL-like): gold wins on 8 problems, never found on the 4 hard ones.
SHARP = [[answers(13, 2, 0, 1)] * 8 + [answers(0, 15, 0, 1)] * 4,
         [answers(12, 3, 0, 1)] * 8 + [answers(0, 14, 1, 1)] * 4]  # fmt: skip


def write_study(study_dir: Path, rl_sharp: bool = True) -> Path:
    """SFT + two RL seeds; rl_sharp=False swaps which model is sharp."""
    study_dir.mkdir(parents=True)
    (study_dir / "study.json").write_text(json.dumps({"ks": KS, "seeds": [0, 1]}))
    sft, rl = ("SFT", "RL") if rl_sharp else ("RL", "SFT")
    write_eval(study_dir / "eval" / "base", sft, 0, BROAD)
    for seed, problems in enumerate(SHARP):
        write_eval(study_dir / "eval" / f"rl_seed{seed}", rl, seed, problems)
        write_run(study_dir / "runs" / f"seed_{seed}", seed=seed)
    return study_dir


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis")
    write_run(root / "run")
    write_eval(root / "run" / "eval" / "final", "RL", 0, SHARP[0])
    sweep = root / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for i, (algo, seed) in enumerate([("grpo", 0), ("grpo", 1), ("ppo", 0), ("ppo", 1)]):
        write_run(sweep / str(i), seed=seed, algo=algo, lift=0.4 if algo == "ppo" else 0.2,
                  failed=i == 3)  # fmt: skip
    write_eval(root / "eval", "SFT", 0, BROAD)
    return {"run": root / "run", "sweep": sweep, "eval": root / "eval",
            "study": write_study(root / "study"), "swapped": write_study(root / "swapped", False)}  # fmt: skip


def assert_figure(base: Path) -> None:
    png, pdf = base.with_suffix(".png"), base.with_suffix(".pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000


# ------------------------------------------------------------------------------------ loaders
def test_load_metrics_nonfinite_truncated_and_resumed(tmp_path: Path) -> None:
    rows = [
        {"train/step": 0, "x": 1.0},
        {"train/step": 1, "x": "nan"},
        {"train/step": 1, "x": "-inf"},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + '\n{"train/st')
    df = load_metrics(tmp_path)
    assert df["x"].dtype == float and list(df["train/step"]) == [0, 1]
    assert df["x"].iloc[1] == -math.inf  # the resumed (last) line for step 1 wins
    assert load_metrics(tmp_path / "missing").empty


def test_load_run(dirs: dict[str, Path]) -> None:
    run = load_run(dirs["run"])
    assert run["config"]["algorithm.name"] == "grpo" and run["config"]["advantage.lam"] == 0.95
    assert run["info"]["status"] == "finished"
    m = run["metrics"]
    assert len(m) == 9 and m["train/kl_ref"].dtype == float
    assert math.isnan(m.loc[1, "train/kl_ref"]) and m.loc[2, "loss/policy"] == math.inf
    assert m["eval/sampled_accuracy"].notna().sum() == 3
    assert run["sft_metrics"]["sft/step"].max() == 100


def test_load_sweep_flags_failed_members(dirs: dict[str, Path]) -> None:
    df = load_sweep(dirs["sweep"])
    assert df.attrs["knobs"] == ["seed", "algorithm"]
    assert list(df.columns[:4]) == ["run", "status", "seed", "algorithm"]
    assert df.groupby("run").size().to_dict() == {"0": 9, "1": 9, "2": 9, "3": 3}
    assert set(df.loc[df["run"] == "3", "status"]) == {"failed"}
    assert df.loc[df["run"] == "2", "algorithm"].iloc[0] == "ppo"
    members = sweep_members(dirs["sweep"])
    assert members.loc[members["status"] == "failed", "error"].item().startswith("RuntimeError")


def test_load_eval_and_detect_kind(dirs: dict[str, Path], tmp_path: Path) -> None:
    samples, summary = load_eval(dirs["eval"])
    assert len(samples) == 12 * N and summary["model"] == "SFT"
    assert samples["answer"].isna().sum() == 12 and samples["correct"].dtype == bool
    kinds = {k: detect_kind(dirs[k]) for k in ("run", "sweep", "eval", "study")}
    assert kinds == {"run": "run", "sweep": "sweep", "eval": "eval", "study": "study"}
    for bad in (tmp_path, tmp_path / "nope", dirs["eval"] / "summary.json"):
        with pytest.raises(ValueError):
            detect_kind(bad)


def test_seed_band() -> None:
    v = np.array([[1.0, 3.0], [2.0, np.nan], [np.nan, np.nan]])
    mean, low, high = seed_band(v, n_boot=200)
    assert mean[:2].tolist() == [2.0, 2.0] and math.isnan(mean[2])
    assert low[0] == 1.0 and high[0] == 3.0 and low[1] == high[1] == 2.0
    one = seed_band(v[:, :1])
    assert np.array_equal(one[1][:2], [1.0, 2.0])


# ------------------------------------------------------------------------------------ study
@pytest.fixture(scope="module")
def study_out(dirs: dict[str, Path], tmp_path_factory) -> tuple[Path, str]:
    """The CLI run once on the study directory: (output directory, printed text)."""
    out = tmp_path_factory.mktemp("study_out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main([str(dirs["study"]), "--out", str(out), "--n-boot", "200"]) == 0
    return out, printed.getvalue()


def swapped_report(study_dir: Path) -> tuple[dict, str]:
    """The numbers and report.md text of a study, computed without writing figures."""
    evals = [load_eval(d) for d in sorted((study_dir / "eval").iterdir())]
    per_problem = study_per_problem(evals, KS)
    summary = summarize_models(per_problem, KS, n_boot=200)
    numbers, _ = study_numbers(per_problem, summary, KS, "SFT", "RL")
    return numbers, report_markdown(summary, numbers, None, "meta")


def test_study_matches_metrics(dirs: dict[str, Path], study_out: tuple[Path, str]) -> None:
    out, printed = study_out
    for name in ("passk_majk.csv", "passk_majk.tex", "per_problem.csv", "report.md"):
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in printed
    assert_figure(out / "passk_majk")
    assert_figure(out / "sft_curve")
    csv = pd.read_csv(out / "passk_majk.csv")
    assert list(csv["model"].unique()) == ["SFT", "RL"]
    assert csv.groupby("model")["seeds"].first().to_dict() == {"SFT": 1, "RL": 2}
    sft = summarize(per_problem_table(load_eval(dirs["study"] / "eval" / "base")[0], KS), KS, 200)
    seeds = [per_problem_table(load_eval(dirs["study"] / "eval" / f"rl_seed{s}")[0], KS).assign(seed=s)
             for s in (0, 1)]  # fmt: skip
    rl = summarize(pd.concat(seeds), KS, 200, seed_column="seed")
    # 2 seeds: the band is the range of the two seeds' means, and the table says so
    for metric in ("pass", "maj"):
        per_seed = np.array([[t[f"{metric}@{k}"].mean() for k in KS] for t in seeds])
        rl[f"{metric}@K_low"], rl[f"{metric}@K_high"] = per_seed.min(0), per_seed.max(0)
    assert csv.groupby("model")["interval"].first().to_dict() == {"SFT": "95% CI", "RL": "range"}
    for model, ref in (("SFT", sft), ("RL", rl)):
        drop = ["model", "seeds", "interval"]
        got = csv[csv["model"] == model].drop(columns=drop).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    report_text = (out / "report.md").read_text()
    assert "RL: range over its 2 seeds" in report_text and "RL's range lies above" in report_text
    tex = (out / "passk_majk.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("\\\\") == 2 + len(KS)
    assert f"{sft['maj@K'][0]:.3f}" in tex
    report = (out / "report.md").read_text()
    gap = rl["pass@K"].iloc[-1] - sft["pass@K"].iloc[-1]
    assert f"{rl['pass@K'][0] - sft['pass@K'][0]:+.3f} at K = 1 and {gap:+.3f} at K = 16" in report


def test_report_is_computed_and_flips(dirs: dict[str, Path], study_out: tuple[Path, str]) -> None:
    sharp, a = swapped_report(dirs["study"])
    broad, b = swapped_report(dirs["swapped"])

    def result(text: str) -> str:
        return text.split("## Result")[1].split("## SFT")[0]

    assert result(a) == result((study_out[0] / "report.md").read_text())
    assert sharp["majk_rl_gt_sft_all"] and not broad["majk_rl_gt_sft_all"]
    assert broad["majk_not_raised_ks"] == KS
    assert (
        sharp["gap_pass1"] > 0 > broad["gap_pass1"]
        and sharp["gap_passmax"] < 0 < broad["gap_passmax"]
    )
    assert sharp["crossing_k"] in KS[1:] and broad["crossing_k"] is None
    assert "RL raises Maj@K over SFT at every K (1–16)" in a and "RL raises Pass@1" in a
    assert f"meet or cross at K = {sharp['crossing_k']}" in a
    # the broad SFT solves every problem at K = 16 (Pass@16 = 1): no verdict of reproduction
    assert sharp["passmax_sft"] == 1.0 and "**inconclusive**" in a
    assert "SFT only 4, RL only 0, both 8, neither 0" in a
    assert "does not raise Maj@K at every K: not at K = 1, 2, 4, 8, 16" in b
    assert "RL lowers Pass@1" in b and "do not cross" in b
    assert "**not reproduced: RL raises Pass@K**" in b
    assert f"{sharp['pass1_rl']:.3f}" in a and "| K | SFT Maj@K |" in a


def test_sft_plateau(dirs: dict[str, Path], study_out: tuple[Path, str]) -> None:
    p = sft_plateau(load_metrics(dirs["study"] / "runs" / "seed_0", "sft_metrics.jsonl"))
    assert p["sft_final_loss"] == pytest.approx(0.3 + 2 * math.exp(-100 / 15))
    assert p["sft_window_start_step"] == 80
    assert p["sft_loss_change_last"] == pytest.approx(
        2 * (math.exp(-100 / 15) - math.exp(-80 / 15))
    )
    assert (
        f"Final held-out loss {p['sft_final_loss']:.4f}" in (study_out[0] / "report.md").read_text()
    )
    assert sft_plateau(pd.DataFrame()) is None
    assert "sft_loss_floor" not in p  # no floor logged: none claimed


def test_sft_plateau_against_the_loss_floor() -> None:
    from analysis.study import plateau_lines

    df = pd.DataFrame(
        {
            "sft/step": [0, 50, 100],
            "sft/heldout_loss": [3.0, 0.05, 0.04],
            "sft/heldout_loss_floor": [0.04, 0.04, 0.04],
        }
    )
    p = sft_plateau(df)
    assert p["sft_loss_floor"] == pytest.approx(0.04)
    assert "ends at 100% of it" in plateau_lines(p)[0]


def test_latex_table_bolds_best() -> None:
    s = pd.DataFrame(
        {"model": ["SFT", "RL"], "K": [1, 1], "maj@K": [0.2, 0.4], "pass@K": [0.2, 0.4]}
    )
    assert "1 & 0.200 & 0.200 & \\textbf{0.400} & \\textbf{0.400} \\\\" in latex_table(s)


# ------------------------------------------------------------------------------------ CLI
EXPECTED = {
    "eval": ["passk_majk.csv", "passk_majk.png"],
    "run": ["curve_eval_sampled_accuracy.png", "sft_curve.png", "eval/final/passk_majk.csv"],
    "sweep": ["sweep_metrics.csv", "sweep_summary.csv", "sweep_summary.tex", "failed_members.csv",
              "curve_train_kl_ref.png"],
}  # fmt: skip
METRIC = {"run": "eval/sampled_accuracy", "sweep": "train/kl_ref"}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_cli_writes_outputs(dirs: dict[str, Path], tmp_path: Path, kind: str, capsys) -> None:
    args = [str(dirs[kind]), "--out", str(tmp_path), "--n-boot", "50"]
    assert cli.main(args + (["--metric", METRIC[kind]] if kind in METRIC else [])) == 0
    printed = capsys.readouterr().out
    for name in EXPECTED[kind]:
        path = tmp_path / name
        assert path.stat().st_size > 0 and f"wrote {path}" in printed
        if path.suffix == ".png":
            assert_figure(path.with_suffix(""))
    if kind == "sweep":
        failed = pd.read_csv(tmp_path / "failed_members.csv")
        assert failed["run"].tolist() == [3] and "member 3: failed" in printed
        summary = pd.read_csv(tmp_path / "sweep_summary.csv")
        acc = summary[summary["metric"] == "eval/sampled_accuracy"].set_index("algorithm")
        assert acc.loc["ppo", ["runs", "failed"]].tolist() == [1, 1]
        assert acc.loc["ppo", "mean"] == pytest.approx(0.7)  # the finished ppo run only
        assert acc.loc["grpo", "mean"] == pytest.approx(0.505)  # (0.5 + 0.51) / 2
        assert "ppo" in (tmp_path / "sweep_summary.tex").read_text()
    if kind == "eval":
        assert "| K | SFT Maj@K |" in printed


def test_cli_rejects_bad_paths(tmp_path: Path, capsys) -> None:
    for bad in (tmp_path / "missing", tmp_path):
        assert cli.main([str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("rlexp-analyze: error:") and "\n" not in err


def _synthetic(base_pass, rl_pass, base_maj, rl_maj, seeds: int = 1) -> pd.DataFrame:
    """Per-problem tables of two models (SFT, RL) at K = 1, 2, 4: values per problem."""
    rows = []
    for model, passes, majs, n_seeds in (
        ("SFT", base_pass, base_maj, 1),
        ("RL", rl_pass, rl_maj, seeds),
    ):
        for seed in range(n_seeds):
            for pid, (p, m) in enumerate(zip(passes, majs, strict=True)):
                row = {"model": model, "seed": seed, "problem_id": pid}
                for k in (1, 2, 4):
                    row |= {f"pass@{k}": min(1.0, p * k / 4 + (1 - k / 4) * p / 2), f"maj@{k}": m}
                rows.append(row)
    return pd.DataFrame(rows)


def _verdict(per_problem: pd.DataFrame) -> str:
    diffs = paired_differences(per_problem, [1, 2, 4], "SFT", "RL", n_boot=500)
    top = per_problem.groupby("model")["pass@4"].mean()
    return verdict(diffs, float(top["SFT"]), float(top["RL"]))[0]


def test_verdict_rule_on_synthetic_studies() -> None:
    g = np.random.default_rng(0)
    n = 60
    maj_base = g.uniform(0.1, 0.4, n)
    maj_rl = maj_base + g.uniform(0.2, 0.4, n)
    # both models solve everything at K_max: saturated, whatever Maj@K does
    assert _verdict(_synthetic([1.0] * n, [1.0] * n, maj_base, maj_rl)) == (
        "saturated: uninformative at large K"
    )
    # RL solves problems the base never solves: its Pass@K_max CI lies above the base's
    some = (g.uniform(size=n) < 0.5).astype(float)
    assert _verdict(_synthetic(some, np.ones(n), maj_base, maj_rl)) == (
        "not reproduced: RL raises Pass@K"
    )
    # Maj@K up on every problem, the same Pass@K below 1: the DeepSeekMath pattern
    same = np.where(g.uniform(size=n) < 0.7, 1.0, 0.0)
    assert _verdict(_synthetic(same, same, maj_base, maj_rl, seeds=3)) == "reproduced"
    # Maj@K not clearly up: inconclusive
    noisy = maj_base + g.normal(0, 0.2, n)
    assert _verdict(_synthetic(same, same, maj_base, noisy)) == "inconclusive"


def test_paired_ci_is_narrower_than_the_unpaired_spread() -> None:
    """Pairing removes the problem-to-problem variance both models share."""
    g = np.random.default_rng(1)
    hard = g.uniform(0, 1, 200)
    per_problem = _synthetic(hard, np.clip(hard + 0.02, 0, 1), hard, np.clip(hard + 0.02, 0, 1))
    d = paired_differences(per_problem, [4], "SFT", "RL", n_boot=500)
    maj = d[d["metric"] == "maj"].iloc[0]
    assert maj["low"] > 0  # a 0.02 shift on every problem is detected
    assert maj["high"] - maj["low"] < 0.01


def test_crossover_k_hand_worked() -> None:
    from analysis.study import crossover_k

    ks = [1, 2, 4, 8]
    # +0.2 at K=4, -0.2 at K=8: the zero lies halfway in log2 K between 4 and 8 -> 2**2.5
    assert crossover_k(ks, [0.3, 0.25, 0.2, -0.2]) == pytest.approx(2**2.5)
    assert crossover_k(ks, [0.3, 0.1, 0.0, -0.1]) == pytest.approx(2.0 * 2 ** (1.0))  # at K=4
    assert crossover_k(ks, [0.3, 0.2, 0.1, 0.05]) is None  # still above at K_max
    assert crossover_k(ks, [0.0, -0.1, -0.1, -0.1]) is None  # never above: no sign change
    assert crossover_k(ks, [0.3, -0.1, 0.1, -0.1]) == pytest.approx(2**2.5)  # the last change


def test_crossover_ci_from_replicates() -> None:
    from analysis.study import crossover

    ks = [1, 2, 4, 8]
    point = np.array([0.3, 0.2, 0.1, -0.1])
    boots = np.array([[0.3, 0.2, 0.1, -0.1]] * 90 + [[0.3, 0.2, 0.1, 0.05]] * 10)
    x = crossover(ks, point, boots)
    assert x["k_star"] == pytest.approx(2**2.5)
    assert x["share"] == pytest.approx(0.9)
    assert x["low"] == pytest.approx(2**2.5) and x["high"] == pytest.approx(2**2.5)


def test_curves_meeting_at_the_ceiling_do_not_cross() -> None:
    """Both models at Pass@K = 1 from K = 8 on: ΔPass@K falls to 0 there, which is saturation,
    not the crossover the study asks about (it used to report K* = 8)."""
    from analysis.study import _saturated_from, crossover

    ks = [1, 2, 4, 8, 16]
    rows = [("SFT", [0.6, 0.84, 0.97, 1.0, 1.0]), ("RL", [0.97, 1.0, 1.0, 1.0, 1.0])]
    summary = pd.DataFrame(
        [{"model": m, "K": k, "pass@K": v} for m, vs in rows for k, v in zip(ks, vs, strict=True)]
    )
    assert _saturated_from(summary, ks) == 3
    point = np.array([0.37, 0.16, 0.03, 0.0, 0.0])
    boots = np.array([point] * 20)
    assert crossover(ks, point, boots)["k_star"] == pytest.approx(8.0)  # without the rule
    x = crossover(ks, point, boots, saturated_from=3)
    assert x["k_star"] is None and x["share"] == 0.0 and x["saturated_from"] == 3
    below = summary.assign(**{"pass@K": summary["pass@K"] * 0.9})
    assert _saturated_from(below, ks) is None


def test_sharpening_diagnostics_hand_worked() -> None:
    from analysis.study import sharpening

    samples = pd.DataFrame(
        {
            "problem_id": ["a"] * 4 + ["b"] * 4,
            "answer": ["1", "1", "2", None, "5", "5", "5", "5"],
            "correct": [True, True, False, False, False, False, False, False],
            "length": [2] * 8,
            "logp": [-1.0] * 8,
        }
    )
    d = sharpening(samples)
    assert list(d["success"]) == [0.5, 0.0]
    assert list(d["distinct"]) == [2.0, 1.0]
    assert d["never_solved"] == 0.5 and d["always_solved"] == 0.0
    assert d["token_entropy"] == pytest.approx(8.0 / 16.0)


def test_tier_configs_merge_patches_and_reject_bad_ones(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from rlexp.config.schema import RootConfig
    from rlexp.runtime.errors import ConfigError
    from rlexp.study import check_same_study, tier_configs

    cfg = OmegaConf.merge(OmegaConf.structured(RootConfig), {"output_dir": str(tmp_path)})
    OmegaConf.update(cfg, "task", {"name": "arithmetic", "carry_slip": 0.2}, force_add=True)
    assert list(tier_configs(cfg)) == [""]
    patch = {"easy": {}, "hard": {"task": {"carry_slip": 0.3}, "study": {"n_samples": 256}}}
    OmegaConf.update(cfg, "study.tiers", patch, merge=False)
    tiers = tier_configs(cfg)
    assert tiers["hard"].task.carry_slip == 0.3 and tiers["easy"].task.carry_slip == 0.2
    assert tiers["hard"].study.n_samples == 256 and tiers["easy"].study.n_samples == 64
    assert tiers["hard"].output_dir == str(tmp_path / "hard") and not tiers["hard"].study.tiers
    OmegaConf.update(cfg, "study.tiers", {"bad": {"study": {"n_sample": 3}}}, merge=False)
    with pytest.raises(ConfigError, match="study.tiers.bad"):
        tier_configs(cfg)
    # a rerun with other settings is refused, naming the changed key
    OmegaConf.update(cfg, "study.tiers", {}, merge=False)
    OmegaConf.save(cfg, tmp_path / "config.yaml", resolve=True)
    check_same_study(cfg, tmp_path)  # unchanged: resumes
    changed = cfg.copy()
    OmegaConf.update(changed, "study.temperature", 0.5)
    OmegaConf.update(changed, "threads", 1)  # how fast, not what: allowed
    with pytest.raises(ConfigError, match="study.temperature"):
        check_same_study(changed, tmp_path)


def test_analyze_tiers_draws_every_tier_and_tabulates_verdicts(tmp_path: Path) -> None:
    from analysis.study import analyze_tiers

    write_study(tmp_path / "easy")
    write_study(tmp_path / "hard", rl_sharp=False)
    result = analyze_tiers(tmp_path, ["easy", "hard"])
    table = result["table"]
    assert list(table["tier"]) == ["easy", "hard"]
    for tier in ("easy", "hard"):
        sub = json.loads((tmp_path / tier / "study.json").read_text())
        assert sub["ks"] == KS
        assert (tmp_path / tier / "sharpening.png").exists()
    assert (tmp_path / "passk_majk_tiers.png").exists()
    report = (tmp_path / "report.md").read_text()
    for verdict_text in table["verdict"]:
        assert verdict_text in report
    assert table.loc[0, "pass1_rl"] != table.loc[1, "pass1_rl"]  # each tier its own numbers


def test_plateau_trend_is_judged_against_the_window_noise() -> None:
    from analysis.study import plateau_lines

    steps = list(range(0, 1100, 100))
    steady = [3.0, 1, 0.5, 0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.06, 0.05]  # falls at every point
    p = sft_plateau(pd.DataFrame({"sft/step": steps, "sft/heldout_loss": steady}))
    # window from step 800: 0.07, 0.06, 0.05 -> slope -0.01 per 100 steps, a perfect line
    assert p["sft_slope_per_100"] == pytest.approx(-1.0e-2)
    assert "still improving" in plateau_lines(p)[0]
    # the same end-to-end fall, but the window zigzags: its slope is within the noise
    zigzag = [3.0, 1, 0.5, 0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.08, 0.05, 0.09, 0.062]
    p = sft_plateau(
        pd.DataFrame({"sft/step": list(range(0, 1300, 100)), "sft/heldout_loss": zigzag})
    )
    assert p["sft_loss_rel_change_last"] < -0.05 and p["sft_slope_t"] > -2
    assert "still improving" not in plateau_lines(p)[0]
