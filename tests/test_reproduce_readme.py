"""benchmarks/reproduce_readme.py: the README's table of figures parses, every figure in it is one
the script measures, and a figure outside its tolerance is reported as differing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import reproduce_readme as rr

ROOT = Path(__file__).resolve().parents[1]


def test_every_readme_figure_is_measured_with_a_tolerance() -> None:
    text = (ROOT / "README.md").read_text()
    figures = rr.readme_figures(text)
    assert set(figures) == set(rr.TOLERANCES)
    # the tolerance column the README shows is the one the script applies
    for key, tol in rr.TOLERANCES.items():
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
        assert row.split("|")[3].strip() == f"± {tol:g}", row
    assert figures["sft/floor_ratio"] > 0 and 0 <= figures["eval/sampled_accuracy base"] <= 1


def _run(tmp_path: Path, loss: float, floor: float) -> Path:
    rows = [{"sft/step": 0, "sft/heldout_loss": 3.0, "sft/heldout_loss_floor": floor}]
    rows.append({"sft/step": 800, "sft/heldout_loss": loss, "sft/heldout_loss_floor": floor})
    (tmp_path / "sft_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_measured_figures_and_comparison(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = "noise\neval/sampled_accuracy: base 0.640 -> final 0.940\n"
    log += "eval/greedy_accuracy: base 0.980 -> final 1.000\n"
    measured = rr.measured_figures(_run(tmp_path, 0.02, 0.0177), log)
    assert measured["sft/floor_ratio"] == pytest.approx(0.02 / 0.0177)
    assert measured["eval/sampled_accuracy final"] == 0.94
    same = {"eval/sampled_accuracy base": 0.64, "eval/greedy_accuracy final": 1.0}
    assert rr.compare(same, measured)
    assert not rr.compare({"eval/sampled_accuracy base": 0.541}, measured)  # 0.099 > 0.05
    assert "DIFFERS" in capsys.readouterr().out
    assert not rr.compare({"sft/elapsed": 1.0}, measured)  # a figure the script cannot measure


def test_a_readme_without_the_table_is_one_clear_error() -> None:
    with pytest.raises(SystemExit, match="no table titled"):
        rr.readme_figures("# rlexp\nno figures here\n")
