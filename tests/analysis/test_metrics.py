"""Exact Pass@K / Maj@K against hand values and independent slow oracles (theory.md §6)."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from analysis.metrics import (
    bootstrap_ci,
    bootstrap_ci_seeds,
    maj_at_k,
    maj_at_k_from_counts,
    pass_at_k,
    pass_at_k_curve,
    per_problem_table,
    summarize,
)


# ------------------------------------------------------------------------------------ oracles
def vote_score(drawn, gold) -> float:
    """Majority vote of one draw: 1/(number tied) if gold is among the top, Nones never win."""
    counts = Counter(a for a in drawn if a is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    winners = [a for a, v in counts.items() if v == top]
    return 1.0 / len(winners) if gold in winners else 0.0


def brute_maj(answers, gold, k) -> float:
    """Average over every k-subset of the samples."""
    subsets = list(itertools.combinations(answers, k))
    return sum(vote_score(s, gold) for s in subsets) / len(subsets)


def enumerate_maj(gold_count, wrong, nones, k) -> Fraction:
    """Exact rational Maj@k by enumerating the drawn count vectors (multivariate hypergeometric)."""
    sizes = [gold_count, *wrong]
    total = Fraction(0)
    for draw in itertools.product(*(range(min(s, k) + 1) for s in sizes)):
        rest = k - sum(draw)
        if rest < 0 or rest > nones:
            continue
        ways = math.comb(nones, rest) * math.prod(
            math.comb(s, t) for s, t in zip(sizes, draw, strict=True)
        )
        top = max(draw)
        if draw[0] == top > 0:
            total += Fraction(ways, sum(t == top for t in draw))
    return total / math.comb(gold_count + sum(wrong) + nones, k)


def random_problem(rng: random.Random, n: int, values: str = "abcd", p_none: float = 0.2):
    return [None if rng.random() < p_none else rng.choice(values) for _ in range(n)]


# ------------------------------------------------------------------------------------ Pass@K
def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4, abs=1e-15)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-15)
    assert pass_at_k(5, 4, 2) == 1.0  # n - c < k
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(7, 7, 7) == 1.0
    assert isinstance(pass_at_k(5, 2, 1), float)


def test_pass_at_k_matches_comb():
    rng = random.Random(0)
    cases = [(256, rng.randint(0, 256), rng.randint(1, 256)) for _ in range(300)]
    for _ in range(300):
        n = rng.randint(1, 64)
        cases.append((n, rng.randint(0, n), rng.randint(1, n)))
    n, c, k = (np.array(v) for v in zip(*cases, strict=True))
    exact = [1 - Fraction(math.comb(a - b, m), math.comb(a, m)) for a, b, m in cases]
    np.testing.assert_allclose(pass_at_k(n, c, k), [float(e) for e in exact], rtol=0, atol=1e-13)
    for (a, b, m), e in zip(cases[:50], exact[:50], strict=True):
        assert pass_at_k(a, b, m) == pytest.approx(float(e), abs=1e-13)


def test_pass_at_k_broadcasts_and_curve():
    n, c, ks = np.array([10, 20, 20]), np.array([3, 0, 20]), np.arange(1, 11)
    grid = pass_at_k(n[:, None], c[:, None], ks[None, :])
    assert grid.shape == (3, 10)
    for i, j in itertools.product(range(3), range(10)):
        assert grid[i, j] == pass_at_k(int(n[i]), int(c[i]), int(ks[j]))
    np.testing.assert_allclose(pass_at_k_curve(n, c, ks), grid.mean(axis=0))
    assert np.all(np.diff(grid, axis=1) >= 0)


@pytest.mark.parametrize("n, c, k", [(4, 2, 5), (4, 5, 1), (4, 2, 0), (4, -1, 1)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# ------------------------------------------------------------------------------------ Maj@K
def test_maj_at_k_hand_values():
    aab = ["a", "a", "b"]
    assert maj_at_k(aab, "a", 1) == pytest.approx(2 / 3)
    assert maj_at_k(aab, "a", 2) == pytest.approx((1 + 0.5 + 0.5) / 3)  # {a,a}, {a,b}, {a,b}
    assert maj_at_k(aab, "a", 3) == pytest.approx(1.0)
    assert maj_at_k(aab, "b", 2) == pytest.approx(1 / 3)
    assert maj_at_k(["a", "b", "c"], "a", 3) == pytest.approx(1 / 3)  # three-way tie
    assert maj_at_k(["b", "b", "a"], "a", 3) == 0.0
    assert maj_at_k(["a", None, None], "a", 2) == pytest.approx(2 / 3)  # {N,N} scores 0
    assert maj_at_k(["a", None, None, None], "a", 4) == 1.0  # Nones never win
    assert maj_at_k([None, None], "a", 1) == 0.0
    assert maj_at_k(["b", "c"], "a", 2) == 0.0  # gold never sampled
    assert isinstance(maj_at_k(aab, "a", 1), float)


def test_maj_at_k_matches_brute_force():
    rng = random.Random(1)
    problems = [random_problem(rng, rng.randint(1, 10)) for _ in range(100)]
    problems += [random_problem(rng, 10, "abcdefghij", 0.1) for _ in range(20)]  # long tails
    golds = [rng.choice("abc") for _ in problems]
    for i, (answers, gold) in enumerate(zip(problems, golds, strict=True)):
        ks = list(range(1, len(answers) + 1))
        want = [brute_maj(answers, gold, k) for k in ks]
        np.testing.assert_allclose(maj_at_k(answers, gold, ks), want, rtol=0, atol=1e-13)
        for k in ks if i >= 100 else ():  # max(ks) sets the truncation: each k on its own too
            assert maj_at_k(answers, gold, k) == pytest.approx(want[k - 1], abs=1e-13)
    seven = [p for p in problems if len(p) >= 7]  # batch form agrees with single problems
    batch = maj_at_k(seven, [golds[problems.index(p)] for p in seven], [1, 4, 7])
    single = [maj_at_k(p, golds[problems.index(p)], [1, 4, 7]) for p in seven]
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "gold, wrong, nones, ks",
    [
        (90, [70, 50, 30], 16, [1, 6, 15, 24]),
        (40, [38, 12, 6, 3], 1, [2, 11, 20]),
        (30, [28, 25], 173, [64, 128, 250]),  # n = 256, large k
    ],
)
def test_maj_at_k_exact_against_count_enumeration(gold, wrong, nones, ks):
    got = maj_at_k_from_counts(gold, wrong, nones, ks)
    want = [float(enumerate_maj(gold, wrong, nones, k)) for k in ks]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_maj_at_k_large_k_n256_against_leave_out():
    """k = n - 1 and n - 2: enumerate which (kinds of) samples are left out."""
    rng = np.random.default_rng(2)
    ids = rng.choice([0, 1, 2, 3, 4, 5, -1], size=256, p=[0.3, 0.3, 0.15, 0.1, 0.05, 0.05, 0.05])
    answers = [None if i < 0 else f"x{i}" for i in ids]
    counts, n = Counter(answers), len(answers)

    def without(*left_out):
        rest = counts.copy()
        rest.subtract(left_out)
        return vote_score(list(rest.elements()), "x1")

    one = sum(m * without(a) for a, m in counts.items()) / n
    two = sum(
        (math.comb(counts[a], 2) if a == b else counts[a] * counts[b]) * without(a, b)
        for a, b in itertools.combinations_with_replacement(counts, 2)
    ) / math.comb(n, 2)
    got = maj_at_k(answers, "x1", [n - 2, n - 1, n])
    np.testing.assert_allclose(got, [two, one, vote_score(answers, "x1")], rtol=0, atol=1e-12)


def test_maj_at_k_matches_monte_carlo_n64():
    rng = np.random.default_rng(3)
    draws = 40_000
    for p_top in (0.2, 0.45):
        p = np.array([p_top, p_top * 0.8, 0.1, 0.1, 0.05, 0.05])
        p = np.append(p, max(0.0, 1 - p.sum()))
        ids = rng.choice(len(p), size=64, p=p / p.sum())
        ids[ids == len(p) - 1] = -1  # the last category is "no answer"
        answers = [None if i < 0 else str(i) for i in ids]
        for k in (8, 16):
            exact = maj_at_k(answers, "0", k)
            subsets = np.argsort(rng.random((draws, 64)), axis=1)[:, :k]
            drawn = ids[subsets]
            counts = np.stack([(drawn == v).sum(axis=1) for v in range(len(p) - 1)], axis=1)
            top = counts.max(axis=1, keepdims=True)
            winners = (counts == top) & (top > 0)
            score = np.where(winners[:, 0], 1.0 / np.maximum(winners.sum(axis=1), 1), 0.0)
            se = score.std() / math.sqrt(draws)
            assert abs(score.mean() - exact) < 4.5 * se + 1e-9


def test_maj_at_n_is_full_vote_and_maj_at_1_is_accuracy():
    rng = random.Random(4)
    problems = [random_problem(rng, 40, "abcdef", 0.1) for _ in range(20)]
    golds = [rng.choice("ab") for _ in problems]
    res = maj_at_k(problems, golds, [1, 40])
    assert res.shape == (20, 2)
    for (maj1, maj_n), answers, gold in zip(res, problems, golds, strict=True):
        c = sum(a == gold for a in answers)
        assert maj1 == pytest.approx(c / 40, abs=1e-15)
        assert maj1 == pytest.approx(pass_at_k(40, c, 1), abs=1e-15)
        assert maj_n == pytest.approx(vote_score(answers, gold), abs=1e-13)


def test_maj_at_k_count_forms_and_errors():
    ragged = maj_at_k_from_counts([3, 1], [[2, 1], [4]], [0, 2], [1, 2, 6])
    padded = maj_at_k_from_counts(np.array([3, 1]), np.array([[2, 1], [4, 0]]), [0, 2], [1, 2, 6])
    np.testing.assert_array_equal(ragged, padded)
    assert ragged.shape == (2, 3)
    assert maj_at_k_from_counts(3, [2, 1], 0, 6) == ragged[0, 2]
    with pytest.raises(ValueError):
        maj_at_k(["a", "b"], "a", 3)
    with pytest.raises(ValueError):
        maj_at_k_from_counts(1, [1], 0, [1, 0])


# ------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_ci_contains_mean_and_narrows():
    rng = np.random.default_rng(5)
    small, large = rng.random(100), rng.random(10_000)
    mean, low, high = bootstrap_ci(small, n_boot=500)
    assert low < mean < high and mean == pytest.approx(small.mean())
    _, low2, high2 = bootstrap_ci(large, n_boot=500)
    assert high2 - low2 < (high - low) / 4
    assert bootstrap_ci(small, n_boot=500) == (mean, low, high)  # seeded
    m, lo, hi = bootstrap_ci(rng.random((3, 50)), n_boot=200, axis=1)
    assert m.shape == lo.shape == hi.shape == (3,) and np.all((lo < m) & (m < hi))


def test_bootstrap_ci_seeds():
    rng = np.random.default_rng(6)
    seeds = [rng.random((200, 2)) + shift for shift in (0.0, 0.1, 0.2)]
    mean, low, high = bootstrap_ci_seeds(seeds, n_boot=400)
    assert mean.shape == (2,)
    np.testing.assert_allclose(mean, np.mean([s.mean(axis=0) for s in seeds], axis=0))
    assert np.all((low < mean) & (mean < high))
    _, low1, high1 = bootstrap_ci(np.concatenate(seeds), n_boot=400)
    assert np.all(high - low > high1 - low1)  # seed-to-seed spread widens the interval


# ------------------------------------------------------------------------------------ tables
def test_per_problem_table_and_summarize():
    answers = {
        "p1": ["4", "4", "5", None, "4", "6"],
        "p2": ["x", float("nan"), "y", "y", "x", "x"],
        "p3": [None] * 6,
    }
    gold = {"p1": "4", "p2": "y", "p3": "1"}
    rows = [
        (pid, i, a, a == gold[pid], gold[pid])
        for pid, ans in answers.items()
        for i, a in enumerate(ans)
    ]
    df = pd.DataFrame(rows, columns=["problem_id", "sample_idx", "answer", "correct", "gold"])
    table = per_problem_table(df.sample(frac=1.0, random_state=0), [1, 3, 6])
    assert list(table["problem_id"]) == ["p1", "p2", "p3"]
    assert list(table.columns[3:]) == ["pass@1", "pass@3", "pass@6", "maj@1", "maj@3", "maj@6"]
    for _, row in table.iterrows():
        ans = [None if isinstance(a, float) else a for a in answers[row["problem_id"]]]
        c = sum(a == gold[row["problem_id"]] for a in ans)
        assert (row["n"], row["c"]) == (6, c)
        for k in (1, 3, 6):
            assert row[f"pass@{k}"] == pytest.approx(pass_at_k(6, c, k))
            assert row[f"maj@{k}"] == pytest.approx(brute_maj(ans, gold[row["problem_id"]], k))
    summary = summarize(table, [1, 3, 6], n_boot=200)
    assert list(summary.columns) == [
        "K", "pass@K", "pass@K_low", "pass@K_high", "maj@K", "maj@K_low", "maj@K_high"
    ]  # fmt: skip
    np.testing.assert_allclose(summary["maj@K"], table[["maj@1", "maj@3", "maj@6"]].mean())
    assert np.all(summary["pass@K_low"] <= summary["pass@K"])
    two_seeds = pd.concat([table.assign(seed=0), table.assign(seed=1)])
    by_seed = summarize(two_seeds, [1, 3, 6], n_boot=200, seed_column="seed")
    np.testing.assert_allclose(by_seed["maj@K"], summary["maj@K"])
    with pytest.raises(ValueError):
        per_problem_table(df.drop(columns="gold"), [1])
