"""``model.fp32_lm_head`` (issue 17 item 3): the logits of a bf16 model in float32, nothing else
changed (parameters, state dict, copies); a no-op for a float32 model."""

from __future__ import annotations

import copy

import pytest
import torch

from rlexp.config.validate import validate
from rlexp.models.precision import FP32Linear, use_fp32_lm_head
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.runtime.errors import ConfigError
from tests.conftest import compose_cfg


def _model(dtype: torch.dtype):
    tok = build_char_tokenizer()
    return build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0).to(dtype)


def _hidden_and_logits(model, ids):
    out = model(ids, output_hidden_states=True)
    return out.hidden_states[-1], out.logits


def test_a_bf16_model_gets_the_float32_product_of_its_bf16_hidden_state_and_head() -> None:
    model, ids = _model(torch.bfloat16), torch.tensor([[5, 9, 13, 21, 7]])
    keys = list(model.state_dict())
    with torch.no_grad():
        hidden, bf16_logits = _hidden_and_logits(model, ids)
        use_fp32_lm_head(model)
        hidden_after, logits = _hidden_and_logits(model, ids)
    head = model.get_output_embeddings()
    assert isinstance(head, FP32Linear) and head.weight.dtype == torch.bfloat16
    assert list(model.state_dict()) == keys  # checkpoints and optimizers see no difference
    torch.testing.assert_close(hidden_after, hidden)  # the body is untouched
    reference = (hidden.double() @ head.weight.double().T).detach()  # bf16 inputs, exact products
    fp32_error = float((logits.double() - reference).abs().max())
    bf16_error = float((bf16_logits.double() - reference).abs().max())
    assert logits.dtype == torch.float32 and fp32_error < 1e-6
    assert bf16_error > 100 * max(fp32_error, 1e-9)  # what the rounding of bf16 logits costs
    copied = copy.deepcopy(model)  # the lag's and the FSDP sampler's copies keep it
    assert isinstance(copied.get_output_embeddings(), FP32Linear)
    use_fp32_lm_head(model)  # twice is once


def test_a_float32_model_is_unchanged() -> None:
    model, ids = _model(torch.float32), torch.tensor([[5, 9, 13]])
    with torch.no_grad():
        before = model(ids).logits
        use_fp32_lm_head(model)
        after = model(ids).logits
    assert torch.equal(before, after)


def test_fp32_lm_head_with_vllm_is_a_config_error() -> None:
    pytest.importorskip("vllm")
    with pytest.raises(ConfigError, match="model.fp32_lm_head"):
        validate(compose_cfg(["rollout.engine=vllm", "model.fp32_lm_head=true"]))


def test_the_sft_base_is_shared_with_and_without_the_fp32_head() -> None:
    """An RL-only setting: the leave-one-out member without it must start from the same base
    (and bases cached before the key existed stay valid: the default's key is unchanged)."""
    from rlexp.trainers.sft_base import sft_key

    default = sft_key(compose_cfg([]))
    assert sft_key(compose_cfg(["model.fp32_lm_head=true"])) == default
    assert default == "tiny-arithmetic-2f34533b9aed"  # the default base's key before the key
