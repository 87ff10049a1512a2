"""The side-by-side table of algorithms in docs/algorithms.md, generated from the composed
configs (``python -m rlexp.algorithm_table > docs/algorithms.md``); a test keeps them in sync."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rlexp.config import register_configs

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
HEADER = """# Algorithms

Every online algorithm is one YAML file in `conf/algorithm/` over the same training loop; this
table is generated from the composed configs (`python -m rlexp.algorithm_table > docs/algorithms.md`)
and a test fails when it drifts. Config keys: `advantage=` (group), `algorithm.policy_loss`,
`algorithm.clip_low/clip_high`, `algorithm.loss_agg`, `algorithm.kl.{coef,estimator,placement}`,
`algorithm.critic.enabled`, `algorithm.dynamic_sampling`, `algorithm.overlong.enabled`.

| algorithm | advantage | ratio / clip | loss aggregation | KL | critic | extras |
|---|---|---|---|---|---|---|
"""


def _advantage(adv) -> str:
    params = ", ".join(f"{k}={v}" for k, v in adv.items() if k != "name")
    return f"`{adv.name}`" + (f" ({params})" if params else "")


def row(name: str) -> str:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"algorithm={name}", "output_dir=."])
    a = cfg.algorithm
    clip = f"`{a.policy_loss}` [1-{a.clip_low}, 1+{a.clip_high}]" + (
        f", dual {a.dual_clip}" if a.dual_clip else ""
    )
    agg = f"`{a.loss_agg}`" + (f" / {a.norm_len}" if a.norm_len else "")
    kl = f"{a.kl.estimator} in {a.kl.placement}, β={a.kl.coef}" if a.kl.coef > 0 else "none"
    extras = [f"G={a.group_size}", f"μ={a.epochs}"]
    if a.dynamic_sampling:
        extras.append(f"dynamic sampling (≤{a.max_sampling_rounds} draws)")
    if a.overlong.enabled:
        extras.append(f"overlong shaping (L_cache={a.overlong.cache_len})")
    critic = "yes" if a.critic.enabled else "no"
    return f"| `{name}` | {_advantage(cfg.advantage)} | {clip} | {agg} | {kl} | {critic} | {', '.join(extras)} |"


def table() -> str:
    names = sorted(p.stem for p in (CONF_DIR / "algorithm").glob("*.yaml") if p.stem != "sft")
    return HEADER + "\n".join(row(n) for n in names) + "\n"


if __name__ == "__main__":
    print(table(), end="")
