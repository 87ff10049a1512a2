"""Typed configuration: one dataclass per config group, registered in Hydra's ConfigStore.

Each YAML option in ``conf/<group>/`` names its schema first in its defaults list, so a typo
(``advantage.lamb``) or a wrong type (``advantage.lam=abc``) fails at start-up. The schemas hold
defaults; the YAML files hold the values that make an option what it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from rlexp.config.algorithms import ALGORITHM_SCHEMAS
from rlexp.data.tasks.jsonl import DATASET_DEFAULTS
from rlexp.runtime.paths import DEFAULT_CACHE_DIR


@dataclass
class GAEConfig:
    name: str = "gae"
    gamma: float = 1.0
    lam: float = 0.95
    # whiten the advantages over the batch's real tokens (mean 0, std 1; theory.md §1); the
    # value targets are not whitened
    whiten: bool = False


@dataclass
class GroupRelativeConfig:
    name: str = "group_relative"
    normalize_std: bool = True
    # whose std divides r - mean_g: the group's (GRPO) or the whole batch's (ScaleRL's
    # batch-level normalisation); docs/theory.md §2
    std_scope: str = "group"
    eps: float = 1e-6


@dataclass
class LeaveOneOutConfig:
    name: str = "leave_one_out"


@dataclass
class BatchNormalizedConfig:
    name: str = "batch_normalized"
    gamma: float = 1.0


@dataclass
class OutcomeConfig:
    name: str = "outcome"


@dataclass
class TinyModelConfig:
    """The embedded Llama-style model, built from a config and pre-trained by SFT on the task."""

    name: str = "tiny"
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int | None = None
    max_position_embeddings: int = 256
    init_seed: int = 0
    sft_first: bool = True  # start RL from the cached SFT checkpoint (trained on demand)
    gradient_checkpointing: bool = False  # recompute activations in the backward (less memory)
    fp32_lm_head: bool = False  # logits in float32 (ScaleRL); the tiny model is float32 anyway


@dataclass
class LoRAConfig:
    """LoRA adapters on the policy (peft); the base weights stay frozen, the KL reference is the
    same model with its adapter switched off. ``r: 0`` turns LoRA off (full fine-tuning)."""

    r: int = 0  # adapter rank; 0 = no LoRA
    alpha: float | None = None  # scale alpha / r of the update; null = 2·r
    dropout: float = 0.0  # on the adapter's input; > 0 makes the first PPO ratio differ from 1
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])  # or module names


@dataclass
class HFModelConfig:
    """Any local causal LM saved with ``save_pretrained`` (a hub checkpoint on disk, or ours)."""

    name: str = "hf"
    path: str = MISSING
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    sft_first: bool = False
    # Prompts as one user turn of the tokenizer's chat template (add_generation_prompt=True):
    # auto = when the tokenizer has one, true = required, false = raw prompt text.
    chat_template: str = "auto"
    ref_path: str | None = None  # KL reference from this checkpoint; null = the start model
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    gradient_checkpointing: bool = False  # recompute activations in the backward (less memory)
    # the logits h·Wᵀ in float32 though the model is bf16 (ScaleRL's FP32 LM head, native
    # sampler and trainer alike; rlexp/models/precision.py)
    fp32_lm_head: bool = False


@dataclass
class RewardConfig:
    """A weighted sum of rewards: registered ones (rlexp.rollout.rewards.REWARDS) or the user's own,
    by import path."""

    name: str = MISSING
    # {registered name or package.module:function: weight}
    components: dict[str, float] = field(default_factory=dict)
    # {component: {keyword: value}}: passed to that reward function as keyword arguments
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArithmeticTaskConfig:
    name: str = "arithmetic"
    n_terms: int = 3
    digits: int = 2
    ops: str = "+"
    n_train: int = 20000
    n_test: int = 500
    seed: int = 1234
    carry_slip: float = 0.0  # P(a training solution forgets a carry); test solutions are clean
    never_carry_from: int = 0  # blind spot: column sums >= this never carry in training; 0 off


@dataclass
class JsonlTaskConfig:
    """Math problems from data files or a data set (rlexp.data.tasks.jsonl). Each data set's
    field names, prompt and answer format come from ``DATASET_DEFAULTS`` there
    (``schema/task/gsm8k``, ``schema/task/math``)."""

    name: str = MISSING
    # two files: .jsonl (one JSON object per line), .parquet, .arrow, .json or .csv
    train_file: str | None = None
    test_file: str | None = None
    # or a data set, as TRL's script arguments name it: a save_to_disk folder, a folder of data
    # files, or a Hub id in the local HF cache (never downloaded at run time)
    dataset_name: str | None = None
    dataset_config: str | None = None  # e.g. main for openai/gsm8k
    dataset_train_split: str = "train"
    dataset_test_split: str = "test"
    question_key: str = MISSING
    answer_key: str = MISSING  # the worked solution: the SFT target, holding the final answer
    prompt_template: str = MISSING  # {question} is replaced
    answer_format: str = MISSING  # hash_number (#### 72) | boxed (last \boxed{...})
    verifier: str = MISSING  # exact | math_verify (equivalent values: 0.5 = \frac{1}{2})
    n_train: int | None = None  # the first n problems of train_file; null: all
    n_test: int | None = None


@dataclass
class LoggerConfig:
    name: str = "wandb"  # wandb | none (metrics.jsonl is always written)
    project: str = "rlexp"
    mode: str = "offline"  # offline | online | disabled; WANDB_MODE in the environment wins
    group: str | None = None  # default: the multirun sweep directory
    run_name: str | None = None  # default: the Hydra overrides
    tags: list[str] = field(default_factory=list)
    # the run's final model folder as a W&B artifact of type "model" (model-<run id>); off:
    # a 7B policy is 15 GB
    log_model: bool = False


@dataclass
class VLLMConfig:
    """The colocated vLLM engine of ``rollout.engine=vllm`` (rlexp.rollout.vllm_engine)."""

    gpu_memory_utilization: float = 0.3  # its share of GPU memory (on a CPU: of RAM), KV included
    # The KV cache's size in GiB, whatever else the process holds; null: what the share leaves
    # (on a CPU vLLM counts the whole process's RSS against the share)
    kv_cache_gib: float | None = None
    max_model_len: int | None = None  # prompt + completion positions; null: the model's limit
    # true: no CUDA graphs / compilation (starts faster, decodes slower); null: true on a CPU,
    # where compiling costs ~15 s at start for little gain, false on a GPU
    enforce_eager: bool | None = None
    enable_prefix_caching: bool = True  # the group_size samples of a prompt share its KV blocks
    # Memory freed during the update: 0 none, 1 KV cache (weights to host), 2 KV cache and
    # weights; null: 1 on a GPU, 0 on a CPU (where vLLM cannot sleep)
    sleep_level: int | None = None


@dataclass
class RolloutConfig:
    engine: str = "native"  # native (rlexp's samplers) | vllm (pip install -e ".[vllm]")
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 40
    # sample step t with the policy of step max(0, t - lag): a controlled off-policy lag, exactly
    # the data of an asynchronous trainer k updates behind (docs/theory.md §11); 0 = on-policy
    lag: int = 0
    # sync | async: with rollout.lag=1 and the vLLM engine, sample step t + 1 on a worker thread
    # while step t updates (one-step-off async RL: the same data, overlapped; theory.md §11)
    mode: str = "sync"
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass
class EvalConfig:
    """Held-out evaluation: its own sampling settings, scored by the task's verifier."""

    n_problems: int = 200
    n_samples: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = True  # also report greedy accuracy
    batch_size: int = 512
    max_new_tokens: int | None = None  # null: rollout.max_new_tokens
    # the sampled completions of this many problems per evaluation go to eval_samples.jsonl
    # and W&B's table eval/samples (0: none)
    log_samples: int = 4


@dataclass
class SFTConfig:
    """The supervised stage that produces the RL base ("Instruct") model. 1,200 steps with AdamW
    β2 = 0.95 and a cosine decay to 0 end on the plateau set by the task's carry slips: the
    held-out loss within 10% of its imitation floor, flat over the last 200 steps, for the two
    sft.seed values measured (docs/theory.md §10). With β2 = 0.999 the loss was still falling at
    step 800, and a floor of 10% of the peak lr left it jittering by ±10% around the floor."""

    steps: int = 1200
    batch_size: int = 128
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW (β1, β2)
    eval_every: int = 100
    seed: int = 0  # the base model's own seed: RL seeds share one base


@dataclass
class StudyConfig:
    """``rlexp-study``: SFT → RL (per seed) → evaluation of both with n samples → analysis."""

    seeds: list[int] = field(default_factory=lambda: [0])
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    n_samples: int = 64
    n_problems: int = 500
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 1024
    # {tier name: a patch of the run config}, e.g. {hard: {task: {never_carry_from: 17}}}: the
    # study runs once per tier into <output_dir>/<tier>/ (empty: one tier, the config itself)
    tiers: dict[str, Any] = field(default_factory=dict)


@dataclass
class FSDPConfig:
    offload: bool = False  # parameters and optimizer state in host memory between uses


@dataclass
class DistributedConfig:
    """Under torchrun, how the ranks hold the models (rlexp.runtime.sharding)."""

    strategy: str = "ddp"  # ddp: a full copy per rank, gradients all-reduced | fsdp: FSDP2 shards
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)


@dataclass
class DataConfig:
    """The stream of training prompts (online RL)."""

    # drop a prompt for good once a group of its samples passes at this rate or above (ScaleRL's
    # no-positive-resampling: 0.9); the dropped set is checkpointed. null = keep every prompt
    drop_solved_above: float | None = None


@dataclass
class RootConfig:
    algorithm: Any = MISSING  # one trainer kind's schema (rlexp.config.algorithms)
    advantage: Any = MISSING
    model: Any = MISSING
    reward: RewardConfig = MISSING
    task: Any = MISSING
    logger: LoggerConfig = MISSING
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    steps: int = 100  # RL updates (one rollout batch each); offline methods: optimizer steps
    eval_every: int = 25  # held-out evaluation period, in steps (also at step 0 and at the end)
    save_every: int = 50  # checkpoint period, in steps (also at the end)
    # the run directory; null only where Hydra makes none (--cfg job --resolve)
    output_dir: str | None = "${hydra:runtime.output_dir}"
    # SFT bases, keyed by config hash: $RLEXP_CACHE_DIR, else the user cache (~/.cache/rlexp)
    cache_dir: str = "${oc.env:RLEXP_CACHE_DIR,'" + DEFAULT_CACHE_DIR + "'}"
    resume: bool = False  # continue the newest checkpoint in output_dir
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch threads; 0 = auto: cores // n_jobs under joblib, else torch's


@dataclass
class EvalJobConfig:
    """``rlexp-eval``: n samples per held-out problem from one checkpoint, scored by the verifier."""

    task: Any = MISSING
    # A training run's folder: the task and the generation budget are the run's (its config.yaml),
    # and checkpoint defaults to its final policy (final/, else its newest checkpoint).
    run_dir: str | None = None
    checkpoint: str | None = None  # a save_pretrained folder; null: run_dir's final policy
    label: str = "model"  # the model's name in tables and figures (e.g. SFT, RL)
    seed: int = 0
    split: str = "test"  # test | train
    n_problems: int | None = 500  # null: the whole split
    n_samples: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False  # one greedy completion per problem instead of n samples
    max_new_tokens: int | None = (
        None  # null: run_dir's rollout.max_new_tokens, else RolloutConfig's
    )
    # auto | true | false, as model.chat_template; a run's own by default
    chat_template: str = "auto"
    # logger=wandb: a W&B run of job type eval with the summary and, as the table eval/samples,
    # the samples of the first log_samples problems (default none: files only)
    log_samples: int = 4
    logger: LoggerConfig = field(default_factory=lambda: LoggerConfig(name="none"))
    batch_size: int = 1024  # completions per sampling call
    chunk_problems: int = 50  # problems per written part; a restart resumes at the next part
    # the run directory; null only where Hydra makes none (--cfg job --resolve)
    output_dir: str | None = "${hydra:runtime.output_dir}"
    device: str = "auto"
    dtype: str = "auto"


def register_schemas() -> None:
    """Register every schema. A YAML option of group ``<g>`` builds on its schema with the
    defaults entry ``/schema/<g>/<name>@_here_``: the schemas live in the group ``schema/<g>``,
    outside the selectable groups, so neither ``--help`` nor tab completion offers them."""
    cs = ConfigStore.instance()
    cs.store(name="root_schema", node=RootConfig)
    cs.store(name="eval_job_schema", node=EvalJobConfig)
    schemas: dict[str, dict[str, Any]] = {
        "algorithm": dict(ALGORITHM_SCHEMAS),  # rl, sft, dpo, rft
        "advantage": {
            "gae": GAEConfig,
            "group_relative": GroupRelativeConfig,
            "leave_one_out": LeaveOneOutConfig,
            "batch_normalized": BatchNormalizedConfig,
            "outcome": OutcomeConfig,
        },
        "model": {"tiny": TinyModelConfig, "hf": HFModelConfig},
        "reward": {"reward": RewardConfig},
        "task": {"arithmetic": ArithmeticTaskConfig}
        | {  # gsm8k, math
            name: JsonlTaskConfig(name=name, **fields) for name, fields in DATASET_DEFAULTS.items()
        },
        "logger": {"logger": LoggerConfig},
    }
    for group, nodes in schemas.items():
        for name, node in nodes.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
