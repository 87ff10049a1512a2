"""``data.drop_solved_above`` (issue 17 item 3; ScaleRL's no-positive-resampling): a prompt whose
group passes at the threshold or above is never drawn again, the dropped set is checkpointed,
bad values are config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rlexp.trainers.rl
from benchmarks.resume_demo import max_difference, side_by_side, step_rows
from rlexp.config.validate import validate
from rlexp.data.prompts import PromptStream
from rlexp.rollout.filters import solved_prompts
from rlexp.runtime.errors import ConfigError
from tests.conftest import compose_cfg
from tests.trainers.test_resume import GRPO, _run


def test_solved_prompts_hand_worked() -> None:
    correct = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0]).bool()  # G = 4: 0.75, 1, 0
    assert solved_prompts(correct, [7, 3, 9], 4, 0.9) == [3]
    assert solved_prompts(correct, [7, 3, 9], 4, 0.75) == [7, 3]  # at the threshold: dropped
    assert solved_prompts(correct[:0], [], 4, 0.9) == []


def test_a_dropped_problem_is_never_drawn_and_the_state_round_trips() -> None:
    stream = PromptStream(6, seed=0)
    first = stream.next(4)
    stream.drop([first[0], 5])
    later = stream.next(20)
    assert first[0] not in later and 5 not in later
    assert sorted(set(later)) == sorted({0, 1, 2, 3, 4, 5} - {first[0], 5})
    saved = stream.state_dict()
    assert saved["dropped"] == sorted({first[0], 5})
    again = PromptStream(6, seed=0)
    again.load_state_dict(saved)
    assert again.next(9) == stream.next(9)  # the same prompts after a resume
    old = PromptStream(6, seed=0)
    old.load_state_dict({"epoch": 0, "cursor": 2})  # a checkpoint from before the key
    assert old.dropped == set()
    with pytest.raises(RuntimeError, match="dropped all 6 training problems"):
        stream.drop(range(6))


def _mark_solved(monkeypatch, solved: set[int]) -> list[list[int]]:
    """Make every sample of the problems in ``solved`` correct; returns the problems drawn."""
    real_collect, real_next, drawn = rlexp.trainers.rl.collect, PromptStream.next, []

    def next_prompts(self, k: int) -> list[int]:
        drawn.append(real_next(self, k))
        return drawn[-1]

    def collect(policy, tokenizer, task, problems, *args, **kw):
        batch, stats = real_collect(policy, tokenizer, task, problems, *args, **kw)
        ids = [task.train.index(p) for p in problems]
        batch.correct = torch.tensor([i in solved for i in ids])
        return batch, stats

    monkeypatch.setattr(PromptStream, "next", next_prompts)
    monkeypatch.setattr(rlexp.trainers.rl, "collect", collect)
    return drawn


def test_a_run_stops_drawing_solved_prompts_and_resumes_exactly(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    solved = {0, 2, 4, 6}  # of 8 problems: 2 steps of 4 prompts are one epoch
    drawn = _mark_solved(monkeypatch, solved)
    common = [*GRPO, "task.n_train=8", "eval_every=6", "save_every=2", "data.drop_solved_above=0.9"]
    full = _run(tmp_path / "full", shared_cache, *common, "steps=6")
    rows = step_rows(full)
    for step in range(1, 6):  # a solved prompt drawn before a step is not drawn at it
        before = {p for d in drawn[:step] for p in d if p in solved}
        assert not before & set(drawn[step]), (step, drawn)
    assert set(drawn[2] + drawn[3] + drawn[4] + drawn[5]) == {1, 3, 5, 7}  # after one epoch
    assert [rows[s]["data/dropped_prompts"] for s in (1, 5)] == [4, 4]
    assert sum(rows[s]["data/solved_dropped"] for s in range(6)) == 4

    out = _run(tmp_path / "resumed", shared_cache, *common, "steps=4")
    _run(out, shared_cache, *common, "steps=6", "resume=true")
    a, b = step_rows(full), step_rows(out)
    assert max_difference(a, b) <= 1e-6, side_by_side(a, b, ["data/dropped_prompts"])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.drop_solved_above=0"], "must lie in \\(0, 1\\]"),
        (["data.drop_solved_above=1.5"], "must lie in \\(0, 1\\]"),
        (["algorithm=dpo", "data.drop_solved_above=0.9"], "algorithm.trainer=dpo samples none"),
    ],
)
def test_bad_drop_thresholds_are_config_errors(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        validate(compose_cfg(overrides))
