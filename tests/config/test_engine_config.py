"""``rollout.engine`` / ``rollout.vllm.*``: one clear error per bad setting, before any compute.

vLLM's presence and its architecture list are patched, so these run without the extra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlexp.config.validate import validate
from rlexp.rollout import vllm_engine
from rlexp.runtime.errors import ConfigError
from tests.conftest import compose_cfg


@pytest.fixture
def vllm_present(monkeypatch):
    monkeypatch.setattr(vllm_engine, "vllm_installed", lambda: True)
    monkeypatch.setattr(vllm_engine, "supported_architectures", lambda: {"LlamaForCausalLM"})


def _error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(["algorithm=grpo", *overrides]))
    return str(err.value)


def test_unknown_engine_lists_the_choices() -> None:
    assert "choose: ['native', 'vllm']" in _error("rollout.engine=sglang")


def test_vllm_not_installed_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setattr(vllm_engine, "vllm_installed", lambda: False)
    message = _error("rollout.engine=vllm")
    assert "needs vLLM" in message and 'pip install -e ".[vllm]"' in message
    assert "make install-vllm" in message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["rollout.vllm.sleep_level=1", "device=cpu"], "vLLM cannot sleep on a CPU"),
        (["rollout.vllm.sleep_level=3"], "use 0, 1, 2 or null"),
        (
            ["rollout.max_new_tokens=64", "rollout.vllm.max_model_len=64"],
            "rollout.max_new_tokens=64 does not fit rollout.vllm.max_model_len=64",
        ),
        (["rollout.vllm.gpu_memory_utilization=1.5"], "must lie in (0, 1]"),
        (["algorithm=sft"], "algorithm.trainer=sft does not use it"),
    ],
)
def test_impossible_vllm_settings(vllm_present, overrides: list[str], needle: str) -> None:
    assert needle in _error("rollout.engine=vllm", *overrides)


def test_an_architecture_vllm_cannot_load(vllm_present, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"]}))
    message = _error("rollout.engine=vllm", "model=hf", f"model.path={tmp_path}")
    assert "vLLM has no implementation of ['FooForCausalLM']" in message
    assert "rollout.engine=native" in message


def test_valid_vllm_settings_pass(vllm_present) -> None:
    validate(
        compose_cfg(["algorithm=grpo", "rollout.engine=vllm", "rollout.vllm.max_model_len=128"])
    )
