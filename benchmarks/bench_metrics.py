"""Timings for analysis.metrics on a realistic answer spread.

Run: .venv/bin/python benchmarks/bench_metrics.py [--problems 10000]
Targets (2 CPU cores): pass@K, K = 1..256, 10k problems x 256 samples < 1 s; exact maj@K,
K = 1, 2, 4, ..., 64, 10k problems x 64 samples < 10 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.metrics import maj_at_k, pass_at_k, pass_at_k_curve


def realistic_answers(
    rng: np.random.Generator, problems: int, n: int
) -> tuple[list[list[str | None]], list[str]]:
    """Answer lists [P][n] and golds [P]: one dominant answer (right on ~60% of problems), a
    Zipf-like tail of wrong answers, and a few unparsable (None) samples."""
    p_dom = rng.beta(3, 2, problems)  # mass of the dominant answer
    p_none = rng.uniform(0, 0.15, problems)
    u = rng.random((problems, n))
    tail = np.minimum(rng.zipf(1.6, (problems, n)), 60)  # wrong answers 1..60
    ids = np.where(u < p_none[:, None], -1, np.where(u < (p_none + p_dom)[:, None], 0, tail))
    dominant_right = rng.random(problems) < 0.6
    gold_id = np.where(dominant_right, 0, np.where(rng.random(problems) < 0.5, 1, 99))
    labels = np.array([f"a{i}" for i in range(100)] + [None], dtype=object)  # -1 -> None
    answers = labels[ids].tolist()
    return answers, [f"a{i}" for i in gold_id]


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label:<58s} {time.perf_counter() - start:7.3f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    p = args.problems

    n = np.full(p, 256)
    c = rng.binomial(256, rng.beta(0.5, 0.5, p))
    ks = np.arange(1, 257)
    timed(f"pass@K curve, K=1..256, {p} problems x 256", lambda: pass_at_k_curve(n, c, ks))
    timed(
        f"pass@K per problem [P, 256], {p} problems x 256",
        lambda: pass_at_k(n[:, None], c[:, None], ks[None, :]),
    )

    ks64 = [1, 2, 4, 8, 16, 32, 64]
    answers, gold = realistic_answers(rng, p, 64)
    res = timed(f"maj@K, K=1,2,4..64, {p} problems x 64", lambda: maj_at_k(answers, gold, ks64))
    print("  mean maj@K:", np.round(res.mean(axis=0), 4).tolist())

    answers, gold = realistic_answers(rng, p, 256)
    res = timed(f"maj@K, K=1..256, {p} problems x 256", lambda: maj_at_k(answers, gold, ks))
    print("  mean maj@K at K=1,16,256:", np.round(res.mean(axis=0)[[0, 15, 255]], 4).tolist())


if __name__ == "__main__":
    main()
