"""Values that used to fail deep inside or silently misbehave (issue 15, items 3, 4, 8, 13): each
is now one config error naming the key, before any model is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlexp.config.validate import validate
from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from tests.conftest import TINY, compose_cfg


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("eval_every=0", "eval_every=0 must be >= 1"),  # was a ZeroDivisionError after loading
        ("save_every=0", "save_every=0 must be >= 1"),
        ("sft.eval_every=0", "sft.eval_every=0 must be >= 1"),
        ("eval.n_problems=0", "eval.n_problems=0 must be >= 1"),  # failed at the final print
        ("eval.batch_size=0", "eval.batch_size=0 must be >= 1"),
        ("eval.top_p=0", "eval.top_p=0.0 must lie in (0, 1]"),
        ("eval.max_new_tokens=0", "eval.max_new_tokens=0 must be >= 1"),
        ("task.n_train=0", "task.n_train=0 must be >= 1"),
        ("device=foo", "device=foo: use auto, cpu, cuda or cuda:N"),
        ("threads=-1", "threads=-1 must be >= 0"),  # silently meant auto
        ("seed=4294967296", "seed=4294967296 must lie in [0, 2^31)"),
        ("algorithm.max_grad_norm=-1", "would flip the gradient"),  # gradient ascent, exit 0
        ("algorithm.max_grad_norm=0", "0 would freeze the model"),
        ("algorithm.weight_decay=-0.1", "algorithm.weight_decay=-0.1 must be >= 0"),
        ("algorithm.critic.lr=-1", "algorithm.critic.lr=-1.0 must be > 0"),
        ("sft.lr=0", "sft.lr=0.0 must be > 0"),
    ],
)
def test_bad_run_values_stop_with_one_line(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([override]))
    assert needle in str(err.value)


def test_a_model_dtype_torch_cannot_name(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    hf = ["model=hf", f"model.path={tmp_path}"]
    with pytest.raises(ConfigError, match="model.dtype=foo: use auto, float32"):
        validate(compose_cfg([*hf, "model.dtype=foo"]))
    validate(compose_cfg([*hf, "model.dtype=bfloat16", "device=cuda:1", "eval_every=1"]))


def test_resume_with_steps_below_the_checkpoint_stops_at_once(tmp_path: Path) -> None:
    """It used to loop forever (the loop counts up to ``steps``)."""
    base = [*TINY, "steps=2", "save_every=1", f"output_dir={tmp_path / 'run'}"]
    base += [f"cache_dir={tmp_path / 'cache'}", "logger=none"]
    run(compose_cfg(base))
    config = (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="is at step 2, beyond steps=1; raise steps"):
        run(compose_cfg([*base, "steps=1", "resume=true"]))
    assert (tmp_path / "run" / "config.yaml").read_text() == config  # nothing rewritten
