"""An unknown key added with ``+`` is a config error naming it (issue 15 item b).

Hydra applies ``+key=value`` with ``force_add``, which lifts the struct flag of the structured
(schema-typed) section it lands in, so the schema alone never sees it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rlexp.config import register_configs
from rlexp.config.validate import unknown_keys, validate
from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from tests.conftest import CONF_DIR, compose_cfg


@pytest.mark.parametrize(
    "override",
    ["+algorithm.foo=1", "++algorithm.foo=1", "+algorithm.kl.foo=1", "+eval.foo=1", "+foo=1"],
)
def test_an_added_unknown_key_stops_the_run_naming_it(tmp_path: Path, override: str) -> None:
    """It was accepted and ignored: the run trained as if the override were not there."""
    key = override.lstrip("+").split("=")[0]
    cfg = compose_cfg([f"output_dir={tmp_path / 'run'}", override])
    with pytest.raises(ConfigError, match=f"unknown config key\\(s\\) {key}: no schema"):
        run(cfg)
    assert not (tmp_path / "run").exists()  # before anything is written or built


def test_open_sections_and_every_shipped_config_keep_their_keys() -> None:
    """Dict-typed sections take any key; no shipped option or sweep adds an undeclared one."""
    cfg = compose_cfg(["output_dir=u", "+reward.components.format=0.1", "+study.tiers.hard={}"])
    assert cfg.reward.components.format == 0.1
    validate(cfg)
    options = [f"{g}={p.stem}" for g in ("algorithm", "experiment") for p in _yamls(g)]
    options += [f"+sweep={p.stem}" for p in sorted(Path(CONF_DIR).parent.glob("sweeps/*.yaml"))]
    for option in options:
        extra = ["model.path=/m"] if "qwen" in option else []
        assert unknown_keys(compose_cfg(["output_dir=u", option, *extra])) == [], option


def test_an_unknown_key_on_rlexp_eval_is_one_line(capsys) -> None:
    from rlexp.evaluate import main

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["output_dir=u", "+n_sample=4"])
    with pytest.raises(SystemExit) as exit_:
        main.__wrapped__(cfg)
    assert exit_.value.code == 2
    assert "unknown config key(s) n_sample" in capsys.readouterr().err


def _yamls(group: str) -> list[Path]:
    return sorted(Path(CONF_DIR, group).glob("*.yaml"))
