"""Users' own rewards by import path (``package.module:function``): parameters from the config,
the dataset row's extra fields, clear errors, and a joblib multirun whose workers import them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlexp.config.validate import validate
from rlexp.data.tasks import Problem, build_task
from rlexp.rollout.rewards import REWARDS, score_components
from rlexp.runtime.errors import ConfigError
from tests.conftest import TINY, compose_cfg

USER_MODULE = '''
def brevity(completions, problems, task, target=10, **params):
    """1 at the target length, falling linearly to 0 at twice its distance."""
    return [max(0.0, 1 - abs(len(c) - target) / target) for c in completions]


def difficulty_weighted(completions, problems, task, **params):
    """Correct answers weighted by the row's own 'weight' column."""
    ok = [task.is_correct(c, p) for c, p in zip(completions, problems)]
    return [float(o) * p.extra.get("weight", 1.0) for o, p in zip(ok, problems)]
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_an_import_path_is_a_reward_with_parameters(user_module: Path) -> None:
    task = build_task("arithmetic", n_train=5, n_test=5)
    p = Problem(id="p", prompt="1+2=", solution="1+2=3####3", answer="3")
    texts = ["x" * 10, "x" * 15, "x" * 30]
    weights = {"my_rewards:brevity": 1.0}
    got = score_components(texts, [p] * 3, task, weights)
    assert got == {"my_rewards:brevity": [1.0, 0.5, 0.0]}
    got = score_components(texts, [p] * 3, task, weights, {"my_rewards:brevity": {"target": 15}})
    assert got["my_rewards:brevity"] == pytest.approx([2 / 3, 1.0, 0.0])


def test_a_reward_sees_the_rows_extra_columns(user_module: Path, tmp_path: Path) -> None:
    rows = [{"question": "1+1?", "answer": "#### 2", "weight": 3.0}, {"question": "2+2?"}]
    rows[1]["answer"] = "#### 4"
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = build_task(
        "gsm8k", train_file=str(tmp_path / "train.jsonl"), test_file=str(tmp_path / "test.jsonl")
    )
    assert task.train[0].extra == {"weight": 3.0} and task.train[1].extra == {}
    fn = REWARDS.get("my_rewards:difficulty_weighted")
    assert fn(["#### 2", "#### 4"], task.train, task) == [3.0, 1.0]


@pytest.mark.parametrize(
    ("component", "message"),
    [
        ("no_such_module:fn", "cannot import 'no_such_module'"),
        ("os:no_such_function", "'os' has no 'no_such_function'"),
        ("os:sep", "is not callable"),
        ("brevity", "choose one of"),
    ],
)
def test_a_bad_reward_is_one_config_error(tmp_path: Path, component: str, message: str) -> None:
    cfg = compose_cfg([*TINY, f"output_dir={tmp_path}"])
    cfg.reward.components = {component: 1.0}
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_params_for_a_reward_not_in_the_sum_are_a_config_error(tmp_path: Path) -> None:
    cfg = compose_cfg([*TINY, f"output_dir={tmp_path}", "+reward.params.format.x=1"])
    with pytest.raises(ConfigError, match="reward.params.format gives parameters"):
        validate(cfg)


@pytest.mark.slow  # a joblib multirun of two members in subprocesses
def test_a_user_reward_works_under_the_joblib_launcher(user_module: Path, tmp_path: Path) -> None:
    conf = tmp_path / "user_conf" / "reward"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text(
        "defaults:\n  - /schema/reward/reward@_here_\n  - _self_\n\nname: mine\n"
        "components:\n  exact_match: 1.0\n  'my_rewards:brevity': 0.1\n"
        "params:\n  'my_rewards:brevity':\n    target: 12\n"
    )
    sweep = tmp_path / "sweep"
    cmd = [
        str(Path(sys.executable).parent / "rlexp-train"),
        "-m",
        *TINY,
        "reward=mine",
        f"hydra.searchpath=[file://{tmp_path / 'user_conf'}]",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1",
        "steps=2",
        "eval_every=2",
        "threads=1",
        "logger=none",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = os.environ | {"PYTHONPATH": str(user_module), "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [m["status"] for m in summary] == ["finished", "finished"]
    rows = [json.loads(x) for x in (sweep / "0" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/reward_my_rewards:brevity" in r for r in rows), sorted(rows[-1])
