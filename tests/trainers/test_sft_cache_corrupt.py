"""A corrupt SFT cache entry (its weights cut short) is one DataError naming the file and the
remedy, before any RL step, instead of an unnamed failure deep inside from_pretrained."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rlexp.runtime.errors import DataError
from rlexp.train import run
from tests.conftest import TINY, compose_cfg


def test_a_truncated_cached_base_is_named(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = [*TINY, "steps=1", "eval_every=1", "logger=none", f"cache_dir={cache}"]
    run(compose_cfg([*base, f"output_dir={tmp_path / 'first'}"]))
    (weights,) = cache.glob("sft/*/model.safetensors")
    weights.write_bytes(weights.read_bytes()[:-64])
    with pytest.raises(DataError, match=re.escape(str(weights)) + ".*delete that folder"):
        run(compose_cfg([*base, f"output_dir={tmp_path / 'second'}"]))
