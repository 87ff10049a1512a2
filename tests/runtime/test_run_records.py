"""A corrupt ``run_info.json`` (issue 15, item 11): named in one error where it is needed,
replaced with a warning where the record is rewritten anyway, listed in a sweep's summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rlexp.runtime.errors import DataError
from rlexp.runtime.io import read_run_record
from rlexp.runtime.multirun import format_summary, record_failure, summarize_sweep


@pytest.mark.parametrize("text", ['{"status": "runn', "[1, 2]", "\udcff"])
def test_a_corrupt_record_is_one_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "run_info.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(DataError, match=str(path)):
        read_run_record(path)
    assert read_run_record(tmp_path / "absent.json") == {}
    assert path.read_bytes() == text.encode("utf-8", "surrogateescape")  # nothing rewritten


def test_a_failure_record_replaces_a_corrupt_one_with_a_warning(tmp_path: Path, caplog) -> None:
    (tmp_path / "run_info.json").write_text('{"status": "runn')
    with caplog.at_level(logging.WARNING):
        record_failure(tmp_path, RuntimeError("boom"))
    assert str(tmp_path / "run_info.json") in caplog.text
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["status"] == "failed" and info["error"] == "RuntimeError: boom"


def test_a_sweep_summary_lists_a_member_with_a_corrupt_record(tmp_path: Path) -> None:
    for i, text in enumerate(['{"status": "finished", "final": {}}', "{not json"]):
        (tmp_path / str(i) / ".hydra").mkdir(parents=True)
        (tmp_path / str(i) / ".hydra" / "overrides.yaml").write_text(f"- seed={i}\n")
        (tmp_path / str(i) / "run_info.json").write_text(text)
    rows = summarize_sweep(tmp_path)
    assert [r["status"] for r in rows] == ["finished", "unreadable"]
    assert str(tmp_path / "1" / "run_info.json") in rows[1]["error"]
    assert "1 of 2 members finished" in format_summary(rows)


def test_a_full_disk_leaves_the_record_and_no_tmp(tmp_path: Path, monkeypatch) -> None:
    """A full disk used to leave an empty run_info.tmp next to the record, with an error naming
    neither; now the old record stays, no .tmp is left, and the error names the record."""
    import errno

    from rlexp.runtime.io import atomic_write_json

    path = tmp_path / "run_info.json"
    atomic_write_json(path, {"status": "running"})

    def full_disk(self, text, *args, **kwargs):
        self.touch()  # the file is created, then the write fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match=f"could not write {path}: No space left on device"):
        atomic_write_json(path, {"status": "finished"})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"status": "running"}
    assert not (tmp_path / "run_info.json.tmp").exists()
