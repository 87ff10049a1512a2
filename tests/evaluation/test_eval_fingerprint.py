"""rlexp-eval into a directory that already holds parts (issue 15 item g): the same job resumes,
another checkpoint or other settings are refused with one line naming the directory and the
fields that differ (the old parts used to be reused silently)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from rlexp.evaluation.samples import run_eval
from rlexp.runtime.errors import ConfigError
from tests.evaluation.test_evaluate import _cfg, _checkpoint


def _partial(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """A finished evaluation whose last part is gone (as if killed before it)."""
    ckpt, out = _checkpoint(tmp_path), tmp_path / "eval"
    run_eval(_cfg(ckpt, out))
    full = pd.read_parquet(out / "samples.parquet")
    sorted((out / "parts").glob("part_*.parquet"))[-1].unlink()
    return ckpt, out, full


def test_the_same_job_resumes(tmp_path: Path) -> None:
    ckpt, out, full = _partial(tmp_path)
    saved = json.loads((out / "parts" / "fingerprint.json").read_text())
    assert saved["n_samples"] == 4 and saved["checkpoint"] == str(ckpt.resolve())
    run_eval(_cfg(ckpt, out, batch_size=5, label="RL"))  # how fast, and the name: not the parts
    pd.testing.assert_frame_equal(pd.read_parquet(out / "samples.parquet"), full)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"n_samples": 8}, "n_samples (4 -> 8)"),
        ({"temperature": 0.5}, "temperature (1.0 -> 0.5)"),
        ({"max_new_tokens": 9}, "max_new_tokens (6 -> 9)"),
        ({"n_problems": 5}, "n_problems (None -> 5)"),
        ({"task": {"name": "arithmetic", "n_terms": 3, "digits": 1, "n_test": 7}}, "task.n_terms"),
    ],
)
def test_other_settings_are_refused(tmp_path: Path, change: dict, needle: str) -> None:
    ckpt, out, _ = _partial(tmp_path)
    before = sorted(p.name for p in (out / "parts").iterdir())
    with pytest.raises(ConfigError) as err:
        run_eval(_cfg(ckpt, out, **change))
    message = str(err.value)
    assert message.startswith(f"output_dir={out} holds parts of another evaluation: ")
    assert needle in message and "\n" not in message
    assert sorted(p.name for p in (out / "parts").iterdir()) == before  # nothing written


def test_another_checkpoint_or_rewritten_weights_are_refused(tmp_path: Path) -> None:
    ckpt, out, _ = _partial(tmp_path)
    other = _checkpoint(tmp_path / "other")
    with pytest.raises(ConfigError, match=f"checkpoint \\({ckpt.resolve()} -> {other.resolve()}"):
        run_eval(_cfg(other, out))
    weights = next(ckpt.glob("*.safetensors"))  # the same folder, trained further in place
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ConfigError, match=f"checkpoint:{weights.name} \\("):
        run_eval(_cfg(ckpt, out))


def test_parts_without_a_fingerprint_are_refused_and_a_fresh_dir_gets_one(tmp_path: Path) -> None:
    ckpt, out, _ = _partial(tmp_path)
    (out / "parts" / "fingerprint.json").unlink()  # parts of an older rlexp-eval
    with pytest.raises(ConfigError, match="holds evaluation parts without a fingerprint"):
        run_eval(_cfg(ckpt, out))
    for part in (out / "parts").glob("part_*.parquet"):
        part.unlink()
    run_eval(_cfg(ckpt, out, n_samples=2))  # no parts: nothing to mix, starts over
    assert json.loads((out / "parts" / "fingerprint.json").read_text())["n_samples"] == 2


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"n_problems": 0}, "n_problems=0 must be >= 1 (null: the whole split)"),  # meant all
        ({"chunk_problems": 0}, "chunk_problems=0 must be >= 1"),  # range() after the load
        ({"n_samples": 0}, "n_samples=0 must be >= 1"),
        ({"top_p": 0.0}, "top_p=0.0 must lie in (0, 1]"),
        ({"split": "dev"}, "split=dev: use test or train"),
    ],
)
def test_bad_job_values_stop_before_anything_is_written(
    tmp_path: Path, change: dict, needle: str
) -> None:
    out = tmp_path / "eval"
    with pytest.raises(ConfigError, match=re.escape(needle)):
        run_eval(_cfg(tmp_path / "no-model", out, **change))
    assert not out.exists()
