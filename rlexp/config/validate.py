"""Checks of whole-run combinations, before any compute: one clear message per problem.

Types and unknown keys are caught earlier by the structured configs (rlexp.config.schema); this module
catches values that are each valid but impossible or silently useless together.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlexp.algos.advantages import ADVANTAGES, estimator_requirements
from rlexp.algos.losses import AGG_MODES, POLICY_LOSSES
from rlexp.algos.preference import DPO_KINDS
from rlexp.data.pairs import PairsFileError, load_pairs
from rlexp.data.tasks import TASKS, build_task
from rlexp.rollout.rewards import REWARDS
from rlexp.runtime.distributed import env_world_size
from rlexp.runtime.errors import ConfigError

KL_ESTIMATORS = ("k1", "k2", "k3")
KL_PLACEMENTS = ("reward", "loss", "none")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _in_unit_interval(name: str, value: float) -> None:
    _check(0.0 <= value <= 1.0, f"{name}={value} must lie in [0, 1]")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first invalid combination in a composed run config."""
    algo = cfg.algorithm
    _check(
        cfg.task.name in TASKS, f"task={cfg.task.name} is unknown; choose one of: {TASKS.names()}"
    )
    for component in cfg.reward.components:
        _check(
            component in REWARDS,
            f"reward component {component!r} is unknown; choose from: {REWARDS.names()}",
        )
    if "carry_slip" in cfg.task:
        _in_unit_interval("task.carry_slip", cfg.task.carry_slip)
    _validate_task_files(cfg.task)
    _check(cfg.steps >= 0, f"steps={cfg.steps} must be >= 0")
    _check(
        cfg.rollout.temperature > 0, f"rollout.temperature={cfg.rollout.temperature} must be > 0"
    )
    _check(0 < cfg.rollout.top_p <= 1, f"rollout.top_p={cfg.rollout.top_p} must lie in (0, 1]")
    _check(cfg.rollout.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1")
    _check(cfg.eval.n_samples >= 1, f"eval.n_samples={cfg.eval.n_samples} must be >= 1")
    _check(cfg.eval.temperature > 0, f"eval.temperature={cfg.eval.temperature} must be > 0")
    _check(cfg.sft.steps >= 0 and cfg.sft.batch_size >= 1, "sft.steps >= 0 and sft.batch_size >= 1")
    if cfg.model.name == "hf":
        _validate_hf_model(cfg)
    _validate_world(algo, env_world_size())
    if algo.trainer == "sft":
        return
    if algo.trainer in OFFLINE_CHECKS:
        OFFLINE_CHECKS[algo.trainer](cfg)
        return
    _check(algo.trainer == "rl", f"algorithm.trainer={algo.trainer}: use rl, sft, dpo or rft")
    _validate_advantage(cfg)
    _validate_policy_update(algo)
    _validate_batch_sizes(algo)
    _validate_kl(cfg)
    _validate_sampling(cfg)


def _check_saved_model(key: str, path: str) -> None:
    """``path`` (the value of config ``key``) is a folder written by ``save_pretrained``."""
    folder = Path(path).expanduser()
    _check(folder.exists(), f"{key}={path} does not exist")
    _check(
        (folder / "config.json").is_file(),
        f"{key}={path} holds no config.json (expected a folder written by save_pretrained)",
    )


def _validate_hf_model(cfg: DictConfig) -> None:
    """model=hf: the checkpoint folders exist, the chat-template and LoRA settings make sense."""
    m, kl = cfg.model, cfg.algorithm.kl
    _check(
        not OmegaConf.is_missing(m, "path"),
        "model=hf needs model.path=<folder of a causal LM saved with save_pretrained>",
    )
    _check_saved_model("model.path", m.path)
    _check(
        str(m.chat_template).lower() in ("auto", "true", "false"),
        f"model.chat_template={m.chat_template}: use auto, true or false",
    )
    if m.ref_path:
        _check_saved_model("model.ref_path", m.ref_path)
        _check(
            cfg.algorithm.trainer == "rl" and kl.coef > 0,
            f"model.ref_path={m.ref_path} is set but the run has no KL term to the reference "
            "(it needs algorithm.trainer=rl and algorithm.kl.coef > 0); drop model.ref_path",
        )
    lora = m.lora
    _check(lora.r >= 0, f"model.lora.r={lora.r} must be >= 0 (0 turns LoRA off)")
    if lora.r == 0:
        return
    _check(
        cfg.algorithm.trainer == "rl",
        f"model.lora.r={lora.r}: LoRA is supported for online RL only, not "
        f"algorithm.trainer={cfg.algorithm.trainer} (set model.lora.r=0)",
    )
    _check(lora.alpha is None or lora.alpha > 0, f"model.lora.alpha={lora.alpha} must be > 0")
    _check(0 <= lora.dropout < 1, f"model.lora.dropout={lora.dropout} must lie in [0, 1)")
    _check(len(lora.target_modules) > 0, "model.lora.target_modules must name >= 1 module")


def _validate_task_files(task: DictConfig) -> None:
    """A data-file task (``task.train_file``, ...) reads and checks its files now, so a missing
    file or a bad line (DataError, naming file and line) stops the run before any compute."""
    files = [k for k in task if k in ("train_file", "test_file")]  # `k in task` is False for ???
    if not files:
        return
    for key in files:
        _check(
            not OmegaConf.is_missing(task, key),
            f"task={task.name} needs task.{key}=<path to a JSONL file>",
        )
    build_task(task.name, **{k: v for k, v in task.items() if k != "name"})


def _validate_world(algo: DictConfig, world: int) -> None:
    """Data parallelism (torchrun, ``world`` processes) splits whole groups evenly over ranks."""
    if world <= 1:
        return
    _check(
        algo.trainer == "rl",
        f"torchrun started {world} processes, but algorithm.trainer={algo.trainer} runs in one "
        "process; data parallelism is for online RL (train the SFT base / run DPO, RFT without "
        "torchrun)",
    )
    _check(
        algo.prompts_per_step % world == 0,
        f"algorithm.prompts_per_step={algo.prompts_per_step} must divide by the {world} "
        "data-parallel processes (each rank samples whole groups for an equal share of prompts)",
    )
    _check(
        not algo.minibatch_size or algo.minibatch_size % world == 0,
        f"algorithm.minibatch_size={algo.minibatch_size} must divide by the {world} "
        "data-parallel processes (each rank takes an equal share of every minibatch)",
    )


def _validate_advantage(cfg: DictConfig) -> None:
    algo, adv = cfg.algorithm, cfg.advantage
    _check(adv.name in ADVANTAGES, f"advantage={adv.name} is unknown; choose: {ADVANTAGES.names()}")
    needs = estimator_requirements(adv.name)
    for key in ("gamma", "lam"):
        if key in adv:
            _in_unit_interval(f"advantage.{key}", adv[key])
    if algo.critic.lam is not None:
        _in_unit_interval("algorithm.critic.lam", algo.critic.lam)
    _check(
        not needs.critic or algo.critic.enabled,
        f"advantage={adv.name} needs a critic, but algorithm={algo.name} has none "
        "(set algorithm.critic.enabled=true, or use algorithm=ppo)",
    )
    _check(
        needs.critic or not algo.critic.enabled,
        f"algorithm.critic.enabled=true but advantage={adv.name} never reads the critic's values "
        "(use advantage=gae, or algorithm.critic.enabled=false)",
    )
    _check(
        not needs.groups or algo.group_size >= 2,
        f"advantage={adv.name} compares samples within a group, so algorithm.group_size must be "
        f">= 2 (got {algo.group_size})",
    )


def _validate_policy_update(algo: DictConfig) -> None:
    _check(
        algo.policy_loss in POLICY_LOSSES,
        f"algorithm.policy_loss={algo.policy_loss} is unknown; choose: {POLICY_LOSSES.names()}",
    )
    _check(
        algo.loss_agg in AGG_MODES,
        f"algorithm.loss_agg={algo.loss_agg} is unknown; choose: {list(AGG_MODES)}",
    )
    _check(algo.clip_low > 0, f"algorithm.clip_low={algo.clip_low} must be > 0 (ε > 0)")
    _check(algo.clip_high > 0, f"algorithm.clip_high={algo.clip_high} must be > 0 (ε > 0)")
    _check(algo.clip_low < 1, f"algorithm.clip_low={algo.clip_low} must be < 1")
    _check(
        algo.dual_clip is None or algo.dual_clip > 1,
        f"algorithm.dual_clip={algo.dual_clip} must be > 1 (or null)",
    )
    _check(algo.epochs >= 1, f"algorithm.epochs={algo.epochs} must be >= 1")
    _check(algo.lr > 0, f"algorithm.lr={algo.lr} must be > 0")
    _check(algo.entropy_coef >= 0, f"algorithm.entropy_coef={algo.entropy_coef} must be >= 0")


def _validate_batch_sizes(algo: DictConfig) -> None:
    _check(algo.group_size >= 1, f"algorithm.group_size={algo.group_size} must be >= 1")
    _check(algo.prompts_per_step >= 1, "algorithm.prompts_per_step must be >= 1")
    batch = algo.group_size * algo.prompts_per_step
    minibatch = algo.minibatch_size or batch
    _check(
        minibatch >= 1 and batch % minibatch == 0,
        f"algorithm.minibatch_size={minibatch} must divide the rollout batch "
        f"(prompts_per_step × group_size = {algo.prompts_per_step} × {algo.group_size} = {batch})",
    )
    micro = min(algo.micro_batch_size, minibatch)
    _check(
        micro >= 1 and minibatch % micro == 0,
        f"algorithm.micro_batch_size={algo.micro_batch_size} must divide "
        f"algorithm.minibatch_size={minibatch}",
    )


def _validate_kl(cfg: DictConfig) -> None:
    kl, adv = cfg.algorithm.kl, cfg.advantage
    _check(
        kl.estimator in KL_ESTIMATORS, f"algorithm.kl.estimator={kl.estimator}: use k1, k2 or k3"
    )
    _check(
        kl.placement in KL_PLACEMENTS, f"algorithm.kl.placement={kl.placement}: use {KL_PLACEMENTS}"
    )
    _check(kl.coef >= 0, f"algorithm.kl.coef={kl.coef} must be >= 0")
    _check(
        kl.coef == 0 or kl.placement != "none",
        f"algorithm.kl.coef={kl.coef} is set but algorithm.kl.placement=none, so it would do "
        "nothing; set algorithm.kl.placement=loss or reward, or algorithm.kl.coef=0",
    )
    _check(
        kl.coef == 0 or kl.placement != "reward" or estimator_requirements(adv.name).token_rewards,
        f"algorithm.kl.placement=reward has no effect with advantage={adv.name}, which reads only "
        "the sequence score; use algorithm.kl.placement=loss (or an advantage over token rewards)",
    )


def _validate_sampling(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    _check(
        not algo.dynamic_sampling or algo.group_size >= 2,
        "algorithm.dynamic_sampling=true drops groups whose samples all agree, so it needs "
        f"algorithm.group_size >= 2 (got {algo.group_size})",
    )
    _check(algo.max_sampling_rounds >= 1, "algorithm.max_sampling_rounds must be >= 1")
    if algo.overlong.enabled:
        max_len = algo.overlong.max_len or cfg.rollout.max_new_tokens
        _check(
            0 < algo.overlong.cache_len <= max_len,
            f"algorithm.overlong.cache_len={algo.overlong.cache_len} must lie in (0, max_len={max_len}]",
        )
        _check(
            max_len <= cfg.rollout.max_new_tokens,
            f"algorithm.overlong.max_len={max_len} exceeds rollout.max_new_tokens="
            f"{cfg.rollout.max_new_tokens}: no completion could reach it",
        )


def _validate_offline(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    _check(algo.lr > 0, f"algorithm.lr={algo.lr} must be > 0")
    _check(algo.micro_batch_size >= 1, "algorithm.micro_batch_size must be >= 1")
    _check(
        not cfg.resume,
        f"resume=true: algorithm={algo.name} (an offline method) does not resume; start a new run",
    )


def _validate_dpo(cfg: DictConfig) -> None:
    d = cfg.algorithm.dpo
    _validate_offline(cfg)
    _check(d.beta > 0, f"algorithm.dpo.beta={d.beta} must be > 0")
    _check(d.kind in DPO_KINDS, f"algorithm.dpo.kind={d.kind} is unknown; use {DPO_KINDS.names()}")
    _check(d.batch_size >= 1, f"algorithm.dpo.batch_size={d.batch_size} must be >= 1")
    if d.pairs_file:  # read now, so a bad line stops the run before any compute
        try:
            load_pairs(d.pairs_file)
        except PairsFileError as err:
            raise ConfigError(f"algorithm.dpo.pairs_file: {err}") from None
        return
    _check(
        d.k >= 2,
        f"algorithm.dpo.k={d.k}: building pairs needs >= 2 samples per prompt (a right and a "
        "wrong one), or a pairs file (algorithm.dpo.pairs_file)",
    )
    _check(d.n_prompts >= 1, f"algorithm.dpo.n_prompts={d.n_prompts} must be >= 1")
    _check(d.pairs_per_prompt >= 1, "algorithm.dpo.pairs_per_prompt must be >= 1")


def _validate_rft(cfg: DictConfig) -> None:
    r = cfg.algorithm.rft
    _validate_offline(cfg)
    _check(r.k >= 1, f"algorithm.rft.k={r.k} must be >= 1")
    _check(r.n_prompts >= 1, f"algorithm.rft.n_prompts={r.n_prompts} must be >= 1")
    _check(r.batch_size >= 1, f"algorithm.rft.batch_size={r.batch_size} must be >= 1")


OFFLINE_CHECKS = {"dpo": _validate_dpo, "rft": _validate_rft}  # algorithm.trainer → checks
