"""One source for every default: a value lives in the schema or in the YAML, never both, and the
budgets that must agree (training's, held-out evaluation's, rlexp-eval's) do."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlexp.config import register_configs
from rlexp.config.resume import RESUME_MAY_CHANGE, changed_keys, flat_items, resumed_config
from rlexp.config.schema import EvalJobConfig, RootConfig
from rlexp.runtime.errors import ConfigError
from rlexp.runtime.paths import CONF_DIR
from tests.conftest import compose_cfg


def _values(path: Path) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(path))
    return {k: v for k, v in node.items() if k not in ("defaults", "hydra")}


def test_the_entry_yaml_files_hold_no_value_of_their_schema() -> None:
    assert _values(CONF_DIR / "config.yaml") == {}
    assert _values(CONF_DIR / "eval.yaml") == {}


def test_the_composed_defaults_are_the_schema_defaults() -> None:
    cfg = compose_cfg(["output_dir=x"])
    schema = OmegaConf.structured(RootConfig)
    for section in ("rollout", "sft", "eval", "study"):
        assert cfg[section] == schema[section], section
    for key in ("seed", "steps", "eval_every", "save_every", "resume", "threads", "device"):
        assert cfg[key] == schema[key], key


def test_rlexp_eval_defaults_to_the_training_budget() -> None:
    job = OmegaConf.structured(EvalJobConfig)
    assert job.max_new_tokens is None  # resolved to the run's (or the schema's) rollout budget
    assert compose_cfg(["output_dir=x"]).eval.max_new_tokens is None  # = rollout.max_new_tokens


def _saved_run(tmp_path: Path, overrides: list[str]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(
        compose_cfg([*overrides, f"output_dir={run}"]), run / "config.yaml", resolve=True
    )
    return run


def test_resume_takes_the_saved_settings_and_refuses_changed_overrides(tmp_path: Path) -> None:
    run = _saved_run(tmp_path, ["model.hidden_size=32", "algorithm.lr=1e-5"])
    plain = compose_cfg([f"output_dir={run}", "resume=true", "steps=7"])
    resumed = resumed_config(plain, run, overrides=["resume=true", "steps=7"])
    assert resumed.model.hidden_size == 32 and resumed.algorithm.lr == 1e-5  # the run's own
    assert resumed.steps == 7 and resumed.resume  # what a resume may change
    assert changed_keys(resumed, plain) == ["algorithm.lr", "model.hidden_size"]
    changed = compose_cfg([f"output_dir={run}", "resume=true", "model.hidden_size=48"])
    with pytest.raises(ConfigError, match=r"model.hidden_size \(32 -> 48\)"):
        resumed_config(changed, run, overrides=["resume=true", "model.hidden_size=48"])
    with pytest.raises(ConfigError, match="algorithm.lr"):  # compose API: every difference counts
        resumed_config(plain, run, overrides=None)
    assert "steps" in RESUME_MAY_CHANGE and "algorithm" not in RESUME_MAY_CHANGE


def test_no_option_repeats_a_default_of_its_schema() -> None:
    """A group option (conf/<group>/<option>.yaml) holds only what makes it differ."""
    from hydra.core.config_store import ConfigStore

    register_configs()
    repo = ConfigStore.instance().repo
    checked, repeated = 0, []
    for path in sorted(CONF_DIR.glob("*/*.yaml")):
        raw = OmegaConf.to_container(OmegaConf.load(path))
        schemas = [d for d in raw.get("defaults", []) if str(d).startswith("/schema/")]
        if not schemas:
            continue
        name = schemas[0].removesuffix("@_here_").rsplit("/", 1)[1]
        schema = flat_items(
            OmegaConf.to_container(repo["schema"][path.parent.name][f"{name}.yaml"].node)
        )
        values = flat_items({k: v for k, v in raw.items() if k != "defaults"})
        repeated += [
            f"{path.parent.name}/{path.name}: {k}"
            for k, v in values.items()
            if k != "name" and k in schema and schema[k] == v
        ]
        checked += 1
    assert checked >= 20
    assert not repeated, f"drop the schema's defaults from the YAML: {repeated}"
