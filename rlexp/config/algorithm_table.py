"""The side-by-side table of algorithms in docs/algorithms.md, generated from the composed
configs (``python -m rlexp.config.algorithm_table > docs/algorithms.md``); a test keeps them in sync."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rlexp.config import register_configs
from rlexp.runtime.paths import CONF_DIR

HEADER = """# Algorithms

Every online algorithm is one YAML file in `conf/algorithm/` over the same training loop; this
table is generated from the composed configs (`python -m rlexp.config.algorithm_table > docs/algorithms.md`)
and a test fails when it drifts. Config keys: `advantage=` (group), `algorithm.policy_loss`,
`algorithm.clip_low/clip_high`, `algorithm.loss_agg`, `algorithm.kl.{coef,estimator,placement}`,
`algorithm.critic.enabled`, `algorithm.dynamic_sampling`, `algorithm.overlong.enabled`.

| algorithm | advantage | ratio / clip | loss aggregation | KL | critic | extras |
|---|---|---|---|---|---|---|
"""
OFFLINE_HEADER = """
## Offline methods

Sampled once from the fixed SFT base before training (theory.md §5), then `steps` optimizer steps
with the same held-out evaluation as the online runs. Config keys: `algorithm.dpo.*` (`beta`,
`kind`, `pairs_file`, `k`, `n_prompts`, `pairs_per_prompt`, `batch_size`, `warmup_steps`),
`algorithm.rft.*` (`k`, `n_prompts`, `batch_size`, `warmup_steps`), `algorithm.lr`; the sampling
follows `rollout.*`.

| algorithm | data | loss | batch |
|---|---|---|---|
"""


def _advantage(adv) -> str:
    params = ", ".join(f"{k}={v}" for k, v in adv.items() if k != "name")
    return f"`{adv.name}`" + (f" ({params})" if params else "")


def _compose(name: str):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"algorithm={name}", "output_dir=."])


def _clip_range(a) -> str:
    """Where each loss applies ε_low / ε_high: ρ's range, CISPO's weight cap, GMPO's log ρ."""
    if a.policy_loss == "cispo":
        return f"weight sg[clip(ρ, {max(0.0, 1 - a.clip_low):g}, 1+{a.clip_high})]"
    if a.policy_loss == "gmpo":
        return f"log ρ in [-{a.clip_low}, {a.clip_high}]"
    return f"[1-{a.clip_low}, 1+{a.clip_high}]"


def row(name: str, cfg=None) -> str:
    """One online algorithm: the pieces of the RL loop it sets."""
    cfg = cfg if cfg is not None else _compose(name)
    a = cfg.algorithm
    clip = f"`{a.policy_loss}` {_clip_range(a)}" + (f", dual {a.dual_clip}" if a.dual_clip else "")
    agg = f"`{a.loss_agg}`" + (f" / {a.norm_len}" if a.norm_len else "")
    kl = f"{a.kl.estimator} in {a.kl.placement}, β={a.kl.coef}" if a.kl.coef > 0 else "none"
    extras = [f"G={a.group_size}", f"μ={a.epochs}"]
    if a.dynamic_sampling:
        extras.append(f"dynamic sampling (≤{a.max_sampling_rounds} draws)")
    if a.overlong.enabled:
        extras.append(f"overlong shaping (L_cache={a.overlong.cache_len})")
    critic = "yes" if a.critic.enabled else "no"
    return f"| `{name}` | {_advantage(cfg.advantage)} | {clip} | {agg} | {kl} | {critic} | {', '.join(extras)} |"


def offline_row(name: str, cfg=None) -> str:
    """One offline method (theory.md §5): its data, its loss and its batch."""
    cfg = cfg if cfg is not None else _compose(name)
    a = cfg.algorithm
    if a.trainer == "dpo":
        d = a.dpo
        data = (
            f"k={d.k} samples × {d.n_prompts} prompts → ≤{d.pairs_per_prompt} (correct, incorrect) "
            "pair(s) per prompt, or `algorithm.dpo.pairs_file`"
        )
        loss = f"`{d.kind}`, β={d.beta}, reference = the SFT base"
        batch, warmup = f"{d.batch_size} pairs", d.warmup_steps
    else:
        r = a.rft
        data = f"k={r.k} samples × {r.n_prompts} prompts → the correct ones, deduplicated"
        loss, batch = "SFT cross-entropy (`rlexp.trainers.sft`)", f"{r.batch_size} completions"
        warmup = r.warmup_steps
    return f"| `{name}` | {data} | {loss} | {batch}, lr={a.lr}, warm-up {warmup} steps |"


def table() -> str:
    names = sorted(p.stem for p in (CONF_DIR / "algorithm").glob("*.yaml") if p.stem != "sft")
    cfgs = {n: _compose(n) for n in names}
    online = [row(n, c) for n, c in cfgs.items() if c.algorithm.trainer == "rl"]
    offline = [offline_row(n, c) for n, c in cfgs.items() if c.algorithm.trainer != "rl"]
    return HEADER + "\n".join(online) + "\n" + OFFLINE_HEADER + "\n".join(offline) + "\n"


if __name__ == "__main__":
    print(table(), end="")
