"""Timings for analysis.metrics on a realistic answer spread.

Run: .venv/bin/python benchmarks/bench_metrics.py [--problems 10000]
Targets (2 CPU cores): pass@K, K = 1..256, 10k problems x 256 samples < 1 s; exact maj@K,
K = 1, 2, 4, ..., 64, 10k problems x 64 samples < 10 s.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from analysis.metrics import maj_at_k, maj_at_k_from_counts, pass_at_k, pass_at_k_curve


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


def answer_counts(answers, gold) -> tuple[list[int], list[list[int]], list[int]]:
    """Gold, wrong-answer and None counts per problem (the input of maj_at_k_from_counts)."""
    g, wrong, u = [], [], []
    for ans, gd in zip(answers, gold, strict=True):
        counts = Counter(ans)
        u.append(counts.pop(None, 0))
        g.append(counts.pop(gd, 0))
        wrong.append(list(counts.values()))
    return g, wrong, u


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

    ks64 = np.array([1, 2, 4, 8, 16, 32, 64])
    for n_samples, ks_maj, name in ((64, ks64, "K=1,2,4..64"), (256, ks, "K=1..256")):
        answers, gold = realistic_answers(rng, p, n_samples)
        label = f"maj@K, {name}, {p} problems x {n_samples}, from strings"
        res = timed(label, lambda a=answers, g=gold, k=ks_maj: maj_at_k(a, g, k))
        counts = answer_counts(answers, gold)
        timed(
            "  of which the exact core, maj_at_k_from_counts",
            lambda c=counts, k=ks_maj: maj_at_k_from_counts(*c, k),
        )
        shown = np.isin(ks_maj, [1, 16, n_samples])
        print("  mean maj@K at K = 1, 16, n:", np.round(res.mean(axis=0)[shown], 4).tolist())
        print("  mean pass@1 (= maj@1):", round(float(np.mean(counts[0]) / n_samples), 4))


if __name__ == "__main__":
    main()
