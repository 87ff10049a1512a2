"""``rollout.engine=vllm`` against the trainer's own forward (fp32, CPU, the real vLLM engine).

The ``vllm`` tests skip without the extra (``make install-vllm``). One engine serves the module:
it knows the architecture only, so every test first pushes the weights it checks.
"""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from rlexp.config.schema import LoRAConfig, RolloutConfig, VLLMConfig
from rlexp.data.tasks.base import DEFAULT_ALPHABET
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.lora import apply_lora, merged_weights
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.rollout.vllm_engine import padded_samples
from rlexp.runtime.errors import ConfigError

# The fp32 engine reproduces the trainer's log-probs to float32 rounding: measured max |Δ|
# 2.4e-7 .. 9.5e-7 per token on this model; the bound leaves an order of magnitude.
LOGP_TOL = 1e-5
TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer(DEFAULT_ALPHABET)


def _tiny(tokenizer, seed: int = 0):
    # head size 32: vLLM's CPU attention has no kernel for the 16 of the tests' TINY model
    return build_tiny_llama(
        tokenizer, hidden_size=64, num_layers=2, num_heads=2, max_position_embeddings=128, seed=seed
    )


@pytest.fixture(scope="module")
def engine(tokenizer):
    from rlexp.rollout.vllm_engine import VLLMEngine

    cfg = OmegaConf.structured(
        RolloutConfig(engine="vllm", vllm=VLLMConfig(gpu_memory_utilization=0.2, kv_cache_gib=0.1))
    )
    eng = VLLMEngine(_tiny(tokenizer), cfg, seed=0)
    yield eng
    eng.close()


def _prompts(tokenizer, texts):
    ids = [tokenizer.encode(t) for t in texts]
    width = max(map(len, ids))
    prompt_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    return prompt_ids, mask


def _generate(engine, tokenizer, prompt_ids, mask, seed: int):
    return engine.generate(
        prompt_ids,
        mask,
        torch.Generator().manual_seed(seed),
        max_new_tokens=24,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        temperature=TEMPERATURE,
        top_p=1.0,
    )


def _engine_sequence_logp(engine, ids: list[int]) -> torch.Tensor:
    """The engine's log-probs (temperature 1) of ``ids[1:]`` given the preceding tokens."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
    out = engine.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
    steps = out[0].prompt_logprobs[1:]  # position 0 has no log-prob
    return torch.tensor([step[t].logprob for step, t in zip(steps, ids[1:], strict=True)])


def _trainer_sequence_logp(model, ids: list[int]) -> torch.Tensor:
    seq = torch.tensor([ids])
    with torch.no_grad():
        return completion_logprobs(
            model,
            seq[:, :1],
            torch.ones(1, 1, dtype=torch.long),
            seq[:, 1:],
            torch.ones_like(seq[:, 1:]),
        )[0]


def _one_step(model, tokenizer, ids: list[int]) -> None:
    """One AdamW step raising the log-likelihood of ``ids`` (a large lr: the change must show)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    seq = torch.tensor([ids])
    loss = -completion_logprobs(
        model,
        seq[:, :1],
        torch.ones(1, 1, dtype=torch.long),
        seq[:, 1:],
        torch.ones_like(seq[:, 1:]),
    ).mean()
    loss.backward()
    opt.step()


# --------------------------------------------------------------------------- no engine needed


def test_padded_samples_masks_after_eos_and_flags_truncation() -> None:
    eos, pad = [2], 0
    s = padded_samples(
        [[5, 6, 2], [7, 8, 9, 4]],
        [[-0.1, -0.2, -0.3], [-1, -2, -3, -4]],
        eos,
        pad,
        torch.device("cpu"),
    )
    assert s.completion_ids.tolist() == [[5, 6, 2, 0], [7, 8, 9, 4]]
    assert s.completion_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    expected = torch.tensor([[-0.1, -0.2, -0.3, 0.0], [-1, -2, -3, -4]])
    assert torch.allclose(s.logp, expected)
    assert s.truncated.tolist() == [False, True]


def test_merged_lora_weights_serve_the_adapted_policy_on_the_plain_architecture(tokenizer) -> None:
    """What the engine receives for a LoRA policy: W + (α/r)·BA under the base model's names."""
    policy = apply_lora(_tiny(tokenizer), LoRAConfig(r=4, target_modules=["all-linear"]))
    with torch.no_grad():  # B = 0 at the start: give the adapters a value
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    plain = _tiny(tokenizer, seed=1)  # other weights, overwritten by the merged ones
    missing = plain.load_state_dict(dict(merged_weights(policy)), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    ids = torch.tensor([tokenizer.encode("12+34=46")])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, policy(ids).logits, atol=1e-5)
        assert not torch.allclose(_tiny(tokenizer)(ids).logits, policy(ids).logits, atol=1e-3)


# --------------------------------------------------------------------------- the real engine


@pytest.mark.vllm
def test_engine_logprobs_of_its_samples_equal_the_trainers_recomputation(engine, tokenizer) -> None:
    model = _tiny(tokenizer)
    engine.load_weights(model)
    prompt_ids, mask = _prompts(tokenizer, ["12+34+56=", "7+8=", "99+1+23="] * 3)
    out = _generate(engine, tokenizer, prompt_ids, mask, seed=0)
    recomputed = completion_logprobs(
        model, prompt_ids, mask, out.completion_ids, out.completion_mask, temperature=TEMPERATURE
    ).detach()
    real = out.completion_mask.bool()
    gap = (recomputed - out.logp)[real].abs().max().item()
    print(f"engine vs trainer log-probs, fp32: max |Δ| = {gap:.2e} over {int(real.sum())} tokens")
    assert gap < LOGP_TOL
    # well-formed completions: the mask is a prefix, a finished one ends with its EOS
    lengths = out.completion_mask.sum(1)
    for row, n, cut in zip(out.completion_ids, lengths, out.truncated, strict=True):
        assert (row[n:] == tokenizer.pad_token_id).all()
        assert bool(cut) == (row[n - 1] != tokenizer.eos_token_id)
    # one seed per sequence from the trainer's generator: the same draws give the same samples
    again = _generate(engine, tokenizer, prompt_ids, mask, seed=0)
    assert torch.equal(again.completion_ids, out.completion_ids)
    other = _generate(engine, tokenizer, prompt_ids, mask, seed=1)
    assert not torch.equal(other.completion_ids, out.completion_ids)


@pytest.mark.vllm
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_weights_sync_after_an_optimizer_step(engine, tokenizer, lora: bool) -> None:
    """After one step and ``load_weights``, the engine scores a fixed sequence as the updated
    model does, and no longer as the old one."""
    model = _tiny(tokenizer)
    if lora:
        model = apply_lora(model, LoRAConfig(r=4, target_modules=["all-linear"]))
    engine.load_weights(model)
    ids = tokenizer.encode("31+45+10=86") + [tokenizer.eos_token_id]
    old = _trainer_sequence_logp(model, ids)
    assert (_engine_sequence_logp(engine, ids) - old).abs().max() < LOGP_TOL
    before = copy.deepcopy(model.state_dict())
    _one_step(model, tokenizer, ids)
    new = _trainer_sequence_logp(model, ids)
    assert (new - old).abs().max() > 1e-2  # the step changed the model
    if lora:  # only the adapters moved
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before if "lora_" not in k)
    engine.load_weights(model)
    synced = _engine_sequence_logp(engine, ids)
    print(f"lora={lora}: engine vs updated model max |Δ| = {(synced - new).abs().max():.2e}")
    assert (synced - new).abs().max() < LOGP_TOL
    assert (synced - old).abs().max() > 1e-2


@pytest.mark.vllm
def test_an_engine_that_cannot_have_its_memory_names_the_key(engine, tokenizer) -> None:
    """On a CPU the share is of the host's RAM: 0.99 of it is never free."""
    from rlexp.rollout.vllm_engine import VLLMEngine

    cfg = OmegaConf.structured(
        RolloutConfig(engine="vllm", vllm=VLLMConfig(gpu_memory_utilization=0.99))
    )
    with pytest.raises(ConfigError, match="rollout.vllm.gpu_memory_utilization"):
        VLLMEngine(_tiny(tokenizer), cfg, seed=0)
    # the module's engine still serves
    prompt_ids, mask = _prompts(tokenizer, ["1+2="])
    assert _generate(engine, tokenizer, prompt_ids, mask, seed=0).completion_ids.numel() > 0
