"""Sampler and log-prob tests on tiny fp32 models built from configs (no downloads)."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from rlexp.models.logprobs import build_attention_inputs, completion_logprobs, token_logprobs
from rlexp.rollout.decoders import fast_path_supported
from rlexp.rollout.sampler import BACKEND_ENV, next_tokens, sample, select_backend

VOCAB, PAD, NEVER_EOS, MAX_NEW = 32, 0, 99, 12
COMMON = dict(vocab_size=VOCAB, pad_token_id=PAD, eos_token_id=1, bos_token_id=2)
LLAMA_LIKE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    max_position_embeddings=128,
    initializer_range=0.1,  # peakier than the default, so numerical slips would flip tokens
    **COMMON,
)


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "llama":
        return LlamaForCausalLM(LlamaConfig(**LLAMA_LIKE))
    if name == "llama_gqa_scaled_rope":
        rope = {"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0}
        cfg = LlamaConfig(num_key_value_heads=2, rope_parameters=rope, mlp_bias=True, **LLAMA_LIKE)
        return LlamaForCausalLM(cfg)
    if name == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=2, **LLAMA_LIKE))
    if name == "gpt2":
        cfg = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, **COMMON)
        return GPT2LMHeadModel(cfg)
    raise KeyError(name)


MODELS = {name: _build(name).eval() for name in ("llama", "llama_gqa_scaled_rope", "qwen2", "gpt2")}
FAST = ["llama", "llama_gqa_scaled_rope", "qwen2"]
# (model, backend): every fast-path model on both backends, plus GPT-2 on the generic one.
CASES = [(m, b) for m in FAST for b in ("fast", "generic")] + [("gpt2", "generic")]


SHORT, LONG = (7, 3, 5, 1, 6), (30, 17, 28)  # LONG: no extra fast-path padding (see rollout)


def _prompts(lengths: tuple[int, ...] = SHORT, seed: int = 0):
    """Left-padded prompts ``[B, max(lengths)]`` and their mask."""
    gen = torch.Generator().manual_seed(seed)
    P = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), P), generator=gen)
    mask = (torch.arange(P)[None, :] >= P - torch.tensor(lengths)[:, None]).long()
    return ids.where(mask.bool(), PAD), mask


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: extra intra-op threads only add wake-up latency on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def _generate_greedy(name: str, eos: int, lengths: tuple[int, ...]) -> torch.Tensor:
    """``model.generate(do_sample=False)`` completions ``[B, T]`` for ``_prompts(lengths)``."""
    ids, mask = _prompts(lengths)
    out = MODELS[name].generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=MAX_NEW,
        pad_token_id=PAD,
        eos_token_id=eos,
    )
    return out[:, ids.shape[1] :]


def _sample(model, ids, mask, backend, **kw):
    kw = {"max_new_tokens": MAX_NEW, "eos_token_id": NEVER_EOS, "pad_token_id": PAD, **kw}
    return sample(model, ids, mask, backend=backend, **kw)


def test_backend_selection(monkeypatch):
    assert all(fast_path_supported(MODELS[m]) for m in FAST)
    assert not fast_path_supported(MODELS["gpt2"])
    assert select_backend(MODELS["llama"]) == "fast"
    assert select_backend(MODELS["gpt2"]) == "generic"
    monkeypatch.setenv(BACKEND_ENV, "generic")
    assert select_backend(MODELS["llama"]) == "generic"
    with pytest.raises(ValueError, match="does not support"):
        select_backend(MODELS["gpt2"], "fast")


@pytest.mark.parametrize("name,backend", CASES)
def test_greedy_matches_generate(name, backend):
    for lengths, eos in ((SHORT, 1), (SHORT, NEVER_EOS), (LONG, NEVER_EOS)):
        ids, mask = _prompts(lengths)
        out = _sample(MODELS[name], ids, mask, backend, greedy=True, eos_token_id=eos)
        assert torch.equal(out.completion_ids, _generate_greedy(name, eos, lengths))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("name,backend", CASES)
def test_logp_matches_full_forward(name, backend, temperature):
    model, (ids, mask) = MODELS[name], _prompts()
    gen = torch.Generator().manual_seed(1)
    out = _sample(model, ids, mask, backend, temperature=temperature, generator=gen, eos_token_id=3)
    ref = completion_logprobs(
        model, ids, mask, out.completion_ids, out.completion_mask, temperature=temperature
    )
    torch.testing.assert_close(out.logp, ref, atol=1e-4, rtol=0)
    assert (out.logp[out.completion_mask == 0] == 0).all()


@pytest.mark.parametrize("name,backend", CASES)
def test_greedy_logp_is_at_temperature_one(name, backend):
    model, (ids, mask) = MODELS[name], _prompts()
    out = _sample(model, ids, mask, backend, greedy=True, temperature=0.5)
    ref = completion_logprobs(model, ids, mask, out.completion_ids, out.completion_mask)
    torch.testing.assert_close(out.logp, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name,backend", CASES)
def test_prompt_alone_equals_in_padded_batch(name, backend):
    model, (ids, mask) = MODELS[name], _prompts()
    batch = _sample(model, ids, mask, backend, greedy=True)
    for row in (1, 3):  # short prompts, i.e. heavily left-padded in the batch
        real = mask[row].bool()
        alone = _sample(
            model, ids[row : row + 1, real], mask[row : row + 1, real], backend, greedy=True
        )
        assert torch.equal(alone.completion_ids[0], batch.completion_ids[row])
        torch.testing.assert_close(alone.logp[0], batch.logp[row], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,backend", CASES)
def test_eos_masks_and_truncation(name, backend):
    model, (ids, mask) = MODELS[name], _prompts()
    free = _sample(model, ids, mask, backend, greedy=True)
    assert free.completion_ids.shape == (5, MAX_NEW) and free.truncated.all()
    assert free.completion_mask.bool().all()

    eos = int(free.completion_ids[0, 3])
    out = _sample(model, ids, mask, backend, greedy=True, eos_token_id=eos)
    hits = free.completion_ids == eos
    lengths = torch.where(hits.any(1), hits.int().argmax(1) + 1, MAX_NEW)  # incl. the EOS
    assert out.completion_ids.shape[1] == int(lengths.max())
    positions = torch.arange(out.completion_ids.shape[1])
    expected_mask = positions[None, :] < lengths[:, None]
    assert torch.equal(out.completion_mask.bool(), expected_mask)
    assert torch.equal(out.truncated, ~hits.any(1))
    assert (out.completion_ids[~expected_mask] == PAD).all()
    assert (out.logp[~expected_mask] == 0).all()
    real = free.completion_ids[:, : out.completion_ids.shape[1]]
    assert torch.equal(out.completion_ids[expected_mask], real[expected_mask])


@pytest.mark.parametrize("name,backend", CASES)
def test_stops_early_when_every_row_ended(name, backend):
    model, (ids, mask) = MODELS[name], _prompts()
    free = _sample(model, ids, mask, backend, greedy=True)
    eos_ids = free.completion_ids[:, 2].unique().tolist()  # every row emits one by step 2
    out = _sample(model, ids, mask, backend, greedy=True, eos_token_id=eos_ids)
    assert out.completion_ids.shape[1] <= 3 and not out.truncated.any()
    assert torch.isin(
        out.completion_ids.gather(1, out.completion_mask.sum(1, keepdim=True) - 1),
        torch.tensor(eos_ids),
    ).all()


@pytest.mark.parametrize("backend", ["fast", "generic"])
def test_reproducible_with_generator(backend):
    model, (ids, mask) = MODELS["llama"], _prompts()

    def run(seed: int):
        return _sample(model, ids, mask, backend, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.logp, b.logp)
    assert not torch.equal(a.completion_ids, c.completion_ids)


def test_fast_and_generic_draw_the_same_samples():
    model, (ids, mask) = MODELS["qwen2"], _prompts()
    fast, generic = (
        _sample(model, ids, mask, b, temperature=0.8, generator=torch.Generator().manual_seed(3))
        for b in ("fast", "generic")
    )
    assert torch.equal(fast.completion_ids, generic.completion_ids)
    torch.testing.assert_close(fast.logp, generic.logp, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,backend", CASES)
def test_tiny_top_p_is_greedy(name, backend):
    model, (ids, mask) = MODELS[name], _prompts()
    greedy = _sample(model, ids, mask, backend, greedy=True)
    gen = torch.Generator().manual_seed(0)
    nucleus = _sample(model, ids, mask, backend, top_p=1e-6, generator=gen)
    assert torch.equal(nucleus.completion_ids, greedy.completion_ids)
    torch.testing.assert_close(nucleus.logp, greedy.logp, atol=1e-5, rtol=0)  # full-dist logp


def test_top_p_only_draws_from_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, 4)
    tokens, logp = next_tokens(logits, top_p=0.7, generator=torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {0, 1}  # 0.5 < 0.7, so the 0.3 token completes the nucleus
    torch.testing.assert_close(logp, logits.log_softmax(-1).gather(1, tokens[:, None])[:, 0])
    assert abs((tokens == 0).float().mean().item() - 0.5 / 0.8) < 0.03


def test_samples_usable_in_autograd():
    model, (ids, mask) = MODELS["llama"], _prompts()
    out = _sample(model, ids, mask, "fast", generator=torch.Generator().manual_seed(0))
    new = completion_logprobs(model, ids, mask, out.completion_ids, out.completion_mask)
    (torch.exp(new - out.logp) * out.completion_mask).sum().backward()
    model.zero_grad()


def test_completion_logprobs_gradients_and_entropy():
    model, (ids, mask) = MODELS["qwen2"], _prompts()
    out = _sample(
        model, ids, mask, "fast", generator=torch.Generator().manual_seed(0), eos_token_id=3
    )
    logp, entropy = completion_logprobs(
        model, ids, mask, out.completion_ids, out.completion_mask, 0.7, with_entropy=True
    )
    (logp.sum() + entropy.sum()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()

    # Entropy against a direct −Σ p log p over the full distribution.
    inp, att, pos = build_attention_inputs(ids, mask, out.completion_ids, out.completion_mask)
    with torch.no_grad():
        logits = model(input_ids=inp, attention_mask=att, position_ids=pos).logits
    logits = logits[:, ids.shape[1] - 1 : -1] / 0.7
    ref = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1) * out.completion_mask
    torch.testing.assert_close(entropy.detach(), ref, atol=1e-5, rtol=0)


def test_token_logprobs_matches_log_softmax():
    logits, tokens = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    ref = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(token_logprobs(logits, tokens), ref)


def test_completion_logprobs_ignore_left_padding():
    model = MODELS["llama"]
    ids, mask = _prompts((4,))
    comp, comp_mask = torch.randint(3, VOCAB, (1, 6)), torch.tensor([[1, 1, 1, 1, 0, 0]])
    padded_ids = torch.cat([torch.full((1, 3), PAD), ids], 1)
    padded_mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), mask], 1)
    with torch.no_grad():
        a = completion_logprobs(model, ids, mask, comp, comp_mask)
        b = completion_logprobs(model, padded_ids, padded_mask, comp, comp_mask)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (a[:, 4:] == 0).all()
