"""The ``algorithm:`` schemas of the trainer kinds (rl, sft, dpo, rft), torch-free so that Hydra's
``--help``, ``--cfg`` and tab completion compose a config without importing the trainers
(``rlexp.trainers`` holds each kind's checks and loop; ``ALGORITHM_SCHEMAS`` maps a kind to its
schema, and a test checks both list the same kinds)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class AlgorithmConfig:
    """What every trainer kind's ``algorithm:`` section has; each kind extends it."""

    name: str = MISSING
    trainer: str = MISSING  # the kind: rl | sft | dpo | rft
    lr: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch_size: int = 128  # samples (pairs) per forward/backward (gradient accumulation)


@dataclass
class KLConfig:
    """KL to the frozen reference (theory.md §4). Estimator and placement are separate settings."""

    coef: float = 0.0  # β; 0 turns the penalty off
    estimator: str = "k3"  # k1 | k2 | k3
    placement: str = "none"  # "reward" (r_t -= β·KL_t, PPO style) | "loss" (GRPO style) | "none"


@dataclass
class CriticConfig:
    """A learned value function V(s_t): the policy's architecture with a scalar head."""

    enabled: bool = False
    lr: float = 1e-4
    value_clip: float | None = 0.2  # cliprange_value; null disables value clipping
    lam: float | None = None  # λ of the value targets; null = the advantage's λ
    # critic-only steps before the policy's first update (verl's critic_warmup): they count
    # towards ``steps`` and sample from the unchanged start policy
    warmup_steps: int = 0
    epochs: int | None = (
        None  # passes of the critic over each rollout batch; null = algorithm.epochs
    )
    # false: only the value head learns, a linear probe of the start model's features (fewer
    # parameters to fit from one batch of returns)
    train_backbone: bool = True


@dataclass
class OverlongConfig:
    """DAPO's overlong reward shaping: a length penalty added to the outcome reward."""

    enabled: bool = False
    max_len: int | None = None  # L_max; null = rollout.max_new_tokens
    cache_len: int = 8  # L_cache, the soft window before L_max


@dataclass
class RLAlgorithmConfig(AlgorithmConfig):
    """Online RL: how one rollout batch turns into parameter updates."""

    trainer: str = "rl"
    policy_loss: str = "ppo_clip"  # registry name in rlexp.algos.losses.POLICY_LOSSES
    clip_low: float = 0.2  # ε_low: ratio floor 1 - ε_low
    clip_high: float = 0.2  # ε_high: ratio ceiling 1 + ε_high
    dual_clip: float | None = None  # c > 1 bounds the loss of A < 0 tokens by -c·A
    loss_agg: str = "token-mean"  # see rlexp.algos.losses.aggregate
    norm_len: int | None = None  # constant divisor for seq-mean-token-sum-norm
    group_size: int = 1  # samples per prompt (G)
    prompts_per_step: int = 32
    epochs: int = 1  # passes over each rollout batch (μ / PPO epochs)
    minibatch_size: int | None = None  # samples per optimizer step; null = the whole batch
    entropy_coef: float = 0.0
    vf_coef: float = 1.0
    # Behaviour log-probs of the ratio: trainer (recomputed by the training forward) | sampler
    # | auto (trainer when they can differ: a non-fp32 dtype or top_p < 1)
    old_logp: str = "auto"
    # Truncated importance sampling of the sampler/trainer mismatch: none | token | sequence,
    # weights min(π_old / π_sampler, rollout_is_cap) on the advantages (rlexp.algos.importance)
    rollout_is: str = "none"
    rollout_is_cap: float = 2.0
    dynamic_sampling: bool = False  # drop groups whose samples are all right or all wrong
    # leave groups whose scores all agree out of the policy loss (ScaleRL); no resampling
    zero_variance_filter: bool = False
    max_sampling_rounds: int = 4  # cap on draws per step when dynamic sampling refills the batch
    overlong: OverlongConfig = field(default_factory=OverlongConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)


@dataclass
class SFTAlgorithmConfig(AlgorithmConfig):
    """``algorithm=sft``: its recipe is the top-level ``sft:`` section (shared with the SFT base
    that RL runs train on demand)."""

    trainer: str = "sft"


@dataclass
class DPOConfig:
    """DPO (theory.md §5): preference pairs from a JSONL file, or built by sampling the start model
    and pairing a verifier-correct completion with an incorrect one of the same prompt."""

    beta: float = 0.1  # β: scale of the implicit reward β·log(π_θ/π_ref), > 0
    kind: str = "sigmoid"  # sigmoid (DPO) | ipo; see rlexp.algos.preference.dpo_loss
    pairs_file: str | None = None  # JSONL of {"prompt", "chosen", "rejected"}; null: sample
    k: int = 8  # completions sampled per training prompt to build pairs (>= 2)
    n_prompts: int = 1024  # training prompts sampled to build pairs
    pairs_per_prompt: int = 1  # at most this many (correct, incorrect) pairs from one prompt
    batch_size: int = 32  # pairs per optimizer step
    warmup_steps: int = 0  # linear warm-up of algorithm.lr over the first steps


@dataclass
class DPOAlgorithmConfig(AlgorithmConfig):
    trainer: str = "dpo"
    dpo: DPOConfig = field(default_factory=DPOConfig)


@dataclass
class RFTConfig:
    """Rejection-sampling fine-tuning (theory.md §5): SFT on the start model's own correct samples."""

    k: int = 8  # completions sampled per training prompt
    n_prompts: int = 1024  # training prompts sampled
    batch_size: int = 64  # kept completions per optimizer step
    warmup_steps: int = 0  # linear warm-up of algorithm.lr over the first steps


@dataclass
class RFTAlgorithmConfig(AlgorithmConfig):
    trainer: str = "rft"
    rft: RFTConfig = field(default_factory=RFTConfig)


ALGORITHM_SCHEMAS: dict[str, type[AlgorithmConfig]] = {
    "rl": RLAlgorithmConfig,
    "sft": SFTAlgorithmConfig,
    "dpo": DPOAlgorithmConfig,
    "rft": RFTAlgorithmConfig,
}
