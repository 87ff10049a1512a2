"""One RL step on the tiny Llama: rlexp's GRPO split, the same step in TRL, PPO vs GRPO memory.

Run: ``.venv/bin/python benchmarks/bench_step.py [--repeats 3]`` (leave OMP_NUM_THREADS unset).
Part 2 needs the optional ``bench`` extra (``pip install -e ".[bench]"``, i.e. trl); without it
that part is skipped with one line. About 2-5 minutes on 2 CPU cores, depending on their load.

Everything is built from configs (nothing is downloaded): the character tokenizer, the default
``build_tiny_llama`` (~0.8 M parameters, random init, seed 0) and the ``arithmetic`` task's
training prompts (``<bos>`` + 9 characters, all the same length, so no prompt padding).

The step (both frameworks): 32 prompts x 16 samples = 512 completions of exactly 32 new tokens,
temperature 1.0, top-p 1.0, exact-match reward, a frozen reference model (KL β = 0.01, k3 in the
loss), μ = 1 and ONE optimizer step over all 512 completions, accumulated over 4 micro-batches of
128 (rlexp: ``minibatch_size=null, micro_batch_size=128``; TRL: ``per_device_train_batch_size=128,
gradient_accumulation_steps=4``), AdamW lr 2e-4, grad-norm clip 1.0, fp32, no gradient
checkpointing. Exactly 32 tokens: rlexp's sampler gets an EOS id outside the vocabulary (so no
row stops early), TRL's ``generate`` gets ``min_new_tokens=32`` (EOS masked); both are checked.

rlexp's step mirrors ``RLTrainer.train_step`` / ``experience.collect`` line by line, except that it
calls ``rlexp.rollout.sampler.sample`` itself, because ``collect`` always stops at the tokenizer's EOS.
The GRPO and PPO settings are the repository's ``conf/algorithm/{grpo,ppo}.yaml``, composed through
Hydra, with the overrides in ``STEP_OVERRIDES``.

Timing: one warm-up step each, then ``--repeats`` steps each, rlexp and TRL steps interleaved
(an rlexp step runs right after each timed TRL step, from a TrainerCallback, outside TRL's timed
window), medians reported. Memory (part 3): one PPO and one GRPO step, each in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: everything is local
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from rlexp.config import register_configs  # noqa: E402
from rlexp.config.validate import validate  # noqa: E402
from rlexp.data.prompts import encode_prompts  # noqa: E402
from rlexp.data.tasks import build_task  # noqa: E402
from rlexp.models.logprobs import completion_logprobs  # noqa: E402
from rlexp.models.tiny import build_tiny_llama  # noqa: E402
from rlexp.models.tokenizer import build_char_tokenizer  # noqa: E402
from rlexp.models.value import ValueModel  # noqa: E402
from rlexp.rollout.collect import (  # noqa: E402
    add_kl_penalty,
    compute_advantages,
    critic_values,
    score_samples,
)
from rlexp.rollout.sampler import sample  # noqa: E402
from rlexp.trainers.update import critic_update, policy_update  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
MiB = 2**20

# Shared by GRPO and PPO: μ = 1, one optimizer step over the whole batch (minibatch_size=null),
# temperature 1; the batch shape (prompts, group, new tokens, micro-batch) comes from the CLI.
STEP_OVERRIDES = [
    "output_dir=/tmp/unused",
    "algorithm.epochs=1",
    "algorithm.minibatch_size=null",
    "rollout.temperature=1.0",
    "rollout.top_p=1.0",
    "reward=exact_match",
]


def compose_cfg(algorithm: str, prompts: int, group: int, new_tokens: int, micro: int):
    """The repository's config for ``algorithm`` with this benchmark's batch shape."""
    register_configs()
    GlobalHydra.instance().clear()
    overrides = [
        f"algorithm={algorithm}",
        *STEP_OVERRIDES,
        f"algorithm.prompts_per_step={prompts}",
        f"algorithm.group_size={group}",
        f"rollout.max_new_tokens={new_tokens}",
        f"algorithm.micro_batch_size={micro}",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    validate(cfg)
    return cfg


# --------------------------------------------------------------------------- rlexp's step


@contextmanager
def _no_phase(name: str):
    yield


class PhasePeaks:
    """Peak RSS rise of each phase above the RSS at its start (Linux + glibc only).

    At a phase's start, ``malloc_trim`` hands memory that the allocator kept from earlier phases
    back to the OS (else a phase could reuse it unseen) and ``/proc/self/clear_refs`` "5" resets
    the high-water mark; the rise is VmHWM at the end minus VmRSS at the start. The reset also
    lowers ru_maxrss, so this runs only after the step that ru_maxrss measures.
    """

    def __init__(self) -> None:
        import ctypes

        self.malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        self.rise: dict[str, int] = {}

    @contextmanager
    def __call__(self, name: str):
        self.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        start = _proc_status("VmRSS")
        yield
        self.rise[name] = _proc_status("VmHWM") - start


class RlexpStep:
    """Policy, frozen reference, optional critic and their optimizers, as ``train.py`` builds them."""

    def __init__(self, cfg, tokenizer, task) -> None:
        self.cfg, self.tokenizer, self.task = cfg, tokenizer, task
        self.times: dict[str, list[float]] = {}
        algo = cfg.algorithm
        self.policy = build_tiny_llama(self.tokenizer)
        self.ref_model = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.critic = ValueModel.from_policy(self.policy) if algo.critic.enabled else None
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=algo.lr, weight_decay=algo.weight_decay
        )
        self.critic_optimizer = (
            torch.optim.AdamW(self.critic.parameters(), lr=algo.critic.lr)
            if self.critic is not None
            else None
        )
        self.rollout_gen = torch.Generator().manual_seed(0)
        self.update_gen = torch.Generator().manual_seed(1)
        self.reward_weights = dict(self.cfg.reward.components)
        self.adv_cfg = OmegaConf.to_container(self.cfg.advantage, resolve=True)
        self.never_eos = len(self.tokenizer) + 1  # an id no row can sample: every row runs to T
        self.n_steps = 0
        self.phase = _no_phase  # or a PhasePeaks

    def problems(self, step: int) -> list:
        """Step ``step``'s prompts (the next ``prompts_per_step`` training problems), each G times."""
        algo = self.cfg.algorithm
        n = algo.prompts_per_step
        chunk = self.task.train[step * n : (step + 1) * n]
        return [p for p in chunk for _ in range(algo.group_size)]

    def step(self) -> dict[str, float]:
        """One step, as ``RLTrainer.train_step`` + ``collect``; returns seconds per phase."""
        algo, rollout = self.cfg.algorithm, self.cfg.rollout
        problems = self.problems(self.n_steps)
        group_ids = torch.arange(algo.prompts_per_step).repeat_interleave(algo.group_size)
        t0 = time.perf_counter()
        # -- generation (collect: encode + sample) --
        prompt_ids, prompt_mask = encode_prompts(
            self.tokenizer, [p.prompt for p in problems], torch.device("cpu")
        )
        self.policy.eval()
        with self.phase("generation (sample)"):
            out = sample(
                self.policy,
                prompt_ids,
                prompt_mask,
                max_new_tokens=rollout.max_new_tokens,
                eos_token_id=self.never_eos,
                pad_token_id=self.tokenizer.pad_token_id,
                temperature=rollout.temperature,
                top_p=rollout.top_p,
                generator=self.rollout_gen,
            )
        t1 = time.perf_counter()
        if int(out.completion_mask.sum()) != len(problems) * rollout.max_new_tokens:
            raise RuntimeError("rlexp: a completion stopped before max_new_tokens")
        # -- rewards (collect: decode + score) --
        batch, _ = score_samples(
            self.tokenizer,
            self.task,
            problems,
            out,
            prompt_ids,
            prompt_mask,
            group_ids,
            self.reward_weights,
        )
        mask = batch.completion_mask
        t2 = time.perf_counter()
        # -- log-prob passes (collect: reference log-probs, critic values) --
        with self.phase("reference log-probs"):
            batch.ref_logp = completion_logprobs(
                self.ref_model,
                prompt_ids,
                prompt_mask,
                out.completion_ids,
                mask,
                temperature=rollout.temperature,
            ).float()
        if self.critic is not None:
            with self.phase("critic values"):
                batch.values = critic_values(self.critic, batch)
        t3 = time.perf_counter()
        # -- advantages (train_step) --
        if algo.kl.placement == "reward" and algo.kl.coef > 0:
            add_kl_penalty(batch, algo.kl.coef, algo.kl.estimator)
        compute_advantages(batch, self.adv_cfg, algo.critic.lam)
        t4 = time.perf_counter()
        # -- update (train_step) --
        with self.phase("policy_update"):
            policy_update(
                self.policy, self.optimizer, batch, algo, rollout.temperature, self.update_gen
            )
        if self.critic is not None:
            with self.phase("critic_update"):
                critic_update(self.critic, self.critic_optimizer, batch, algo, self.update_gen)
        t5 = time.perf_counter()
        self.n_steps += 1
        return {
            "generation": t1 - t0,
            "rewards": t2 - t1,
            "logprob_passes": t3 - t2,
            "advantages": t4 - t3,
            "update": t5 - t4,
            "total": t5 - t0,
        }

    def timed_step(self) -> None:
        for k, v in self.step().items():
            self.times.setdefault(k, []).append(v)


# --------------------------------------------------------------------------- TRL's step


class _TrlTimer:
    """Wall time of each TRL optimizer step, split by wrapping three of the trainer's methods.

    ``on_step_begin`` → ``on_step_end`` spans the whole step: generation and scoring (in the first
    micro-batch's ``_prepare_inputs``), 4 forward/backward micro-batches and the optimizer step.
    After each timed step but the warm-up, ``after_step`` (an rlexp step) runs outside the window.
    """

    def __init__(self, after_step) -> None:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.begin()

            def on_step_end(self, args, state, control, **kwargs):
                timer.end()

        self.callback = Callback()
        self.after_step = after_step
        self.steps: list[dict[str, float]] = []
        self.completion_lengths: set[int] = set()
        self._acc: dict[str, float] = {}
        self._t0 = 0.0

    def begin(self) -> None:
        self._acc = {"generation": 0.0, "generate_and_score": 0.0, "logprob_passes": 0.0}
        self._t0 = time.perf_counter()

    def end(self) -> None:
        total = time.perf_counter() - self._t0
        a = self._acc
        self.steps.append(
            {
                "generation": a["generation"],
                "logprob_passes": a["logprob_passes"],
                "rewards": a["generate_and_score"] - a["generation"] - a["logprob_passes"],
                "update": total - a["generate_and_score"],
                "total": total,
            }
        )
        if len(self.steps) > 1:  # the first step is TRL's warm-up
            self.after_step()

    def wrap(self, trainer) -> None:
        """Accumulate the time of trainer methods (instance attributes shadow the class's)."""

        def timed(name: str, key: str, only_no_grad: bool = False):
            fn = getattr(trainer, name)

            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                out = fn(*args, **kwargs)
                if not (only_no_grad and torch.is_grad_enabled()):
                    self._acc[key] += time.perf_counter() - t
                if name == "_generate":  # (prompt_ids, completion_ids, ...), EOS-truncated
                    lengths = [len(ids) for ids in out[1]]
                    self.completion_lengths.update((min(lengths), max(lengths)))
                return out

            setattr(trainer, name, wrapper)

        timed("_generate", "generation")
        timed("_generate_and_score_completions", "generate_and_score")
        # reference log-probs: the no-grad calls (the training forward runs with grad)
        timed("_get_per_token_logps_and_entropies", "logprob_passes", only_no_grad=True)


def run_trl(args, tokenizer, task, after_step) -> tuple[list[dict[str, float]], str]:
    """``args.repeats + 1`` GRPOTrainer steps (the first a warm-up); per-step seconds and version."""
    import trl
    from datasets import Dataset
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    n_steps = args.repeats + 1
    problems = task.train[: args.prompts * n_steps]
    # rlexp's encode_prompts prepends BOS; TRL tokenises the text as is, so the text carries it.
    dataset = Dataset.from_dict(
        {
            "prompt": [tokenizer.bos_token + p.prompt for p in problems],
            "answer": [p.answer for p in problems],
        }
    )

    def exact_match(completions, answer, **_) -> list[float]:
        """rlexp's exact_match reward as a plain Python function."""
        return [
            float(task.extract_answer(c) == task.normalize_answer(a))
            for c, a in zip(completions, answer, strict=True)
        ]

    with tempfile.TemporaryDirectory() as tmp:
        # TRL builds its reference model from the policy's path, so the policy goes through disk.
        build_tiny_llama(tokenizer).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config = GRPOConfig(
            output_dir=os.path.join(tmp, "out"),
            # batch: 32 prompts x 16 = 512 completions per generation; one optimizer step over all
            # of them = per_device_train_batch_size 128 x gradient_accumulation_steps 4 (as
            # rlexp's micro_batch_size 128, minibatch = whole batch); steps_per_generation then
            # defaults to 4, so generation_batch_size = 512 and no extra "old log-prob" pass.
            per_device_train_batch_size=args.micro_batch,
            gradient_accumulation_steps=args.prompts * args.group // args.micro_batch,
            num_generations=args.group,
            num_iterations=1,  # μ = 1
            max_completion_length=args.new_tokens,
            generation_kwargs={"min_new_tokens": args.new_tokens},  # exactly 32 tokens
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            # loss: GRPO's clipped surrogate, per-sequence token mean (rlexp seq-mean-token-mean),
            # k3 KL to a reference model in the loss with β = 0.01 (conf/algorithm/grpo.yaml)
            loss_type="grpo",
            beta=0.01,
            epsilon=0.2,
            scale_rewards="group",
            learning_rate=2e-4,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            # fp32 on CPU with no gradient checkpointing (GRPOConfig defaults bf16=True and
            # gradient_checkpointing=True); no vLLM, dropout off (the model has none anyway)
            bf16=False,
            gradient_checkpointing=False,
            use_cpu=True,
            use_vllm=False,
            disable_dropout=True,
            # same prompts in the same order as rlexp; no logging, reporting or saving
            shuffle_dataset=False,
            max_steps=n_steps,
            seed=0,
            report_to="none",
            logging_strategy="no",
            save_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=tmp,
            reward_funcs=exact_match,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        if next(trainer.model.parameters()).dtype != torch.float32:
            raise RuntimeError("TRL: the policy is not float32")
        timer = _TrlTimer(after_step)
        trainer.remove_callback(PrinterCallback)  # it prints the end-of-training summary
        trainer.add_callback(timer.callback)
        timer.wrap(trainer)
        trainer.train()
        if timer.completion_lengths != {args.new_tokens}:
            raise RuntimeError(
                f"TRL: completion lengths {timer.completion_lengths}, expected {args.new_tokens} only"
            )
    return timer.steps[1:], trl.__version__


# --------------------------------------------------------------------------- memory (part 3)


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _proc_status(key: str) -> int:
    """A ``kB`` field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def memory_child(algorithm: str, args) -> None:
    """Fresh process: build, record the baseline, run ONE step, print JSON peaks; then one more
    step with per-phase peaks (``PhasePeaks``)."""
    if algorithm == "ppo":  # PPO's shape: one sample per prompt, the same 512 completions
        cfg = compose_cfg("ppo", args.prompts * args.group, 1, args.new_tokens, args.micro_batch)
    else:
        cfg = compose_cfg("grpo", args.prompts, args.group, args.new_tokens, args.micro_batch)
    runner = RlexpStep(cfg, build_char_tokenizer(), build_task("arithmetic"))
    baseline, baseline_hwm = _maxrss_bytes(), _proc_status("VmHWM")
    baseline_rss = _proc_status("VmRSS")
    runner.step()
    peak, peak_hwm = _maxrss_bytes(), _proc_status("VmHWM")
    fp32 = 4
    actor, ref = _n_params(runner.policy), _n_params(runner.ref_model)
    critic = _n_params(runner.critic) if runner.critic is not None else 0
    adamw = sum(
        t.numel() * t.element_size()
        for opt in (runner.optimizer, runner.critic_optimizer)
        if opt is not None
        for state in opt.state.values()
        for t in state.values()
        if torch.is_tensor(t) and t.dim() > 0
    )
    try:
        runner.phase = PhasePeaks()
        runner.step()
        phases = runner.phase.rise
    except (OSError, AttributeError) as err:  # not Linux/glibc, or clear_refs not writable
        phases = {"unavailable": str(err)}
    print(
        json.dumps(
            {
                "phases": phases,
                "baseline": baseline,
                "peak": peak,
                "baseline_rss": baseline_rss,  # current RSS at the baseline (<= its high-water)
                "hwm_delta": peak_hwm - baseline_hwm,  # cross-check from /proc/self/status
                "params": {"actor": actor, "reference": ref, "critic": critic},
                # analytic: parameters + gradients + AdamW (exp_avg, exp_avg_sq) for the trained
                # models, parameters only for the frozen reference
                "state": {
                    "actor": 4 * actor * fp32,
                    "reference": ref * fp32,
                    "critic": 4 * critic * fp32,
                },
                "measured_adamw_state": adamw,
            }
        )
    )


# A forked child's ru_maxrss starts at its PARENT's peak (Linux carries the pre-exec memory's
# high-water mark into the child's rusage), so a child of this big process would report our peak.
# Each child is therefore started through a small Python process, whose own peak is ~10 MiB.
_HOP = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def run_memory(args) -> dict[str, dict]:
    results = {}
    for algorithm in ("grpo", "ppo"):
        child = [sys.executable, __file__, "--mem-child", algorithm, *_shape_args(args)]
        out = subprocess.run(
            [sys.executable, "-c", _HOP, *child], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"memory child {algorithm} failed:\n{out.stderr[-3000:]}")
        results[algorithm] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def _shape_args(args) -> list[str]:
    return [
        f"--prompts={args.prompts}",
        f"--group={args.group}",
        f"--new-tokens={args.new_tokens}",
        f"--micro-batch={args.micro_batch}",
    ]


# --------------------------------------------------------------------------- printing


PHASES = [
    ("generation", "generation (sample / generate)"),
    ("logprob_passes", "log-prob passes (reference)"),
    ("update", "update (policy_update / 4 micro-batches + AdamW)"),
    ("rewards", "rewards: decode + score"),
    ("advantages", "advantages"),
]


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def print_rlexp(times: dict[str, list[float]], args) -> None:
    n = len(times["total"])
    print(f"\n[1] rlexp GRPO step: median seconds over {n} steps after 1 warm-up step")
    print(
        f"    {args.prompts} prompts x {args.group} samples = {args.prompts * args.group} "
        f"completions x {args.new_tokens} new tokens; μ=1, one optimizer step (minibatch = whole "
        f"batch) in {args.prompts * args.group // args.micro_batch} micro-batches of "
        f"{args.micro_batch}"
    )
    total = _median(times["total"])
    print(f"    {'phase':<50} | {'median s':>8} | {'share':>6} | {'min s':>7} | {'max s':>7}")
    print("    " + "-" * 88)
    for key, label in PHASES:
        xs = times[key]
        m = _median(xs)
        print(
            f"    {label:<50} | {m:>8.3f} | {m / total:>6.1%} | {min(xs):>7.3f} | {max(xs):>7.3f}"
        )
    print("    " + "-" * 88)
    ts = times["total"]
    print(f"    {'total step':<50} | {total:>8.3f} | {1:>6.0%} | {min(ts):>7.3f} | {max(ts):>7.3f}")
    tokens = args.prompts * args.group * args.new_tokens
    gen = _median(times["generation"])
    print(f"    generation throughput: {tokens / gen:,.0f} tokens/s ({tokens} tokens)")


def print_trl(trl_steps, rlexp_times, version: str, args) -> None:
    n = len(trl_steps)
    print(
        f"\n[2] TRL {version} GRPOTrainer vs rlexp, same model/prompts/batch: median seconds "
        f"over {n} steps each after 1 warm-up step each, steps interleaved"
    )
    print(
        f"    TRL: per_device_train_batch_size={args.micro_batch}, gradient_accumulation_steps="
        f"{args.prompts * args.group // args.micro_batch}, num_generations={args.group}, "
        f"max_completion_length={args.new_tokens} (+min_new_tokens), beta=0.01, num_iterations=1,"
        f" loss_type=grpo, fp32, no gradient checkpointing, no vLLM"
    )
    print(f"    {'phase':<40} | {'TRL s':>8} | {'rlexp s':>8} | {'TRL/rlexp':>9}")
    print("    " + "-" * 74)
    labels = {
        "generation": "generation",
        "logprob_passes": "log-prob passes (reference)",
        "update": "update (fwd/bwd x4 + optimizer)",
        "rewards": "rewards, advantages, bookkeeping",
    }
    for key, label in labels.items():
        t = _median([s[key] for s in trl_steps])
        r_xs = rlexp_times[key]
        if key == "rewards":
            r_xs = [
                a + b
                for a, b in zip(rlexp_times["rewards"], rlexp_times["advantages"], strict=True)
            ]
        r = _median(r_xs)
        print(f"    {label:<40} | {t:>8.3f} | {r:>8.3f} | {t / r:>8.2f}x")
    print("    " + "-" * 74)
    t = _median([s["total"] for s in trl_steps])
    r = _median(rlexp_times["total"])
    print(f"    {'total step':<40} | {t:>8.3f} | {r:>8.3f} | {t / r:>8.2f}x")
    verdict = "met" if t / r >= 2.5 else "NOT met"
    print(f"    rlexp is {t / r:.2f}x faster than TRL per step (target >= 2.5x: {verdict})")
    # The reference pass and the update are the same HF forward/backward arithmetic in both:
    # even a sampler that cost nothing could not make rlexp faster than this.
    fwd_bwd = _median(rlexp_times["logprob_passes"]) + _median(rlexp_times["update"])
    print(
        f"    ceiling with free generation and bookkeeping: TRL step / rlexp (reference + update)"
        f" = {t:.3f} / {fwd_bwd:.3f} = {t / fwd_bwd:.2f}x"
    )


def print_memory(mem: dict[str, dict], args) -> None:
    g, p = mem["grpo"], mem["ppo"]
    n = args.prompts * args.group
    print(
        f"\n[3] peak memory of ONE step ({n} completions x {args.new_tokens} tokens, μ=1, one "
        "optimizer step per model), each in a fresh subprocess"
    )
    print(
        "    GRPO: group-relative advantages, no critic. PPO: GAE, a critic from "
        "ValueModel.from_policy, critic_update. Both: a frozen reference."
    )
    print(f"    {'':<56} | {'GRPO':>9} | {'PPO':>9} | {'PPO-GRPO':>9}")
    rule = "    " + "-" * 92

    def row(label: str, a: float, b: float, digits: int = 1) -> None:
        cells = " | ".join(f"{x:>9.{digits}f}" for x in (a, b, b - a))
        print(f"    {label:<56} | {cells}")

    def mib(d: dict, key: str) -> float:
        return d[key] / MiB

    print(rule)
    row(
        "peak RSS above baseline, ru_maxrss (MiB)",
        mib(g, "peak") - mib(g, "baseline"),
        mib(p, "peak") - mib(p, "baseline"),
    )
    row("  cross-check: VmHWM rise over the step (MiB)", mib(g, "hwm_delta"), mib(p, "hwm_delta"))
    row(
        "baseline: ru_maxrss after imports + model build (MiB)",
        mib(g, "baseline"),
        mib(p, "baseline"),
    )
    row("peak RSS, absolute (MiB)", mib(g, "peak"), mib(p, "peak"))
    if "unavailable" in g["phases"]:
        print(f"    (per-phase peaks unavailable: {g['phases']['unavailable']})")
    else:
        print(rule)
        print(
            "    per phase (a second step, heap trimmed at each phase's start): peak RSS rise (MiB)"
        )
        names = list(dict.fromkeys([*p["phases"], *g["phases"]]))  # PPO has every phase
        for name in names:
            a, b = g["phases"].get(name, 0) / MiB, p["phases"].get(name, 0) / MiB
            row(f"  {name}", a, b)
    print(rule)
    print("    model state, analytic fp32 (MiB)")
    for key, what in (
        ("actor", "params + grads + AdamW"),
        ("reference", "params"),
        ("critic", "params + grads + AdamW"),
    ):
        row(f"  {key}: {what}", g["state"][key] / MiB, p["state"][key] / MiB, 2)
    row("  total", sum(g["state"].values()) / MiB, sum(p["state"].values()) / MiB, 2)
    row(
        "  (AdamW state measured after the step)",
        mib(g, "measured_adamw_state"),
        mib(p, "measured_adamw_state"),
        2,
    )
    for key in ("actor", "reference", "critic"):
        row(f"parameters: {key} (M)", g["params"][key] / 1e6, p["params"][key] / 1e6, 3)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the warm-up")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--micro-batch", type=int, default=128)
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--mem-child", choices=["grpo", "ppo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mem_child:
        memory_child(args.mem_child, args)
        return

    import transformers

    start = time.perf_counter()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"threads={torch.get_num_threads()}, cpus={os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    tokenizer = build_char_tokenizer()
    task = build_task("arithmetic")
    cfg = compose_cfg("grpo", args.prompts, args.group, args.new_tokens, args.micro_batch)
    runner = RlexpStep(cfg, tokenizer, task)
    print(
        f"model: tiny Llama, {_n_params(runner.policy) / 1e6:.3f} M parameters, "
        f"vocab {len(tokenizer)}; prompts: arithmetic task, "
        f"{encode_prompts(tokenizer, [task.train[0].prompt], torch.device('cpu'))[0].shape[1]} "
        "tokens each"
    )
    runner.step()  # warm-up

    trl_available = False
    if not args.skip_trl:
        try:
            import trl  # noqa: F401
        except ImportError:
            pass
        else:
            trl_available = True

    trl_steps, version, trl_error = None, "", ""
    if trl_available:
        try:
            trl_steps, version = run_trl(args, tokenizer, task, runner.timed_step)
        except Exception as err:  # an incompatible trl must not cost the other parts
            trl_error = f"{type(err).__name__}: {err}".splitlines()[0]
    while len(runner.times.get("total", [])) < args.repeats:
        runner.timed_step()

    print_rlexp(runner.times, args)
    if trl_steps is not None:
        print_trl(trl_steps, runner.times, version, args)
    elif trl_error:
        print(f"\n[2] TRL comparison failed: {trl_error}")
    elif args.skip_trl:
        print("\n[2] TRL comparison skipped (--skip-trl)")
    else:
        print(
            "\n[2] trl is not installed: TRL comparison skipped "
            '(install the bench extra: .venv/bin/pip install -e ".[bench]")'
        )
    if not args.skip_memory:
        print_memory(run_memory(args), args)
    print(
        f"\nbenchmark wall time: {time.perf_counter() - start:.0f} s "
        f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
