"""The algorithm zoo's pieces: overlong shaping, dynamic sampling, batch concatenation, and every
algorithm config running end to end through Hydra."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlexp.algos.shaping import overlong_penalty
from rlexp.data.tasks.arithmetic import ArithmeticTask
from rlexp.rollout.batch import RolloutBatch, concat_batches, last_token_rewards
from rlexp.rollout.filters import add_overlong_penalty, informative_groups
from rlexp.train import run
from tests.conftest import CONF_DIR, TINY, compose_cfg, read_jsonl

ALGORITHMS = sorted(
    p.stem for p in Path(CONF_DIR, "algorithm").glob("*.yaml") if p.stem not in {"sft"}
)
# Offline methods sample the TINY base, which is never right after 40 SFT steps: a lenient verifier
# (even-length completions count as correct) gives them pairs and kept samples to train on.
OFFLINE = {
    "dpo": ["algorithm.dpo.k=4", "algorithm.dpo.n_prompts=8", "algorithm.dpo.batch_size=4"]
    + ["algorithm.micro_batch_size=2"],
    "rft": ["algorithm.rft.k=4", "algorithm.rft.n_prompts=8", "algorithm.rft.batch_size=4"],
}


def test_overlong_penalty_at_the_window_edges() -> None:
    lengths = torch.tensor([0, 12, 13, 16, 19, 20, 21, 40])
    got = overlong_penalty(lengths, max_len=20, cache_len=8)  # window (12, 20]
    want = torch.tensor([0.0, 0.0, -1 / 8, -4 / 8, -7 / 8, -1.0, -1.0, -1.0])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_len=4, cache_len=8)


def _batch(correct: list[bool], lengths: list[int], group_size: int) -> RolloutBatch:
    n, t = len(correct), max(lengths)
    mask = (torch.arange(t)[None] < torch.tensor(lengths)[:, None]).float()
    scores = torch.tensor(correct, dtype=torch.float32)
    return RolloutBatch(
        prompt_ids=torch.ones(n, 3, dtype=torch.long),
        prompt_mask=torch.ones(n, 3, dtype=torch.long),
        completion_ids=torch.ones(n, t, dtype=torch.long),
        completion_mask=mask,
        old_logp=torch.zeros(n, t),
        group_ids=torch.arange(n) // group_size,
        scores=scores,
        correct=torch.tensor(correct),
        truncated=torch.zeros(n, dtype=torch.bool),
        token_rewards=last_token_rewards(scores, mask),
    )


def test_dynamic_sampling_filters_on_correctness_not_the_shaped_reward() -> None:
    # group 0: all wrong, but different lengths → different shaped rewards; must still be dropped
    # group 1: mixed → kept; group 2: all right → dropped
    batch = _batch([False, False, True, False, True, True], [4, 20, 5, 5, 5, 5], group_size=2)
    add_overlong_penalty(batch, max_len=20, cache_len=8)
    assert batch.scores[0] != batch.scores[1]  # the shaping made group 0's rewards differ
    keep = informative_groups(batch)
    assert keep.tolist() == [2, 3]
    kept = batch.select(keep)
    assert kept.correct.float().mean() == 0.5


def test_concat_batches_repads_prompts_left_and_completions_right() -> None:
    a, b = _batch([True, False], [2, 3], 2), _batch([True, True], [5, 1], 2)
    b.prompt_ids, b.prompt_mask = (
        torch.ones(2, 5, dtype=torch.long),
        torch.ones(2, 5, dtype=torch.long),
    )
    out = concat_batches([a, b], pad_id=0)
    assert out.prompt_ids.shape == (4, 5) and out.completion_ids.shape == (4, 5)
    assert out.prompt_mask[0].tolist() == [0, 0, 1, 1, 1]  # left padding
    assert out.completion_mask[0].tolist() == [1, 1, 0, 0, 0]  # right padding
    assert out.completion_mask.sum().item() == 2 + 3 + 5 + 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_runs_two_steps_end_to_end(
    algorithm: str, tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    extra = ["algorithm.minibatch_size=4"] if algorithm == "ppo" else OFFLINE.get(algorithm, [])
    if algorithm in OFFLINE:
        monkeypatch.setattr(ArithmeticTask, "is_correct", lambda self, c, p: len(c) % 2 == 0)
    rl_sizes = [
        "algorithm.prompts_per_step=4",
        "algorithm.group_size=4" if algorithm != "ppo" else "algorithm.group_size=1",
        "algorithm.minibatch_size=8" if algorithm != "ppo" else "algorithm.prompts_per_step=8",
    ]
    cfg = compose_cfg(
        [
            *TINY,
            f"algorithm={algorithm}",
            "steps=2",
            "eval_every=2",
            "save_every=2",
            *(rl_sizes if algorithm not in OFFLINE else []),  # offline schemas have no RL keys
            *extra,
            f"output_dir={out}",
            f"cache_dir={shared_cache}",
        ]
    )
    run(cfg)
    rows = read_jsonl(out / "metrics.jsonl")
    assert rows[-1]["train/step"] == 2 and "eval/sampled_accuracy" in rows[-1]
    assert sum("time/step" in r for r in rows) == 2
    assert (out / "checkpoints" / "step_000002" / "policy" / "config.json").exists()
