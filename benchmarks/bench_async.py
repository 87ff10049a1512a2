"""rollout.mode=async against the synchronous loop with the same data (rollout.lag=1), both with
the vLLM engine: per-step wall time, the generation's own time and how much of it the update hid.

Run (the machine idle; `make install-vllm` first):
    .venv/bin/python benchmarks/bench_async.py [--steps 12] [overrides ...]
e.g. on a GPU with a real model:
    .venv/bin/python benchmarks/bench_async.py model=hf model.path=Qwen/Qwen2.5-0.5B-Instruct \\
        task=gsm8k task.dataset_name=openai/gsm8k task.dataset_config=main rollout.max_new_tokens=512
The default is the embedded demo (a 2-layer model on CPU), where the engine's process and the
trainer share two cores: a floor, not the GPU speed-up. Medians over the steps after the first two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

DEMO = [
    "experiment=demo",
    "rollout.engine=vllm",
    "rollout.lag=1",
    "logger=none",
    "eval_every=1000",
    "save_every=1000",
    # a fixed KV cache: on a CPU vLLM counts the process's whole RSS against its share
    "rollout.vllm.gpu_memory_utilization=0.2",
    "rollout.vllm.kv_cache_gib=0.1",
]
KEYS = ("time/step", "time/generation", "time/update", "time/generation_wait")


def timings(out: Path, overrides: list[str]) -> dict[str, float]:
    import rlexp

    cfg = rlexp.compose(overrides, output_dir=out)
    rlexp.run(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time/step" in r][2:]  # the first steps warm the engine up
    return {k: statistics.median(r[k] for r in steps) for k in KEYS if k in steps[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    common = [*DEMO, f"steps={args.steps}", *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        sync = timings(Path(tmp, "sync"), common)
        overlap = timings(Path(tmp, "async"), [*common, "rollout.mode=async"])
    print("| mode | " + " | ".join(f"{k} (s)" for k in KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, t in (("sync (lag 1)", sync), ("async", overlap)):
        print(f"| {name} | " + " | ".join(f"{t[k]:.3f}" if k in t else "—" for k in KEYS) + " |")
    hidden = overlap["time/generation"] - overlap["time/generation_wait"]
    print(
        f"step time async / sync: {overlap['time/step'] / sync['time/step']:.2f}; "
        f"generation hidden behind the update: {hidden:.3f} s of {overlap['time/generation']:.3f} s"
    )


if __name__ == "__main__":  # vLLM's engine starts a process
    main()
