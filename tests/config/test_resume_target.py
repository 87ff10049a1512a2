"""``rlexp-train resume=true`` names a run to continue: a directory that does not exist or holds
no run is one config error naming it (issue 15 item d), where it used to start a fresh run there.
``rlexp.train.run`` itself (rlexp-study's per-seed call) still starts a run that is not there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from rlexp.config.resume import check_resume_target
from rlexp.runtime.errors import ConfigError


def _rlexp_train(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    """rlexp-train in this process (Hydra's own command-line path): (exit code, stderr)."""
    from rlexp.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["rlexp-train", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_resume_of_a_typod_directory_is_one_error(tmp_path: Path, monkeypatch, capsys) -> None:
    typo = tmp_path / "runs" / "2024-01-01" / "12-00-0"
    code, err = _rlexp_train(monkeypatch, capsys, "resume=true", f"output_dir={typo}")
    assert code == 2
    assert f"config error: resume=true: output_dir={typo} does not exist" in err
    assert not typo.exists()

    job = tmp_path / "job"  # hydra.run.dir: Hydra makes it (and .hydra/) before the run starts
    code, err = _rlexp_train(monkeypatch, capsys, "resume=true", f"hydra.run.dir={job}")
    assert code == 2 and f"output_dir={job} holds no run to resume" in err
    assert not (job / "metrics.jsonl").exists()  # nothing started: the refusal is recorded
    info = json.loads((job / "run_info.json").read_text())
    assert info["status"] == "failed" and "started" not in info
    code, err = _rlexp_train(monkeypatch, capsys, "resume=true", f"hydra.run.dir={job}")
    assert code == 2 and "holds no run to resume" in err  # its record is no run either


def test_a_directory_with_a_run_passes_and_a_sweep_needs_one_member(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(ConfigError, match="holds no run"):
        check_resume_target(run_dir)
    (run_dir / "metrics.jsonl").write_text("")  # killed before its first checkpoint
    check_resume_target(run_dir)
    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "1").mkdir()
    with pytest.raises(ConfigError, match=f"the sweep directory {sweep} holds no run"):
        check_resume_target(sweep / "1", sweep)
    (sweep / "0" / "run_info.json").write_text('{"status": "failed", "error": "config"}')
    with pytest.raises(ConfigError, match="holds no run"):  # refused members are no runs
        check_resume_target(sweep / "1", sweep)
    (sweep / "0" / "run_info.json").write_text('{"status": "failed", "started": "2024-01-01"}')
    check_resume_target(sweep / "1", sweep)  # a member that never started starts now
