"""Exact resume (a SIGKILLed run restarted with resume=true is the uninterrupted run) and the
guards that stop a run: non-finite reward / advantages / loss / gradients, generation OOM."""

from __future__ import annotations

import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import rlexp.trainers.rl
from benchmarks.resume_demo import (
    SHOWN,
    kill_after_checkpoint,
    max_difference,
    side_by_side,
    step_rows,
)
from rlexp.data.prompts import PromptStream
from rlexp.data.tasks import build_task
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.rollout.collect import collect
from rlexp.rollout.engine import GenerationChunk
from rlexp.runtime.checkpoint import (
    latest_checkpoint,
    load_trainer_state,
    remove_partial,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rlexp.runtime.tracking import truncate_jsonl
from rlexp.train import run
from tests.conftest import TINY, compose_cfg, read_jsonl
from tests.wandb_offline import read_offline_runs

# The smoke-size SFT base never answers right, so exact match alone gives no gradient: DAPO's
# overlong length penalty (a ramp over 4..20 tokens) gives every step a learning signal.
SIGNAL = [
    "algorithm.overlong.enabled=true",
    "algorithm.overlong.max_len=20",
    "algorithm.overlong.cache_len=16",
]
GRPO = [
    *SIGNAL,
    "algorithm=grpo",
    "algorithm.prompts_per_step=4",
    "algorithm.group_size=4",
    "algorithm.minibatch_size=8",
    "algorithm.micro_batch_size=4",
    "threads=1",
]
PPO = [
    *SIGNAL,
    "algorithm=ppo",
    "algorithm.prompts_per_step=8",
    "algorithm.minibatch_size=4",
    "threads=1",
]


def _run(out: Path, cache: Path, *overrides: str) -> Path:
    run(compose_cfg([*TINY, f"output_dir={out}", f"cache_dir={cache}", *overrides]))
    return out


# ---- exact resume ------------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess
def test_sigkilled_run_resumes_to_the_metrics_of_an_uninterrupted_run(
    tmp_path: Path, shared_cache: Path
) -> None:
    """rlexp-train killed with SIGKILL after logging a step past its checkpoint, then restarted
    with resume=true: every step's metrics and the final evaluation equal the uninterrupted run's
    (which also runs in-process here, so the comparison crosses processes too)."""
    overrides = [*GRPO, "steps=8", "save_every=2", "eval_every=4", f"cache_dir={shared_cache}"]
    full = _run(tmp_path / "full", shared_cache, *overrides)

    resumed = tmp_path / "resumed"
    killed = kill_after_checkpoint(resumed, [*TINY, *overrides], timeout=300)
    assert killed["last_logged_step"] >= killed["checkpoint_step"]  # rows to drop on resume
    assert not (resumed / "checkpoints" / "step_000008").exists()  # killed mid-training
    wandb_id = json.loads((resumed / "run_info.json").read_text())["wandb_id"]
    _run(resumed, shared_cache, *overrides, "resume=true")

    a, b = step_rows(full), step_rows(resumed)  # also: no train/step logged twice
    print(killed, "\n" + side_by_side(a, b, SHOWN))
    assert sorted(b) == list(range(9))
    assert all(a[s]["train/grad_norm"] > 0 and a[s]["adv/std"] > 0 for s in range(8))  # it learns
    assert max_difference(a, b) <= 1e-6
    assert (
        "eval/sampled_accuracy" in b[8]
        and b[8]["eval/sampled_accuracy"] == a[8]["eval/sampled_accuracy"]
    )
    discarded = read_jsonl(resumed / "metrics.jsonl.discarded")
    assert [r["train/step"] for r in discarded][0] == killed["checkpoint_step"]

    info = json.loads((resumed / "run_info.json").read_text())
    assert info["status"] == "finished"
    assert info["resumed_from"].endswith(f"step_{killed['checkpoint_step']:06d}")
    # the restart continued the same W&B run. (The killed process's own offline file may hold
    # only its header: W&B's service had not flushed it. metrics.jsonl is the full record.)
    dirs = sorted((resumed / "wandb").glob("offline-run-*"))
    assert len(dirs) == 2 and all(d.name.endswith(f"-{wandb_id}") for d in dirs)
    last = _last_wandb_run(resumed)
    assert last["run"].run_id == wandb_id == info["wandb_id"] and last["exit_code"] == 0
    assert [h["train/step"] for h in last["history"]] == list(range(killed["checkpoint_step"], 9))


def test_ppo_resume_is_exact_and_draws_the_same_prompts(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    """PPO (critic, its optimizer, KL in the reward): 2 steps, then resume to 4, equals 4 steps
    straight, prompt for prompt; a half-written later checkpoint (a kill during a save) is
    ignored and cleaned up."""
    drawn: list[list[int]] = []
    real_next = PromptStream.next

    def next_prompts(self, k: int) -> list[int]:
        drawn.append(real_next(self, k))
        return drawn[-1]

    monkeypatch.setattr(PromptStream, "next", next_prompts)
    common = [*PPO, "eval_every=2", "save_every=2"]

    full = _run(tmp_path / "full", shared_cache, *common, "steps=4")
    straight, drawn[:] = list(drawn), []

    out = _run(tmp_path / "resumed", shared_cache, *common, "steps=2")
    partial = out / "checkpoints" / ".tmp-step_000004-99999"
    (partial / "policy").mkdir(parents=True)
    (partial / "policy" / "model.safetensors").write_bytes(b"truncated")
    _run(out, shared_cache, *common, "steps=4", "resume=true")

    assert drawn == straight and len(drawn) == 4  # no prompt skipped or repeated
    assert not partial.exists()
    info = json.loads((out / "run_info.json").read_text())
    assert info["resumed_from"].endswith("step_000002")
    a, b = step_rows(full), step_rows(out)
    assert max_difference(a, b) <= 1e-6, side_by_side(a, b, [*SHOWN, "critic/value_loss"])
    assert a[3]["critic/value_loss"] == b[3]["critic/value_loss"] > 0
    assert all(a[s]["train/grad_norm"] > 0 for s in range(4))
    assert b[0]["train/gen_oom_retries"] == 0
    state = load_trainer_state(out / "checkpoints" / "step_000004")
    assert state["next_group_id"] == 4 * 8 and "critic_optimizer" in state


def test_resume_before_the_first_checkpoint_starts_over_without_duplicate_rows(
    tmp_path: Path, shared_cache: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"train/step": 0, "train/reward_mean": 9.0}\n')
    _run(out, shared_cache, *GRPO, "steps=1", "resume=true")
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["train/step"] for r in rows] == [0, 1] and rows[0]["train/reward_mean"] != 9.0
    assert json.loads((out / "run_info.json").read_text())["resumed_from"] is None


def test_trainer_state_with_every_rng_loads_with_weights_only(tmp_path: Path) -> None:
    class Weights:
        def save_pretrained(self, path: Path) -> None:
            path.mkdir()
            (path / "w.bin").write_text("w")

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # a cached gaussian is part of numpy's state too
    ckpt = save_checkpoint(tmp_path, 2, {"policy": Weights()}, {"cursor": 5})
    expected = torch.rand(3), np.random.standard_normal(3), random.random()

    state = load_trainer_state(ckpt)  # weights_only=True
    assert state["step"] == 2 and state["cursor"] == 5
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.standard_normal(3), expected[1])
    assert random.random() == expected[2]
    assert set(rng_state()) >= {"torch", "numpy", "python"}


def test_a_checkpoint_half_written_by_a_kill_is_never_loaded(tmp_path: Path) -> None:
    class Weights:
        def save_pretrained(self, path: Path) -> None:
            path.mkdir()

    save_checkpoint(tmp_path, 2, {"policy": Weights()}, {})
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_000004-123" / "policy").mkdir(parents=True)  # killed while saving
    assert latest_checkpoint(tmp_path) == root / "step_000002"
    assert load_trainer_state(latest_checkpoint(tmp_path))["step"] == 2
    # killed inside commit_dir, between moving the old copy aside and renaming the new one
    (root / "step_000002").rename(root / ".old-step_000002-123")
    assert remove_partial(tmp_path) == [root / ".tmp-step_000004-123"]
    assert sorted(p.name for p in root.iterdir()) == ["step_000002"]


def test_truncate_jsonl_drops_rows_logged_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"train/step": s, "x": s} for s in range(5)] + [{"note": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"train/st')  # cut by a kill
    assert truncate_jsonl(path, "train/step", 3) == 3
    assert read_jsonl(path) == rows[:3] + rows[-1:]
    discarded = path.with_name("metrics.jsonl.discarded").read_text().splitlines()
    assert [json.loads(line) for line in discarded[:2]] == rows[3:5]
    assert discarded[2] == '{"train/st'
    assert truncate_jsonl(path, "train/step", 3) == 0


# ---- guards ------------------------------------------------------------------------------------
def test_nan_gradient_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    """A NaN gradient at train/step 3: the error names the tensor and the step, no row or
    checkpoint of step 3 is written, run_info.json and W&B say failed."""
    real_clip, real_update, step = (
        torch.nn.utils.clip_grad_norm_,
        rlexp.trainers.rl.policy_update,
        [],
    )

    def update(*args, **kw):
        step.append(1)
        return real_update(*args, **kw)

    def clip(params, max_norm):
        params = list(params)
        if len(step) == 4:  # the policy update of train/step 3
            params[0].grad.fill_(float("nan"))
        return real_clip(params, max_norm)

    monkeypatch.setattr(rlexp.trainers.rl, "policy_update", update)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError) as err:
        _run(out, shared_cache, *GRPO, "steps=5", "save_every=2", "eval_every=5")
    msg = str(err.value)
    assert msg.startswith("non-finite gradient norm of the policy (nan)")
    assert "at train/step 3;" in msg and msg.endswith(f"{out / 'checkpoints' / 'step_000002'}")

    assert latest_checkpoint(out).name == "step_000002"
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "failed" and msg in info["error"]
    assert [r["train/step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    assert _last_wandb_run(out)["exit_code"] == 1


def _last_wandb_run(run_dir: Path, wait_s: float = 20.0) -> dict:
    """The newest offline W&B run file of ``run_dir``, read once it holds its exit record: W&B's
    service may write the file a moment after ``finish`` returns."""
    deadline = time.monotonic() + wait_s
    while (last := read_offline_runs(run_dir)[-1])["exit_code"] is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return last


def test_exploded_but_finite_weights_stop_the_run_before_they_are_saved(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    """Weights scaled to ~1e6 by the update of train/step 2 are finite, so no NaN guard sees
    them before the next step: the parameter-norm guard stops the run at step 2, before that
    step's checkpoint, and the checkpoint it names holds the good weights (issue 15, item 6)."""
    real_update = rlexp.trainers.rl.policy_update
    calls = []

    def update(policy, *args, **kw):
        stats = real_update(policy, *args, **kw)
        calls.append(1)
        if len(calls) == 3:  # one update per step: train/step 2's
            with torch.no_grad():
                for p in policy.parameters():
                    p.mul_(1e6)
        return stats

    monkeypatch.setattr(rlexp.trainers.rl, "policy_update", update)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError) as err:
        _run(out, shared_cache, *GRPO, "steps=4", "save_every=1", "eval_every=5")
    msg = str(err.value)
    assert msg.startswith("policy parameter norm ") and "the update diverged" in msg
    assert "at train/step 2;" in msg and msg.endswith(str(out / "checkpoints" / "step_000002"))
    assert latest_checkpoint(out).name == "step_000002"  # the state after step 1's update
    weights = load_file(str(out / "checkpoints" / "step_000002" / "policy" / "model.safetensors"))
    norm = float(torch.stack([w.double().square().sum() for w in weights.values()]).sum().sqrt())
    logged = read_jsonl(out / "metrics.jsonl")
    assert [r["train/step"] for r in logged] == [0, 1]
    assert norm == pytest.approx(logged[-1]["train/param_norm"], rel=1e-6)  # the good weights


@pytest.mark.parametrize("what", ["advantages", "reward"])
def test_nan_advantages_or_reward_are_named_with_their_step(
    tmp_path: Path, shared_cache: Path, monkeypatch, what: str
) -> None:
    real = rlexp.trainers.rl.compute_advantages

    def nan_at_step_1(batch, *args):
        real(batch, *args)
        if batch.group_ids.min() >= 4:  # the second step's groups
            batch.advantages[0, 0] = float("nan")

    monkeypatch.setattr(rlexp.trainers.rl, "compute_advantages", nan_at_step_1)
    bad = ["reward.components.exact_match=nan"] if what == "reward" else []
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError) as err:
        _run(out, shared_cache, *GRPO, "steps=3", "save_every=5", "eval_every=5", *bad)
    step = 0 if what == "reward" else 1
    assert str(err.value).startswith(f"non-finite {what} (")
    assert f"at train/step {step}; the run stopped, no checkpoint was written yet" in str(err.value)
    assert json.loads((out / "run_info.json").read_text())["status"] == "failed"


def _tiny_parts():
    task = build_task("arithmetic", n_train=16, n_test=2)
    tok = build_char_tokenizer()
    model = build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    return task, tok, model


def _collect(task, tok, model, chunk: GenerationChunk):
    from omegaconf import OmegaConf

    rollout = OmegaConf.create({"max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0})
    problems = task.train[:8]
    return collect(
        model,
        tok,
        task,
        problems,
        torch.arange(8),
        reward_weights={"exact_match": 1.0},
        rollout_cfg=rollout,
        generator=torch.Generator().manual_seed(0),
        gen_chunk=chunk,
    )


def test_generation_oom_halves_the_chunk_and_retries(monkeypatch) -> None:
    """OOM above 2 rows per sampling call: 8 → 4 → 2, logged and warned; the batch is whole and
    equals sampling in chunks of 2 from the start (not the one-call batch: chunks draw the random
    numbers in another order). At one row the error says what to do."""
    import rlexp.rollout.engine as experience

    task, tok, model = _tiny_parts()
    real_sample = experience.sample

    def sample(model, prompt_ids, *args, **kw):
        if prompt_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_sample(model, prompt_ids, *args, **kw)

    monkeypatch.setattr(experience, "sample", sample)
    chunk = GenerationChunk()
    with pytest.warns(UserWarning) as caught:
        batch, stats = _collect(task, tok, model, chunk)
    assert [str(w.message) for w in caught] == [
        f"out of memory sampling {n} sequences at once; retrying in chunks of {n // 2}"
        for n in (8, 4)
    ]
    assert stats["train/gen_oom_retries"] == 2 and chunk.size == 2
    assert batch.completion_ids.shape[0] == 8 and batch.old_logp.shape == batch.completion_ids.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the halved chunk is kept: no second OOM
        again, stats = _collect(task, tok, model, GenerationChunk(2))
    assert stats["train/gen_oom_retries"] == 0
    assert torch.equal(again.completion_ids, batch.completion_ids)

    def always_oom(*args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(experience, "sample", always_oom)
    with (
        pytest.warns(UserWarning),
        pytest.raises(RuntimeError, match="even one sequence at a time"),
    ):
        _collect(task, tok, model, GenerationChunk())


@pytest.mark.parametrize("damaged", ["trainer_state.pt", "policy/model.safetensors"])
def test_resume_skips_an_unreadable_checkpoint_and_names_it(tmp_path: Path, damaged: str) -> None:
    """A truncated trainer_state.pt or weight file (a full disk, a copy cut short) used to fail
    the resume with `OSError: [Errno 22] Invalid argument` naming no file, or to load garbage;
    now the resume warns, naming the file, and continues from the older intact checkpoint."""
    from rlexp.train import run

    out = tmp_path / "run"
    base = [*TINY, "save_every=1", f"output_dir={out}", f"cache_dir={tmp_path / 'cache'}"]
    base.append("logger=none")
    run(compose_cfg([*base, "steps=2"]))
    broken = out / "checkpoints" / "step_000002" / damaged
    broken.write_bytes(broken.read_bytes()[: 10 if damaged.endswith(".pt") else -64])
    with pytest.warns(UserWarning, match=f"{broken}.*unreadable|unreadable.*{broken}"):
        run(compose_cfg([*base, "steps=3", "resume=true"]))
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "finished" and info["resumed_from"].endswith("step_000001")
    steps = [r["train/step"] for r in read_jsonl(out / "metrics.jsonl") if "train/reward_mean" in r]
    assert steps == [0, 1, 2]  # step 1 retrained once from the intact checkpoint, no duplicates
