"""rlexp-analyze on a multirun whose members have unreadable files (issue 15 item f): each such
member is skipped with a warning naming the file, listed in failed_members.csv, and the analysis
of the others goes on (it used to stop at the first bad file, without naming it)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import pandas as pd
import pytest

from analysis import cli
from analysis.load import UnreadableRunFile, load_run, load_sweep
from tests.analysis.test_sweep_analysis import write_lambda_sweep


def _corrupt(sweep: Path) -> dict[int, Path]:
    """Member 1: a broken line inside metrics.jsonl; 2: config.yaml that is not YAML; 3: its
    eval samples not Parquet (its training files are fine)."""
    metrics = sweep / "1" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], '{"train/step": 1, "train/rew', *lines[1:]]) + "\n")
    config = sweep / "2" / "config.yaml"
    config.write_text("seed: [0\nalgorithm: {name: ppo\n")
    samples = sweep / "3" / "eval" / "final" / "samples.parquet"
    samples.write_bytes(b"not parquet")
    return {1: metrics, 2: config, 3: samples}


def test_unreadable_members_are_skipped_named_and_listed(tmp_path: Path) -> None:
    sweep = write_lambda_sweep(tmp_path)
    bad = _corrupt(sweep)
    out = tmp_path / "out"
    printed = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed):
        warnings.simplefilter("always")
        args = [str(sweep), "--out", str(out), "--n-boot", "20"]
        assert cli.main([*args, "--metric", "eval/sampled_accuracy"]) == 0
    messages = [str(w.message) for w in caught]
    for i in (1, 2, 3):
        assert any(str(bad[i]) in m for m in messages), (i, messages)
    failed = pd.read_csv(out / "failed_members.csv")
    assert failed["run"].tolist() == [1, 2, 5]  # 5 failed in training (the fixture)
    assert failed["status"].tolist() == ["unreadable", "unreadable", "failed"]
    assert f"{bad[1]}:2: not a JSON object" in failed["error"].iloc[0]
    assert str(bad[2]) in failed["error"].iloc[1]
    assert failed["advantage.lam"].tolist()[:2] == [0.0, 0.5]  # their settings still known
    summary = pd.read_csv(out / "sweep_summary.csv")
    acc = summary[summary["metric"] == "eval/sampled_accuracy"].set_index("advantage.lam")
    assert acc["runs"].to_dict() == {0.0: 1, 0.5: 1, 1.0: 1}  # the good members only
    assert acc["failed"].to_dict() == {0.0: 1, 0.5: 1, 1.0: 1}
    assert "member 1: unreadable, left out of curves and summary" in printed.getvalue()


def test_load_run_names_the_unreadable_file(tmp_path: Path) -> None:
    sweep = write_lambda_sweep(tmp_path)
    bad = _corrupt(sweep)
    (sweep / "4" / "run_info.json").write_text("[1, 2]")
    for member, path in ((1, bad[1]), (2, bad[2]), (4, sweep / "4" / "run_info.json")):
        with pytest.raises(UnreadableRunFile, match=str(path)):
            load_run(sweep / str(member))
    with pytest.warns(UserWarning, match="skipping sweep member"):
        df = load_sweep(sweep)
    assert set(df.loc[df["status"] == "unreadable", "run"]) == {"1", "2", "4"}
