"""``model.name`` is the model kind (tiny | hf) and names the SFT base's folder under cache_dir:
another value is a config error before anything is written (issue 15 item e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from tests.conftest import compose_cfg


@pytest.mark.parametrize(
    "overrides", [["model.name=../../x"], ["model=hf", "model.path=/m", "model.name=a/b"]]
)
def test_a_model_name_that_is_no_kind_stops_before_the_cache(tmp_path: Path, overrides) -> None:
    """``../../x`` used to put the SFT base at <cache_dir>/sft/../../x-<task>-<hash>, outside the
    cache (model=hf with sft_first), or fail deep inside after the task was built (model=tiny)."""
    cache = tmp_path / "a" / "cache"
    cfg = compose_cfg([f"output_dir={tmp_path / 'run'}", f"cache_dir={cache}", *overrides])
    with pytest.raises(ConfigError, match="model.name=.* is not a model kind; use tiny or hf"):
        run(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run dir, no cache, nothing above
