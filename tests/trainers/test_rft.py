"""Rejection-sampling fine-tuning: what is kept, how it is counted, and its SFT encoding."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rlexp.config.validate import validate
from rlexp.data.tasks import build_task
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.runtime.errors import ConfigError
from rlexp.trainers.offline import SampleGroup, training_prompts, warmup_adamw
from rlexp.trainers.rft import keep_correct
from rlexp.trainers.sft import encode_examples
from tests.conftest import compose_cfg


def test_keep_correct_dedupes_per_prompt_and_counts() -> None:
    task = build_task("arithmetic", n_train=30, n_test=5)
    a, b, c = task.train[:3]
    groups = [
        SampleGroup(
            a, [a.solution, "####1", a.solution, "x" + a.solution], [True, False, True, True]
        ),
        SampleGroup(b, ["####1", "####2"], [False, False]),
        SampleGroup(c, [c.solution, c.solution], [True, True]),
    ]
    kept, stats = keep_correct(groups)
    assert [(p.prompt, p.solution) for p in kept] == [
        (a.prompt, a.solution),
        (a.prompt, "x" + a.solution),  # another correct completion: kept, once
        (c.prompt, c.solution),
    ]
    assert all(p.answer == q.answer for p, q in zip(kept, [a, a, c], strict=True))
    assert stats["rft/kept"] == 3
    assert stats["rft/kept_per_prompt"] == pytest.approx(1.0)  # 3 kept / 3 prompts
    assert stats["rft/prompts_with_kept_frac"] == pytest.approx(2 / 3)
    # fine-tuned like SFT data: [BOS] prompt completion [EOS], loss on the completion only
    tok = build_char_tokenizer()
    ids, n_prompt = encode_examples(tok, kept[:1])[0]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    assert tok.decode(ids[n_prompt:-1]) == a.solution


def test_training_prompts_are_distinct_seeded_and_capped() -> None:
    task = build_task("arithmetic", n_train=30, n_test=5)
    first = training_prompts(task, 10, seed=0)
    assert first == training_prompts(task, 10, seed=0) != training_prompts(task, 10, seed=1)
    assert len({p.id for p in first}) == 10
    assert len(training_prompts(task, 1000, seed=0)) == 30


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["algorithm.rft.k=0"], "algorithm.rft.k=0 must be >= 1"),
        (["algorithm.rft.batch_size=0"], "algorithm.rft.batch_size=0"),
        (["algorithm.lr=0"], "algorithm.lr=0.0 must be > 0"),
    ],
)
def test_impossible_rft_settings_fail_validation(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(["algorithm=rft", "output_dir=.", *overrides]))
    assert needle in str(err.value)


def test_warmup_adamw_ramps_the_learning_rate_linearly() -> None:
    model = torch.nn.Linear(2, 1)
    algo = SimpleNamespace(lr=1e-3, weight_decay=0.0)
    optimizer, scheduler = warmup_adamw(model, algo, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    _, no_warmup = warmup_adamw(model, algo, warmup_steps=0)
    assert no_warmup.get_last_lr()[0] == pytest.approx(1e-3)
