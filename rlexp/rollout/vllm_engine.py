"""``rollout.engine=vllm``: a colocated ``vllm.LLM`` in the trainer process.

The engine is built from the policy's *config* alone (``load_format="dummy"``) and then given
the policy's weights in memory through the worker's ``reload_weights`` (vLLM's in-place weight
reload, reached with ``LLM.collective_rpc``); the same call pushes the new weights after every
optimizer step, followed by a prefix-cache reset. A LoRA policy is pushed as merged weights
(``rlexp.models.lora.merged_weights``). The engine runs in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), as TRL's colocate mode does, so the weights never leave
the process and scripts need no ``__main__`` guard.

On a GPU the engine sleeps while the trainer computes log-probs and updates
(``rollout.vllm.sleep_level`` 1: weights offloaded to host memory, KV cache freed; 2: both
discarded) and wakes for the next generation: weights first, then the sync, then the KV cache.
vLLM cannot sleep on a CPU.

Sampling maps one to one: temperature, top_p, ``max_tokens = max_new_tokens``, the EOS ids as
stop tokens, and one seed per sequence drawn from the trainer's rollout generator (seeded per
rank, saved in checkpoints), so runs are reproducible and resume exactly. Behaviour log-probs are
vLLM's ``processed_logprobs``: the sampled token's log-prob under the distribution the engine
sampled from (temperature-scaled; with ``top_p < 1`` also nucleus-truncated, where the native
sampler reports the untruncated one).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from rlexp.models.lora import merged_weights
from rlexp.rollout.sampler import Samples
from rlexp.runtime.errors import ConfigError
from rlexp.runtime.sharding import model_class

INSTALL_HINT = 'pip install -e ".[vllm]" (on this CPU: make install-vllm)'
ENGINE_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
MEMORY_KEYS = (
    "rollout.vllm.gpu_memory_utilization, rollout.vllm.kv_cache_gib or rollout.vllm.max_model_len"
)


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def supported_architectures() -> set[str]:
    from vllm import ModelRegistry

    return set(ModelRegistry.get_supported_archs())


def check_architecture(architectures: list[str] | None, where: str) -> None:
    """One ConfigError when vLLM cannot load any of a model's ``architectures``."""
    known = supported_architectures()
    if not architectures or not set(architectures) & known:
        raise ConfigError(
            f"rollout.engine=vllm cannot load {where}: vLLM has no implementation of "
            f"{architectures or 'an unnamed architecture'}; use rollout.engine=native"
        )


def check_cpu_head_size(config, device: torch.device) -> None:
    """vLLM's CPU attention kernels exist for some head sizes only; say so before it starts
    (its own error comes at the first generation, deep in a kernel)."""
    if device.type != "cpu":
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    sizes = CPUAttentionBackend.get_supported_head_sizes()
    if head_dim not in sizes:
        raise ConfigError(
            f"rollout.engine=vllm on a CPU needs an attention head size in {sizes}; this model's "
            f"is {head_dim} (hidden_size / num_attention_heads); use rollout.engine=native"
        )


def resolve_sleep_level(level: int | None, device: torch.device) -> int:
    """``rollout.vllm.sleep_level``: null = 1 on a GPU, 0 (never sleep) on a CPU."""
    if level is None:
        return 1 if device.type == "cuda" else 0
    return int(level)


class VLLMEngine:
    """A ``vllm.LLM`` serving the policy; see the module docstring."""

    def __init__(self, policy: nn.Module, rollout_cfg, seed: int) -> None:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: weights stay here
        if not vllm_installed():
            raise ConfigError(f"rollout.engine=vllm needs vLLM: {INSTALL_HINT}")
        from vllm import LLM

        param = next(policy.parameters())
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        architectures = base.config.architectures or [model_class(base).__name__]
        check_architecture(architectures, model_class(base).__name__)
        check_cpu_head_size(base.config, param.device)
        v = rollout_cfg.vllm
        self.sleep_level = resolve_sleep_level(v.sleep_level, param.device)
        self.asleep = False
        self._config_dir = tempfile.TemporaryDirectory(prefix="rlexp-vllm-")
        config = copy.deepcopy(base.config)
        config.architectures = architectures
        config.save_pretrained(self._config_dir.name)  # the architecture only; no weights
        _drop_quantization(Path(self._config_dir.name) / "config.json")
        self._owns_process_group = not torch.distributed.is_initialized()  # vLLM starts one
        try:
            self.llm = LLM(
                model=self._config_dir.name,
                skip_tokenizer_init=True,  # token ids in, token ids out
                load_format="dummy",  # weights come from the policy, in memory
                dtype=ENGINE_DTYPES[param.dtype],
                seed=seed,
                gpu_memory_utilization=v.gpu_memory_utilization,
                kv_cache_memory_bytes=None
                if v.kv_cache_gib is None
                else int(v.kv_cache_gib * 2**30),
                max_model_len=v.max_model_len,
                enforce_eager=param.device.type == "cpu"
                if v.enforce_eager is None
                else v.enforce_eager,
                enable_prefix_caching=v.enable_prefix_caching,
                enable_sleep_mode=self.sleep_level > 0,
                logprobs_mode="processed_logprobs",
                generation_config="vllm",  # the checkpoint's defaults never override ours
                **_launcher_args(),
            )
        except (RuntimeError, ValueError) as err:
            raise _engine_error(err) from err
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.load_weights(policy)

    def generate(
        self,
        prompt_ids: Tensor,
        prompt_mask: Tensor,
        generator: torch.Generator,
        *,
        max_new_tokens: int,
        eos_token_id: int | list[int],
        pad_token_id: int,
        temperature: float,
        top_p: float,
        greedy: bool = False,
    ) -> Samples:
        """Greedy decoding is temperature 0 (no random numbers drawn); its log-probs are at
        temperature 1, as the native sampler reports them."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.wake()
        prompts = [
            ids[m.bool()].tolist()
            for ids, m in zip(prompt_ids.cpu(), prompt_mask.cpu(), strict=True)
        ]
        longest = max(len(p) for p in prompts) + max_new_tokens
        if longest > self.max_model_len:
            raise ConfigError(
                f"a prompt plus rollout.max_new_tokens={max_new_tokens} needs {longest} positions, "
                f"above the engine's max_model_len={self.max_model_len}; raise "
                "rollout.vllm.max_model_len or lower rollout.max_new_tokens"
            )
        eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        seeds = (
            [None] * len(prompts)
            if greedy
            else torch.randint(
                2**31 - 1, (len(prompts),), generator=generator, device=generator.device
            ).tolist()
        )
        params = [
            SamplingParams(
                temperature=0.0 if greedy else temperature,
                top_p=1.0 if greedy else top_p,
                max_tokens=max_new_tokens,
                seed=s,
                logprobs=0,  # the sampled token's own log-prob
                stop_token_ids=eos,
                ignore_eos=not eos,  # no stop token given: run to max_new_tokens
                detokenize=False,
            )
            for s in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        tokens = [list(o.outputs[0].token_ids) for o in outputs]
        logps = [
            [lp[t].logprob for lp, t in zip(o.outputs[0].logprobs, ids, strict=True)]
            for o, ids in zip(outputs, tokens, strict=True)
        ]
        return padded_samples(tokens, logps, eos, pad_token_id, prompt_ids.device)

    def load_weights(self, policy: nn.Module) -> None:
        """Push the policy's current weights into the engine (in memory) and forget cached
        prefixes, which the old weights computed. A sleeping engine wakes its weights first."""
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": merged_weights(policy)}
        )
        self.llm.reset_prefix_cache()
        if self.asleep:  # the KV cache only now: it never waits on the device during the sync
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def release(self) -> None:
        """Sleep through the update (GPU, ``sleep_level`` > 0): frees the KV cache (and at level
        2 the weights), so policy, reference, optimizer and engine share one device."""
        if self.sleep_level > 0 and not self.asleep:
            self.llm.sleep(level=self.sleep_level)
            self.asleep = True

    def close(self) -> None:
        """Free the engine and the single-process group vLLM set up. Under torchrun the engine
        lives in the trainer's process group, which vLLM's shutdown would destroy: it is left
        to the end of the process."""
        if not self._owns_process_group:
            return
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        del self.llm
        cleanup_dist_env_and_memory()
        self._config_dir.cleanup()


def _launcher_args() -> dict:
    """Under torchrun, one engine per rank on the rank's own device, inside the trainer's
    process group (vLLM's ``external_launcher``: RANK / LOCAL_RANK from the environment)."""
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        return {"distributed_executor_backend": "external_launcher"}
    return {}


def padded_samples(
    tokens: list[list[int]],
    logps: list[list[float]],
    eos: list[int],
    pad_token_id: int,
    device: torch.device,
) -> Samples:
    """Per-sequence token ids and log-probs (each ending at its first EOS, or truncated) as
    right-padded ``Samples``: mask 1 on real tokens including the EOS; ``truncated`` when a
    sequence does not end with an EOS."""
    width = max(1, max(len(t) for t in tokens))
    ids = torch.full((len(tokens), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(tokens), width, dtype=torch.long)
    logp = torch.zeros(len(tokens), width)
    for i, (t, lp) in enumerate(zip(tokens, logps, strict=True)):
        ids[i, : len(t)], mask[i, : len(t)], logp[i, : len(lp)] = (
            torch.tensor(t),
            1,
            torch.tensor(lp),
        )
    truncated = torch.tensor([not t or t[-1] not in eos for t in tokens])
    return Samples(ids.to(device), mask.to(device), logp.to(device), truncated.to(device))


def _drop_quantization(config_json: Path) -> None:
    """The engine holds the trainer's dense weights, whatever the checkpoint was quantized as."""
    config = json.loads(config_json.read_text())
    if config.pop("quantization_config", None) is not None:
        config_json.write_text(json.dumps(config, indent=2))


def _engine_error(err: Exception) -> Exception:
    """vLLM's start-up failures as one error that names the key to change."""
    text = str(err)
    if any(k in text.lower() for k in ("memory", "kv cache", "cache blocks", "max_model_len")):
        return ConfigError(f"vLLM could not start: {text.splitlines()[0]} — change {MEMORY_KEYS}")
    return err
