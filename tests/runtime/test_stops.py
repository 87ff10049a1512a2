"""How a run stops (issue 15, items 5 and 10, re-tried by benchmarks/hostile_cases.py): a new run
pointed at another run's directory, Ctrl-C, a checkpoint that cannot be written (a full disk),
and a failure that cannot even be recorded."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

import rlexp.train
from rlexp.runtime.checkpoint import save_checkpoint
from rlexp.runtime.signals import Terminated, stop_signals_raise
from rlexp.train import main_guard


def _started_run(run_dir: Path) -> dict[str, bytes]:
    """A finished run's records (what ``holds_run`` looks at), and their bytes."""
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"train/step": 0}\n')
    (run_dir / "run_info.json").write_text('{"status": "finished", "started": "2026-12-03"}')
    (run_dir / "config.yaml").write_text("seed: 0\n")
    return {p.name: p.read_bytes() for p in run_dir.iterdir()}


def test_a_new_run_into_a_finished_runs_directory_is_refused(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """It appended a second copy of every step to that run's metrics.jsonl and exited 0."""
    run_dir = tmp_path / "run"
    before = _started_run(run_dir)
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["rlexp-train", f"output_dir={run_dir}", "steps=3"])
    with pytest.raises(SystemExit) as exit_:
        rlexp.train.main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert err.startswith(f"rlexp: config error: output_dir={run_dir} already holds a run")
    assert "(status finished)" in err and "resume=true continues it" in err
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".rlexp.lock"}
    assert after == before  # the refusal is not recorded in the other run's run_info.json


def test_ctrl_c_is_a_recorded_stop_with_exit_code_130(capsys) -> None:
    """SIGINT was a KeyboardInterrupt traceback and exit code -2; now it stops like SIGTERM."""

    def interrupted(cfg) -> float:
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the signal did not stop the run")

    with pytest.raises(SystemExit) as exit_:
        main_guard(interrupted, None)
    assert exit_.value.code == 128 + signal.SIGINT == 130
    assert capsys.readouterr().err == (
        "rlexp: stopped by SIGINT; the run is marked failed, resume=true continues it\n"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after
    with pytest.raises(Terminated, match="stopped by SIGTERM"), stop_signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)


class _Weights:
    def save_pretrained(self, path: Path) -> None:
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"x" * 1000)


def test_a_checkpoint_that_cannot_be_written_names_itself_and_leaves_no_half(
    tmp_path: Path, monkeypatch
) -> None:
    """torch.save on a full disk raised `RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos ...`, naming no file, and left `.tmp-step_*` holding the disk's space."""
    good = save_checkpoint(tmp_path, 1, {"policy": _Weights()}, {"x": 1})

    def full_disk(*args, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as err:
        save_checkpoint(tmp_path, 2, {"policy": _Weights()}, {"x": 1})
    message = str(err.value)
    assert message.startswith(f"could not write the checkpoint {tmp_path / 'checkpoints'}")
    assert "step_000002 (RuntimeError: [enforce fail" in message and "MiB were free" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [good.name]


def test_a_failure_that_cannot_be_recorded_still_shows_its_own_error(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """On a full disk the failure record's write failed too, and its OSError hid the run's."""
    from types import SimpleNamespace

    def no_space(*args, **kw):
        raise OSError(28, f"could not write {tmp_path / 'run_info.json'}: No space left on device")

    hydra = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(tmp_path)), mode=None)
    monkeypatch.setattr(rlexp.train, "record_failure", no_space)
    monkeypatch.setattr(rlexp.train.HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(rlexp.train.HydraConfig, "get", staticmethod(lambda: hydra))

    def boom(cfg) -> float:
        raise ValueError("the run's own error")

    with pytest.raises(ValueError, match="the run's own error"):
        main_guard(boom, None)
    assert "could not record the failure" in caplog.text and "No space left" in caplog.text
