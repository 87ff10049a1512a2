"""Invariances of the update: micro-batching, kept old log-probs, grouping by id, evaluation."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from rlexp.algos.losses import AGG_MODES, POLICY_LOSSES
from rlexp.config.algorithms import CriticConfig, KLConfig
from rlexp.config.algorithms import RLAlgorithmConfig as AlgorithmConfig
from rlexp.data.prompts import left_pad
from rlexp.data.tasks import build_task
from rlexp.evaluation.heldout import evaluate
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.models.value import ValueModel
from rlexp.rollout.batch import RolloutBatch, last_token_rewards
from rlexp.rollout.collect import compute_advantages
from rlexp.trainers.update import critic_update, policy_update

B, T = 8, 6


def _model():
    tok = build_char_tokenizer()
    return build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0), tok


def _batch(model, seed: int = 0) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    prompts = [
        torch.randint(4, 20, (int(n),), generator=g).tolist()
        for n in torch.randint(2, 6, (B,), generator=g)
    ]
    prompt_ids, prompt_mask = left_pad(prompts, 0, torch.device("cpu"))
    completion_ids = torch.randint(4, 20, (B, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    completion_ids = torch.where(mask > 0, completion_ids, 0)
    with torch.no_grad():
        old = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, mask)
    scores = torch.randint(0, 2, (B,), generator=g).float()
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=mask,
        old_logp=old,
        group_ids=torch.arange(B) // 4,
        scores=scores,
        correct=scores > 0,
        truncated=torch.zeros(B, dtype=torch.bool),
        token_rewards=last_token_rewards(scores, mask),
        ref_logp=old - 0.1 * torch.rand(B, T, generator=g),
        advantages=torch.randn(B, T, generator=g) * mask,
    )


def _algo(**kw):
    base = dict(
        name="t",
        group_size=4,
        prompts_per_step=2,
        max_grad_norm=1e9,
        lr=1.0,
        kl=KLConfig(),
        critic=CriticConfig(),
    )
    return OmegaConf.structured(AlgorithmConfig(**(base | kw)))


@pytest.mark.parametrize("agg", AGG_MODES)
def test_gradient_is_the_same_however_the_batch_is_micro_batched(agg: str) -> None:
    model, _ = _model()
    batch = _batch(model)
    results = []
    for micro in (B, 4, 1):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        algo = _algo(
            micro_batch_size=micro,
            loss_agg=agg,
            kl=KLConfig(coef=0.1, estimator="k3", placement="loss"),
            entropy_coef=0.01,
        )
        policy_update(m, opt, batch, algo, 1.0, torch.Generator().manual_seed(0))
        results.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    if agg == "prompt-mean-token-mean":  # against the loss written out, prompt by prompt
        m = copy.deepcopy(model)
        logp, ent = completion_logprobs(
            m,
            batch.prompt_ids,
            batch.prompt_mask,
            batch.completion_ids,
            batch.completion_mask,
            with_entropy=True,
        )
        ratio = (logp - batch.old_logp).exp()
        per_token = (
            -ratio * batch.advantages
            + 0.1 * ((batch.ref_logp - logp).exp() - (batch.ref_logp - logp) - 1)
            - 0.01 * ent
        )
        per_prompt = [
            (per_token * batch.completion_mask)[batch.group_ids == g].sum()
            / batch.completion_mask[batch.group_ids == g].sum()
            for g in batch.group_ids.unique()
        ]
        torch.stack(per_prompt).mean().backward()
        torch.optim.SGD(m.parameters(), lr=1.0).step()
        reference = torch.cat([p.detach().flatten() for p in m.parameters()])
        torch.testing.assert_close(results[0], reference, rtol=1e-5, atol=1e-6)
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.allclose(results[0], start)  # the update moved the parameters
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-5, atol=1e-6)


def test_old_logprobs_are_kept_so_the_ratio_moves_after_the_first_minibatch(monkeypatch) -> None:
    model, _ = _model()
    batch = _batch(model)
    old_before = batch.old_logp.clone()
    seen: list[float] = []
    inner = POLICY_LOSSES.get("ppo_clip")

    def recording(logp, old_logp, advantages, mask, **kw):
        seen.append(float(((logp.detach() - old_logp).abs() * mask).max()))
        return inner(logp, old_logp, advantages, mask, **kw)

    monkeypatch.setitem(POLICY_LOSSES._items, "ppo_clip", recording)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    policy_update(
        model,
        opt,
        batch,
        _algo(epochs=2, minibatch_size=4, micro_batch_size=4),
        1.0,
        torch.Generator().manual_seed(0),
    )
    assert len(seen) == 4  # 2 epochs × 2 minibatches
    assert seen[0] < 1e-5  # first minibatch: π_θ = π_old, ratio 1
    assert min(seen[1:]) > 1e-4  # afterwards the policy has moved away from the kept π_old
    assert torch.equal(batch.old_logp, old_before)


def test_advantages_are_formed_by_group_id_and_survive_shuffling() -> None:
    model, _ = _model()
    batch = _batch(model)
    batch.scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.35, 0.35, 0.35, 0.35])
    batch.token_rewards = last_token_rewards(batch.scores, batch.completion_mask)
    adv_cfg = {"name": "group_relative", "normalize_std": True, "eps": 1e-6}
    compute_advantages(batch, adv_cfg, None)
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(3))
    shuffled = batch.select(perm)
    compute_advantages(shuffled, adv_cfg, None)
    torch.testing.assert_close(shuffled.advantages, batch.advantages[perm])
    assert torch.all(
        batch.advantages[4:] == 0
    )  # equal rewards (0.35 × 4): no signal, not noise / tiny std
    assert batch.advantages[0, 0] > 0 > batch.advantages[1, 0]


def test_evaluation_uses_the_verifier_and_its_own_sampling_settings() -> None:
    model, tok = _model()
    task = build_task("arithmetic", n_train=10, n_test=6)
    settings = dict(n_samples=3, temperature=0.7, top_p=1.0, max_new_tokens=8, greedy=True, seed=0)
    out = evaluate(model, tok, task, task.test, **settings)
    keys = {"eval/greedy_accuracy", "eval/sampled_accuracy", "eval/pass@3", "eval/format_rate"}
    assert set(out) >= keys
    # an untrained model solves nothing, whatever a reward says
    assert out["eval/sampled_accuracy"] == 0.0
    # seeded: evaluations at different steps are comparable
    assert evaluate(model, tok, task, task.test, **settings) == out


@pytest.mark.parametrize("which", ["policy", "critic"])
def test_a_non_finite_gradient_norm_stops_before_the_optimizer_step(
    which: str, monkeypatch
) -> None:
    """A NaN gradient (here: injected through the gradient-norm clip) is named and no weight moves."""
    model, _ = _model()
    batch = _batch(model)
    batch.values = torch.zeros(B, T)
    batch.returns = batch.advantages.clone()
    module = ValueModel.from_policy(model) if which == "critic" else model
    before = copy.deepcopy(module.state_dict())
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    monkeypatch.setattr(
        torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("nan"))
    )
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(FloatingPointError, match=f"non-finite gradient norm of the {which}"):
        if which == "critic":
            critic_update(module, optimizer, batch, _algo(), gen)
        else:
            policy_update(module, optimizer, batch, _algo(), 1.0, gen)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("loss", ["ppo_clip", "gspo"])
def test_update_diagnostics_do_not_depend_on_the_micro_batch_size(loss: str) -> None:
    """clip fractions, ratio mean, approx KL: weighted by tokens (GSPO's clip fractions by
    sequences) over micro-batches; ratio_max: the maximum of maxima. They used to be plain means
    of micro-batch values (ratio_max 1.876 / 1.697 / 1.343 at micro-batches of 8 / 4 / 1)."""
    model, _ = _model()
    batch = _batch(model)
    g = torch.Generator().manual_seed(1)
    batch.old_logp = batch.old_logp + 0.3 * torch.randn(B, T, generator=g) * batch.completion_mask
    clip = {"clip_low": 0.2, "clip_high": 0.2} if loss == "ppo_clip" else {}
    results = []
    for micro in (B, 4, 1):
        m = copy.deepcopy(model)
        algo = _algo(micro_batch_size=micro, policy_loss=loss, lr=1e-3, **clip)
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)
        results.append(policy_update(m, opt, batch, algo, 1.0, torch.Generator().manual_seed(0)))
    keys = ["train/clip_frac", "train/ratio_mean", "train/approx_kl", "train/ratio_max"]
    assert 0 < results[0]["train/clip_frac"] < 1 and results[0]["train/ratio_max"] > 1.1
    for other in results[1:]:
        for key in keys:
            assert other[key] == pytest.approx(results[0][key], rel=1e-5), key
