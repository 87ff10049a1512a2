"""The model before any training: the embedded tiny Llama built from ``model=tiny``, or a
checkpoint loaded from ``model.path``."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from rlexp.data.tasks.base import CHAR_ALPHABETS, DEFAULT_ALPHABET
from rlexp.models.load import load_policy
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer


def init_model(cfg: DictConfig, device: torch.device, dtype: torch.dtype):
    """The model before any training: built from ``model=tiny``, or loaded from ``model.path``."""
    if cfg.model.name == "tiny":
        tokenizer = build_char_tokenizer(CHAR_ALPHABETS.get(cfg.task.name, DEFAULT_ALPHABET))
        m = cfg.model
        model = build_tiny_llama(
            tokenizer,
            hidden_size=m.hidden_size,
            num_layers=m.num_layers,
            num_heads=m.num_heads,
            intermediate_size=m.intermediate_size,
            max_position_embeddings=m.max_position_embeddings,
            seed=m.init_seed,
        )
        return model.to(device=device, dtype=dtype), tokenizer
    return load_policy(cfg.model.path, device, dtype, cfg.model.chat_template)


def enable_gradient_checkpointing(model) -> None:
    """``model.gradient_checkpointing``: each decoder layer's activations are recomputed in the
    backward instead of kept (HF's non-reentrant checkpointing; exact, slower, less memory)."""
    backbone = getattr(model, "backbone", model)  # the critic's HF model
    backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
