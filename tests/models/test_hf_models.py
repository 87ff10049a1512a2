"""model=hf: tiny Qwen2 and GPT-2 checkpoints built in tmp dirs, run through the Hydra entry point
(GRPO, PPO, LoRA, an explicit reference, chat templates), plus the sampler on their
architectures and the errors for a bad model.path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import rlexp.rollout.collect
import rlexp.trainers.rl_setup
from rlexp.config.validate import validate
from rlexp.data.prompts import encode_prompts, prompt_token_ids
from rlexp.models.load import load_policy, resolve_dtype
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.reference import AdapterDisabledReference
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.rollout.sampler import sample, select_backend
from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from rlexp.trainers.rl import RLTrainer
from tests.conftest import TINY, compose_cfg, read_jsonl

CPU = torch.device("cpu")
HF_SMOKE = [o for o in TINY if not o.startswith("model.")]  # the tiny model's sizes don't apply
STEPS = ["steps=2", "eval_every=2", "save_every=1", "logger=none"]
GRPO = [
    "algorithm=grpo",
    "algorithm.prompts_per_step=4",
    "algorithm.group_size=2",
    "algorithm.minibatch_size=8",
]
PPO = ["algorithm=ppo", "algorithm.prompts_per_step=8", "algorithm.minibatch_size=4"]
# "<bos>#" + prompt + " ": every rendered prompt ends in the generation prompt " "
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}#{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %} {% endif %}"
)


def _ids(tok) -> dict:
    return dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=0)


def _qwen2(tok, seed: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        **_ids(tok),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # HF initialises the q/k/v biases to 0: make them matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


def _gpt2(tok, seed: int) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128, **_ids(tok)
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def _save(path: Path, build, seed: int = 0, chat_template: str | None = None) -> Path:
    tok = build_char_tokenizer()
    if chat_template:
        tok.chat_template = chat_template
    build(tok, seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_models")
    return {
        "qwen2": _save(root / "qwen2", _qwen2),
        "qwen2_other": _save(root / "qwen2_other", _qwen2, seed=1),
        "gpt2": _save(root / "gpt2", _gpt2),
        "qwen2_chat": _save(root / "qwen2_chat", _qwen2, chat_template=CHAT_TEMPLATE),
    }


@pytest.fixture
def trainers(monkeypatch) -> list[RLTrainer]:
    """Every RLTrainer a run builds, to inspect its models after the run."""
    made: list[RLTrainer] = []

    class Spy(RLTrainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(rlexp.trainers.rl_setup, "RLTrainer", Spy)
    return made


def _run(out: Path, model_dir: Path, *overrides: str) -> list[dict]:
    cfg = compose_cfg(
        [*HF_SMOKE, *STEPS, "model=hf", f"model.path={model_dir}", f"output_dir={out}", *overrides]
    )
    run(cfg)
    return [r for r in read_jsonl(out / "metrics.jsonl") if "train/reward_mean" in r]


# ---- sampler -------------------------------------------------------------------------------


def _sampled_vs_teacher_forced(model, backend: str) -> float:
    tok = build_char_tokenizer()
    ids, mask = encode_prompts(tok, ["12+34+56=", "7+8=", "1-2="], CPU)
    out = sample(
        model,
        ids,
        mask,
        max_new_tokens=12,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        temperature=0.7,
        generator=torch.Generator().manual_seed(0),
        backend=backend,
    )
    forced = completion_logprobs(
        model, ids, mask, out.completion_ids, out.completion_mask.float(), temperature=0.7
    )
    return float((forced - out.logp).abs().max())


@torch.no_grad()
def test_qwen2_with_biases_samples_on_the_fast_path_with_exact_logprobs(models) -> None:
    model = load_policy(models["qwen2"], CPU, torch.float32)[0].eval()
    assert model.model.layers[0].self_attn.q_proj.bias.abs().sum() > 0
    assert select_backend(model) == "fast"
    for backend in ("fast", "generic"):
        assert _sampled_vs_teacher_forced(model, backend) < 1e-5, backend


@torch.no_grad()
def test_gpt2_and_lora_policies_sample_on_the_generic_path(models) -> None:
    gpt2 = load_policy(models["gpt2"], CPU, torch.float32)[0].eval()
    assert select_backend(gpt2) == "generic"
    assert _sampled_vs_teacher_forced(gpt2, "auto") < 1e-5
    # the fast decoder reads the raw weights, so it must not see a LoRA model (it would drop ΔW)
    qwen = load_policy(models["qwen2"], CPU, torch.float32)[0]
    lora = get_peft_model(qwen, LoraConfig(r=4, target_modules="all-linear")).eval()
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.5)
    assert select_backend(lora) == "generic"
    assert _sampled_vs_teacher_forced(lora, "auto") < 1e-5


# ---- dtype, chat template, errors -----------------------------------------------------------


def test_dtype_reaches_the_loaded_model(models) -> None:
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    model, _ = load_policy(models["qwen2"], CPU, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_chat_template_renders_prompts_as_one_user_turn(models) -> None:
    _, tok = load_policy(models["qwen2_chat"], CPU, torch.float32)  # chat_template=auto
    raw = tok("12+3=", add_special_tokens=False)["input_ids"]
    hash_id, space_id = tok.convert_tokens_to_ids(["#", " "])
    assert prompt_token_ids(tok, ["12+3="]) == [[tok.bos_token_id, hash_id, *raw, space_id]]
    _, tok = load_policy(models["qwen2_chat"], CPU, torch.float32, chat_template="false")
    assert prompt_token_ids(tok, ["12+3="]) == [[tok.bos_token_id, *raw]]
    with pytest.raises(ConfigError, match="has no chat template"):
        load_policy(models["qwen2"], CPU, torch.float32, chat_template="true")


def test_chat_template_run_samples_from_rendered_prompts(tmp_path, models, monkeypatch) -> None:
    seen: list[torch.Tensor] = []

    def spy(tokenizer, prompts, device):
        ids, mask = encode_prompts(tokenizer, prompts, device)
        seen.append(ids)
        return ids, mask

    monkeypatch.setattr(rlexp.rollout.collect, "encode_prompts", spy)
    out = tmp_path / "run"
    _run(out, models["qwen2_chat"], *GRPO, "model.chat_template=true", "steps=1")
    space_id = build_char_tokenizer().convert_tokens_to_ids(" ")
    assert seen and all(bool((ids[:, -1] == space_id).all()) for ids in seen)
    saved = load_policy(out / "checkpoints" / "step_000001" / "policy", CPU, torch.float32)[1]
    assert saved.chat_template == CHAT_TEMPLATE


def test_missing_or_invalid_model_path_is_one_config_error(tmp_path, models) -> None:
    out = tmp_path / "run"
    base = [*HF_SMOKE, *STEPS, "model=hf", f"output_dir={out}"]
    with pytest.raises(ConfigError, match="model=hf needs model.path"):
        run(compose_cfg(base))
    missing = tmp_path / "no_such_model"
    with pytest.raises(ConfigError, match=re.escape(f"model.path={missing} does not exist")):
        run(compose_cfg([*base, f"model.path={missing}"]))
    with pytest.raises(ConfigError, match=re.escape(f"model.path={tmp_path} holds no config.json")):
        run(compose_cfg([*base, f"model.path={tmp_path}"]))
    with pytest.raises(ConfigError, match=re.escape(f"model.ref_path={missing} does not exist")):
        run(compose_cfg([*base, f"model.path={models['qwen2']}", f"model.ref_path={missing}"]))
    assert not out.exists()  # stopped before anything ran


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["model.lora.r=-1"], "model.lora.r=-1 must be >= 0"),
        (["model.lora.r=4", "model.lora.dropout=1.0"], "model.lora.dropout=1.0 must lie in"),
        (["model.lora.r=4", "algorithm=dpo"], "LoRA is supported for online RL only"),
        (["model.chat_template=maybe"], "model.chat_template=maybe: use auto, true or false"),
        (["model.ref_path=@", "algorithm.kl.coef=0"], "but the run has no KL term"),
    ],
)
def test_bad_hf_settings_fail_validation(models, overrides: list[str], needle: str) -> None:
    overrides = [o.replace("@", str(models["qwen2_other"])) for o in overrides]
    cfg = compose_cfg(["output_dir=/tmp/unused", "model=hf", f"model.path={models['qwen2']}"])
    validate(cfg)  # the defaults are valid
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate(
            compose_cfg(
                ["output_dir=/tmp/unused", "model=hf", f"model.path={models['qwen2']}", *overrides]
            )
        )


# ---- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_grpo_and_ppo_on_hf_models(tmp_path, models, trainers, arch: str, algo: str) -> None:
    out = tmp_path / "run"
    rows = _run(out, models[arch], *(GRPO if algo == "grpo" else PPO))
    assert [r["train/step"] for r in rows] == [0, 1]
    keys = ["loss/policy", "train/kl_ref", "train/grad_norm"]
    keys += ["critic/value_loss"] if algo == "ppo" else ["loss/kl"]
    for key in keys:
        assert all(key in r for r in rows), key
    policy = trainers[0].policy
    assert type(policy).__name__.lower().startswith(arch)
    assert {p.dtype for p in policy.parameters()} == {torch.float32}  # auto on CPU
    ckpt = out / "checkpoints" / "step_000002"
    assert (ckpt / "policy" / "model.safetensors").exists()
    assert (ckpt / "critic" / "value_head.safetensors").exists() == (algo == "ppo")
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "finished" and info["base_checkpoint"] == str(models[arch])


def test_lora_grpo_trains_only_the_adapter_against_the_adapter_off_reference(
    tmp_path, models, trainers
) -> None:
    out = tmp_path / "run"
    lora = ["model.lora.r=4", "algorithm.lr=1e-2", "algorithm.entropy_coef=0.01"]
    rows = _run(out, models["qwen2"], *GRPO, *lora)
    trainer = trainers[0]
    policy = trainer.policy
    # the reference is the policy itself with its adapter off: no second model
    assert isinstance(trainer.ref_model, AdapterDisabledReference)
    assert trainer.ref_model.policy is policy
    # KL to the reference: 0 before any update (B = 0), > 0 once the adapter moved
    assert abs(rows[0]["train/kl_ref"]) < 1e-6
    assert rows[1]["train/kl_ref"] > 1e-6
    # only the adapter is optimised, and it moved; the base weights did not
    adapters = {name: p for name, p in policy.named_parameters() if "lora_" in name}
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert adapters and optimised == {id(p) for p in adapters.values()}
    assert any(p.abs().sum() > 0 for name, p in adapters.items() if "lora_B" in name)
    fresh = AutoModelForCausalLM.from_pretrained(models["qwen2"]).state_dict()
    base = {
        k.replace(".base_layer", ""): v
        for k, v in policy.get_base_model().state_dict().items()
        if "lora_" not in k
    }
    assert base.keys() == fresh.keys()
    assert all(torch.equal(base[k], fresh[k]) for k in fresh)
    # checkpoints hold the adapter only, and a resumed run continues from it
    policy_dir = out / "checkpoints" / "step_000002" / "policy"
    assert (policy_dir / "adapter_model.safetensors").exists()
    assert not (policy_dir / "model.safetensors").exists()
    rows = _run(out, models["qwen2"], *GRPO, *lora, "steps=3", "resume=true")
    steps = [r["train/step"] for r in read_jsonl(out / "metrics.jsonl") if "train/kl_ref" in r]
    assert steps == [0, 1, 2]
    assert isinstance(trainers[1].ref_model, AdapterDisabledReference)
    assert rows[-1]["train/kl_ref"] > 1e-6  # a fresh adapter would give 0: the saved one loaded


def test_ref_path_is_the_reference_instead(tmp_path, models, trainers) -> None:
    out = tmp_path / "run"
    rows = _run(
        out,
        models["qwen2"],
        *GRPO,
        "steps=1",
        "model.lora.r=4",
        f"model.ref_path={models['qwen2_other']}",
    )
    ref = trainers[0].ref_model
    assert not isinstance(ref, AdapterDisabledReference)
    assert not any(p.requires_grad for p in ref.parameters())
    assert rows[0]["train/kl_ref"] > 1e-3  # another random model: far from the policy
