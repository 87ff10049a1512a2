"""Checks of whole-run combinations, before any compute: one clear message per problem.

Types and unknown keys are caught earlier by the structured configs (rlexp.config.schema); this module
catches values that are each valid but impossible or silently useless together.
"""

from __future__ import annotations

import dataclasses
import json
import re

from omegaconf import DictConfig, OmegaConf

from rlexp.config.schema import HFModelConfig, TinyModelConfig
from rlexp.data.tasks import TASKS, build_task
from rlexp.models.load import resolve_device
from rlexp.rollout.engine import ENGINES
from rlexp.rollout.prefetch import MODES
from rlexp.rollout.rewards import REWARDS
from rlexp.runtime.distributed import env_world_size
from rlexp.runtime.errors import check, check_unit_interval
from rlexp.runtime.hub import local_path
from rlexp.runtime.sharding import STRATEGIES
from rlexp.trainers import TRAINERS, TrainerKind

MODELS = (TinyModelConfig.name, HFModelConfig.name)  # model.name: the kinds of conf/model/


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first invalid combination in a composed run config."""
    check_known_keys(cfg)
    algo = cfg.algorithm
    check(
        cfg.task.name in TASKS, f"task={cfg.task.name} is unknown; choose one of: {TASKS.names()}"
    )
    for component in cfg.reward.components:
        try:
            REWARDS.get(component)
        except KeyError as err:
            check(False, f"reward.components: {err.args[0]}")
    for component in cfg.reward.get("params") or {}:
        check(
            component in cfg.reward.components,
            f"reward.params.{component} gives parameters to a reward that is not in "
            f"reward.components ({', '.join(cfg.reward.components) or 'none'})",
        )
    if "carry_slip" in cfg.task:
        check_unit_interval("task.carry_slip", cfg.task.carry_slip)
    blind = cfg.task.get("never_carry_from", 0)
    check(
        blind == 0 or 10 <= blind <= 19,
        f"task.never_carry_from={blind}: 0 (off) or a column sum in 10..19",
    )
    _validate_task_files(cfg.task)
    check(cfg.steps >= 0, f"steps={cfg.steps} must be >= 0")
    check(cfg.rollout.temperature > 0, f"rollout.temperature={cfg.rollout.temperature} must be > 0")
    check(0 < cfg.rollout.top_p <= 1, f"rollout.top_p={cfg.rollout.top_p} must lie in (0, 1]")
    check(cfg.rollout.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1")
    _validate_lag(cfg)
    _validate_rollout_mode(cfg)
    _validate_data(cfg)
    check(cfg.eval.n_samples >= 1, f"eval.n_samples={cfg.eval.n_samples} must be >= 1")
    check(cfg.eval.temperature > 0, f"eval.temperature={cfg.eval.temperature} must be > 0")
    check(cfg.sft.steps >= 0 and cfg.sft.batch_size >= 1, "sft.steps >= 0 and sft.batch_size >= 1")
    _validate_run_values(cfg)
    check(
        algo.trainer in TRAINERS,
        f"algorithm.trainer={algo.trainer}: use {', '.join(TRAINERS.names())}",
    )
    kind = TRAINERS.get(algo.trainer)
    check(  # the model kind; it also names the SFT base's folder under cache_dir
        cfg.model.name in MODELS,
        f"model.name={cfg.model.name} is not a model kind; use {' or '.join(MODELS)} (model=hf "
        "loads any checkpoint from model.path)",
    )
    if cfg.model.name == "hf":
        _validate_hf_model(cfg)
    _validate_world(algo, env_world_size(), kind)
    _validate_engine(cfg, kind)
    _validate_strategy(cfg, kind)
    kind.validate(cfg)  # the kind's own combinations (rlexp.trainers.<kind>)


def _validate_lag(cfg: DictConfig) -> None:
    """``rollout.lag``: an integer >= 0, for online RL with whole (unsharded) weights."""
    lag = cfg.rollout.get("lag", 0)
    check(lag >= 0, f"rollout.lag={lag} must be >= 0 (0 = on-policy)")
    if lag == 0:
        return
    check(
        cfg.algorithm.trainer == "rl",
        f"rollout.lag={lag} delays the sampler of online RL; algorithm.trainer="
        f"{cfg.algorithm.trainer} samples no rollouts while it trains (drop rollout.lag)",
    )
    check(
        cfg.distributed.strategy != "fsdp",
        f"rollout.lag={lag} keeps whole copies of the lagged weights; distributed.strategy=fsdp "
        "shards them (not supported yet: use ddp, or rollout.lag=0)",
    )


def _validate_rollout_mode(cfg: DictConfig) -> None:
    """``rollout.mode=async``: the next step's generation overlaps this step's update, which
    needs an engine in its own process and the one-step-off data of ``rollout.lag=1``."""
    r = cfg.rollout
    mode = r.get("mode", "sync")
    check(mode in MODES, f"rollout.mode={mode}: use one of {', '.join(MODES)}")
    if mode == "sync":
        return
    check(
        r.engine == "vllm",
        f"rollout.mode=async overlaps generation with the update; rollout.engine={r.engine} "
        "samples with the policy being updated (use rollout.engine=vllm)",
    )
    check(
        r.get("lag", 0) == 1,
        f"rollout.mode=async samples step t+1 with the weights of step t: the data of "
        f"rollout.lag=1, not rollout.lag={r.get('lag', 0)} (set rollout.lag=1)",
    )
    check(
        not cfg.algorithm.get("dynamic_sampling", False),
        "rollout.mode=async draws the next step's prompts before this step's groups are "
        "filtered; algorithm.dynamic_sampling refills a step from its own results (drop one)",
    )
    check(
        env_world_size() == 1,
        f"rollout.mode=async runs in one process; torchrun started {env_world_size()}",
    )


def _validate_data(cfg: DictConfig) -> None:
    """``data.drop_solved_above``: null, or a pass rate in (0, 1] for online RL."""
    rate = cfg.get("data", {}).get("drop_solved_above")
    if rate is None:
        return
    check(
        0 < rate <= 1,
        f"data.drop_solved_above={rate} must lie in (0, 1] (a pass rate; null keeps every prompt)",
    )
    check(
        cfg.algorithm.trainer == "rl",
        f"data.drop_solved_above drops prompts that online RL's samples solve; algorithm.trainer="
        f"{cfg.algorithm.trainer} samples none (drop the key)",
    )


def unknown_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys of ``node`` that no schema declares: a ``+key=value`` override adds a key even
    to a structured (closed) section, where Hydra lifts the struct flag for it. Sections typed as
    a dict (``reward.components``, ``study.tiers``) or untyped (a saved config.yaml) are open."""
    schema = OmegaConf.get_type(node)
    declared = (
        {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    )
    found: list[str] = []
    for key, child in node.items_ex(resolve=False):
        dotted = f"{prefix}{key}"
        if declared is not None and key not in declared and dotted != "hydra":
            found.append(dotted)
        elif isinstance(child, DictConfig) and not child._is_none():
            found += unknown_keys(child, f"{dotted}.")
    return found


def check_known_keys(cfg: DictConfig) -> None:
    """An unknown key added with ``+`` (``+algorithm.foo=1``) is an error, not silently ignored."""
    found = unknown_keys(cfg)
    check(
        not found,
        f"unknown config key(s) {', '.join(found)}: no schema declares them (a typo, or a key "
        "of another option; rlexp/config/schema.py lists the keys)",
    )


def _check_saved_model(key: str, path: str) -> None:
    """``path`` (the value of config ``key``) is a folder written by ``save_pretrained``, or a
    Hub id whose snapshot is in the local HF cache."""
    folder = local_path(str(path), key)
    check(
        (folder / "config.json").is_file(),
        f"{key}={path} holds no config.json (expected a folder written by save_pretrained)",
    )


def _validate_hf_model(cfg: DictConfig) -> None:
    """model=hf: the checkpoint folders exist, the chat-template and LoRA settings make sense."""
    m = cfg.model
    check(
        not OmegaConf.is_missing(m, "path"),
        "model=hf needs model.path=<folder of a causal LM saved with save_pretrained>",
    )
    _check_saved_model("model.path", m.path)
    check(
        str(m.chat_template).lower() in ("auto", "true", "false"),
        f"model.chat_template={m.chat_template}: use auto, true or false",
    )
    kind = TRAINERS.get(cfg.algorithm.trainer)
    if m.ref_path:
        _check_saved_model("model.ref_path", m.ref_path)
        check(
            kind.kl_reference and cfg.algorithm.kl.coef > 0,
            f"model.ref_path={m.ref_path} is set but the run has no KL term to the reference "
            "(it needs algorithm.trainer=rl and algorithm.kl.coef > 0); drop model.ref_path",
        )
    lora = m.lora
    check(lora.r >= 0, f"model.lora.r={lora.r} must be >= 0 (0 turns LoRA off)")
    if lora.r == 0:
        return
    check(
        kind.lora,
        f"model.lora.r={lora.r}: LoRA is supported for online RL only, not "
        f"algorithm.trainer={cfg.algorithm.trainer} (set model.lora.r=0)",
    )
    check(lora.alpha is None or lora.alpha > 0, f"model.lora.alpha={lora.alpha} must be > 0")
    check(0 <= lora.dropout < 1, f"model.lora.dropout={lora.dropout} must lie in [0, 1)")
    check(len(lora.target_modules) > 0, "model.lora.target_modules must name >= 1 module")


def _validate_task_files(task: DictConfig) -> None:
    """A data-set task (``task.train_file``, ``task.dataset_name``) reads and checks its rows
    now, so a missing file or a bad row (DataError, naming file and line) stops the run before
    any compute."""
    if "train_file" not in task and "dataset_name" not in task:
        return
    check(
        task.get("train_file") is not None or task.get("dataset_name") is not None,
        f"task={task.name} needs task.train_file=<file> and task.test_file=<file> (JSONL, "
        "Parquet, ...), or task.dataset_name=<save_to_disk folder or Hub id>",
    )
    build_task(task.name, **{k: v for k, v in task.items() if k != "name"})


def _validate_world(algo: DictConfig, world: int, kind: TrainerKind) -> None:
    """Only data-parallel kinds run under torchrun with several processes (their own checks say
    how the batch splits)."""
    check(
        world <= 1 or kind.data_parallel,
        f"torchrun started {world} processes, but algorithm.trainer={algo.trainer} runs in one "
        "process; data parallelism is for online RL (train the SFT base / run DPO, RFT without "
        "torchrun)",
    )


def _validate_engine(cfg: DictConfig, kind: TrainerKind) -> None:
    """``rollout.engine`` and ``rollout.vllm.*``: vLLM installed, able to load the model, sized
    for the generation budget; checked before any model is built."""
    r = cfg.rollout
    check(r.engine in ENGINES, f"rollout.engine={r.engine} is unknown; choose: {ENGINES.names()}")
    if r.engine == "native":
        return
    from rlexp.rollout import vllm_engine

    check(
        vllm_engine.vllm_installed(), f"rollout.engine=vllm needs vLLM: {vllm_engine.INSTALL_HINT}"
    )
    check(
        kind.rollout_engine,
        f"rollout.engine=vllm samples online RL rollouts; algorithm.trainer={cfg.algorithm.trainer} "
        "does not use it (drop rollout.engine=vllm)",
    )
    check(
        not cfg.model.get("fp32_lm_head"),
        "model.fp32_lm_head upcasts the logits of rlexp's own forward; vLLM computes its own, so "
        "sampler and trainer would not match (use rollout.engine=native, or drop fp32_lm_head)",
    )
    v = r.vllm
    check(
        0 < v.gpu_memory_utilization <= 1,
        f"rollout.vllm.gpu_memory_utilization={v.gpu_memory_utilization} must lie in (0, 1]",
    )
    check(
        v.kv_cache_gib is None or v.kv_cache_gib > 0,
        f"rollout.vllm.kv_cache_gib={v.kv_cache_gib} must be > 0 (or null)",
    )
    check(
        v.max_model_len is None or r.max_new_tokens < v.max_model_len,
        f"rollout.max_new_tokens={r.max_new_tokens} does not fit rollout.vllm.max_model_len="
        f"{v.max_model_len} (prompt and completion share it); raise max_model_len or lower "
        "max_new_tokens",
    )
    check(
        v.sleep_level in (None, 0, 1, 2),
        f"rollout.vllm.sleep_level={v.sleep_level}: use 0, 1, 2 or null",
    )
    on_gpu = resolve_device(cfg.device).type == "cuda"
    check(
        on_gpu or not v.sleep_level,
        f"rollout.vllm.sleep_level={v.sleep_level}: vLLM cannot sleep on a CPU (use 0 or null)",
    )
    if cfg.model.name == "hf":
        config = json.loads((local_path(cfg.model.path, "model.path") / "config.json").read_text())
        vllm_engine.check_architecture(config.get("architectures"), f"model.path={cfg.model.path}")


def _validate_strategy(cfg: DictConfig, kind: TrainerKind) -> None:
    """``distributed.strategy``: ddp | fsdp; fsdp shards the data-parallel (online RL) kinds."""
    strategy = cfg.distributed.strategy
    check(
        strategy in STRATEGIES,
        f"distributed.strategy={strategy}: use {' or '.join(STRATEGIES)}",
    )
    check(
        strategy == "ddp" or kind.data_parallel,
        f"distributed.strategy=fsdp shards online RL under torchrun; "
        f"algorithm.trainer={cfg.algorithm.trainer} runs in one process (drop it)",
    )


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?$")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _validate_run_values(cfg: DictConfig) -> None:
    """Values that would otherwise fail deep inside (a division by zero after the models load, a
    traceback from torch) or silently do something else (a negative clip norm ascends)."""
    for key in ("eval_every", "save_every", "sft.eval_every"):
        value = OmegaConf.select(cfg, key)
        check(
            value >= 1,
            f"{key}={value} must be >= 1 (a period in steps; set it to steps or more for "
            "only the first and the last)",
        )
    e, algo = cfg.eval, cfg.algorithm
    check(e.n_problems >= 1, f"eval.n_problems={e.n_problems} must be >= 1")
    check(e.batch_size >= 1, f"eval.batch_size={e.batch_size} must be >= 1")
    check(0 < e.top_p <= 1, f"eval.top_p={e.top_p} must lie in (0, 1]")
    check(
        e.max_new_tokens is None or e.max_new_tokens >= 1,
        f"eval.max_new_tokens={e.max_new_tokens} must be >= 1 (or null)",
    )
    for key in ("n_train", "n_test"):
        value = cfg.task.get(key)
        check(value is None or value >= 1, f"task.{key}={value} must be >= 1")
    check(
        DEVICE.match(str(cfg.device)) is not None,
        f"device={cfg.device}: use auto, cpu, cuda or cuda:N",
    )
    dtype = cfg.model.get("dtype", "auto")
    check(dtype in DTYPES, f"model.dtype={dtype}: use {', '.join(DTYPES)}")
    check(cfg.threads >= 0, f"threads={cfg.threads} must be >= 0 (0 = auto)")
    check(0 <= cfg.seed < 2**31, f"seed={cfg.seed} must lie in [0, 2^31)")
    check(
        algo.max_grad_norm > 0,
        f"algorithm.max_grad_norm={algo.max_grad_norm} must be > 0 (a negative norm would flip "
        "the gradient, 0 would freeze the model)",
    )
    check(algo.lr > 0, f"algorithm.lr={algo.lr} must be > 0")
    check(algo.weight_decay >= 0, f"algorithm.weight_decay={algo.weight_decay} must be >= 0")
    check(algo.micro_batch_size >= 1, "algorithm.micro_batch_size must be >= 1")
    critic = algo.get("critic")
    if critic is not None:
        check(critic.lr > 0, f"algorithm.critic.lr={critic.lr} must be > 0")
        check(
            critic.epochs is None or critic.epochs >= 1,
            f"algorithm.critic.epochs={critic.epochs} must be >= 1 (null: algorithm.epochs)",
        )
        _validate_critic_warmup(critic, cfg.steps)
    check(cfg.sft.lr > 0, f"sft.lr={cfg.sft.lr} must be > 0")


def _validate_critic_warmup(critic: DictConfig, steps: int) -> None:
    """``algorithm.critic.warmup_steps``: critic-only steps, so a critic and room for policy steps."""
    warmup = critic.warmup_steps
    check(warmup >= 0, f"algorithm.critic.warmup_steps={warmup} must be >= 0 (0: no warm-up)")
    if warmup == 0:
        return
    check(
        critic.enabled,
        f"algorithm.critic.warmup_steps={warmup} warms up a critic, but algorithm.critic.enabled="
        "false (use algorithm=ppo, or algorithm.critic.warmup_steps=0)",
    )
    check(
        warmup < steps or steps == 0,
        f"algorithm.critic.warmup_steps={warmup} leaves no policy update in steps={steps} "
        "(warm-up steps count towards steps; lower warmup_steps or raise steps)",
    )
