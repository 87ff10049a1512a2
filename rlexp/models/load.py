"""Loading a policy (any local causal LM, or a LoRA adapter on one) and choosing device and dtype."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from rlexp.runtime.errors import ConfigError
from rlexp.runtime.hub import local_path

ADAPTER_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes instead of config.json
GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPU, fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_policy(
    path: str | Path, device: torch.device, dtype: torch.dtype, chat_template: str = "auto"
):
    """Model and tokenizer from a ``save_pretrained`` folder, or a Hub id's snapshot in the local
    HF cache, offline; the tokenizer gets a pad token (EOS) when it has none. A LoRA checkpoint
    (an adapter folder) loads onto its base model, the adapter trainable. ``chat_template``: see
    :func:`set_chat_template`."""
    path = local_path(str(path), "model.path").resolve()  # absolute: an adapter names its base
    if (path / ADAPTER_CONFIG).exists() and not (path / "config.json").exists():
        model = _load_adapter(path, dtype)
    elif (path / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    else:
        raise FileNotFoundError(f"model.path={path} holds no config.json (not a saved model)")
    tokenizer = load_tokenizer(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_chat_template(tokenizer, chat_template, path)
    return model.to(device), tokenizer


def load_tokenizer(path: Path):
    """The folder's tokenizer. One saved as a plain ``tokenizer.json`` (declared class
    ``TokenizersBackend`` / ``PreTrainedTokenizerFast``, e.g. our character tokenizer) loads
    verbatim: AutoTokenizer would swap in the architecture's own class for some model types
    (qwen2, phi3, ...), rebuilt from the vocabulary with that class's pre-tokenizer."""
    config = path / "tokenizer_config.json"
    declared = json.loads(config.read_text()).get("tokenizer_class") if config.exists() else None
    if declared in GENERIC_TOKENIZERS and (path / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def _load_adapter(path: Path, dtype: torch.dtype) -> PeftModel:
    base_path = PeftConfig.from_pretrained(path).base_model_name_or_path
    if not base_path or not (Path(base_path) / "config.json").exists():
        raise FileNotFoundError(f"LoRA checkpoint {path}: its base model {base_path} is missing")
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, local_files_only=True)
    return PeftModel.from_pretrained(base, path, is_trainable=True)


def set_chat_template(tokenizer, setting: str | bool, path: Path | str = "") -> None:
    """Apply ``model.chat_template``: ``auto`` keeps the tokenizer's template (if any), ``false``
    drops it, ``true`` requires it. Prompts are rendered with the template exactly when the
    tokenizer has one (rlexp.data.prompts.prompt_token_ids); a checkpoint's tokenizer keeps the choice."""
    setting = str(setting).lower()
    if setting == "false":
        tokenizer.chat_template = None
    elif setting == "true" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"model.chat_template=true, but the tokenizer in {path} has no chat template "
            "(use model.chat_template=auto or false)"
        )
