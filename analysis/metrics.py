"""Pass@K and Maj@K from sampled answers, with bootstrap confidence intervals (theory.md §6).

Pure numpy/pandas, no I/O. Shapes: P problems, n samples per problem, ks the K values asked for.

Maj@K is exact. For a problem, only the counts matter: g samples give the gold answer, w_i give
the i-th distinct wrong answer, u have no answer (None). A uniform k-subset draws the counts from
a multivariate hypergeometric law, so with j gold draws and d = k - j other draws,

    Maj@k = sum_{j>=1} C(g, j) N_j(k - j) / C(n, k),
    N_j(d) = int_0^1 [x^d] (1 + x)^u prod_i (sum_{t<j} C(w_i, t) x^t + y C(w_i, j) x^j) dy.

The y-integral gives the tie rule: s - 1 wrong answers tied with gold contribute y^(s-1), and
int_0^1 y^(s-1) dy = 1/s (y is gold's random tie-break priority). Every term is positive, so
float64 keeps ~1e-15 relative accuracy with no cancellation. One pass gives every k <= max(ks).

  - j > K/2, or only one wrong answer with count >= j: closed form, one contender against a
    binomial background (`_one_contender`), O(K^2) per problem for all k at once.
  - j = 1 with several wrong answers: elementary symmetric polynomials, int y^d dy = 1/(d+1).
  - 2 <= j <= min(w_(2), K/2): product over the wrong answers with count >= j, the others merged
    into a binomial; y integrated by Gauss-Legendre with deg_y/2 + 1 nodes (exact for a
    polynomial of that degree). Realistic spreads have a small second-largest count w_(2), so
    this branch is cheap.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

MAX_N = 1024  # C(1024, 512) ~ 4.5e306: the largest n whose subset counts fit in float64
_CHUNK = 512  # problems per block, keeps the [block, K] work arrays cache-sized
_QUAD_ELEMS = 1 << 22  # cap on rows x nodes x degree in the multi-contender product

Answers = Sequence[str | None]
CI = tuple[float, float, float] | tuple[np.ndarray, np.ndarray, np.ndarray]  # mean, low, high


# ------------------------------------------------------------------------------------ helpers
def _as_int(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x)
    ai = a.astype(np.int64)
    if not np.array_equal(a, ai):
        raise ValueError(f"{name} must hold integers, got {x!r}")
    return ai


def _parse_ks(k: ArrayLike) -> tuple[np.ndarray, bool]:
    """(ks as a 1-D int array, whether k was a scalar)."""
    ks = _as_int(k, "k")
    if ks.ndim > 1 or ks.size == 0:
        raise ValueError("k must be an int or a non-empty 1-D sequence of ints")
    if np.any(ks < 1):
        raise ValueError(f"k must be >= 1, got {k!r}")
    return np.atleast_1d(ks), ks.ndim == 0


@lru_cache(maxsize=4)
def _binom_table(size: int) -> np.ndarray:
    """Read-only [size + 1, size + 1] table of C(m, t); exact integers, rounded once to float64."""
    rows, row = [], [1]
    for m in range(size + 1):
        rows.append(row)
        row = [1] + [row[i] + row[i + 1] for i in range(m)] + [1]
    table = np.zeros((size + 1, size + 1))
    for m, r in enumerate(rows):
        table[m, : m + 1] = np.array(r, dtype=np.float64)
    table.flags.writeable = False
    return table


def _binom(nmax: int) -> np.ndarray:
    """A C(m, t) table covering m, t <= nmax (sizes rounded up so the cache is reused)."""
    if nmax > MAX_N:
        raise ValueError(f"n = {nmax} > {MAX_N}: subset counts overflow float64")
    return _binom_table(max(64, 1 << (max(nmax, 1) - 1).bit_length()))


# ------------------------------------------------------------------------------------ Pass@K
def _survival_table(n: np.ndarray, c: np.ndarray, kmax: int) -> np.ndarray:
    """[U, kmax + 1] table of C(n - c, k) / C(n, k) = prod_{i<k} (n - c - i) / (n - i)."""
    i = np.arange(kmax)
    ratio = np.maximum(n[:, None] - c[:, None] - i, 0) / np.maximum(n[:, None] - i, 1)
    table = np.ones((len(n), kmax + 1))
    np.cumprod(ratio, axis=1, out=table[:, 1:])
    return table


def pass_at_k(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> float | np.ndarray:
    """Unbiased Pass@K = 1 - C(n - c, k) / C(n, k) (Chen et al. 2021; theory.md §6).

    Uses the stable product C(n-c, k)/C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
    = prod_{i<k} (n-c-i)/(n-i); the second form is one cumulative product giving every k at
    once. Exactly 1 when n - c < k, exactly 0 when c = 0. n, c, k broadcast (e.g. n, c [P, 1]
    and k [K] give [P, K]); a float for scalar inputs, else an array. k > n raises ValueError.
    """
    n_, c_, k_ = _as_int(n, "n"), _as_int(c, "c"), _as_int(k, "k")
    shape = np.broadcast_shapes(n_.shape, c_.shape, k_.shape)
    if np.any((c_ < 0) | (c_ > n_)):
        raise ValueError("need 0 <= c <= n")
    if np.any(k_ < 1) or np.any(np.broadcast_to(k_, shape) > np.broadcast_to(n_, shape)):
        raise ValueError("need 1 <= k <= n")
    if math.prod(shape) == 0:
        return np.zeros(shape)
    nb, cb = np.broadcast_arrays(n_, c_)
    base = int(nb.max()) + 1
    keys, inv = np.unique((nb * base + cb).ravel(), return_inverse=True)
    table = _survival_table(keys // base, keys % base, int(k_.max()))
    rows = np.broadcast_to(inv.reshape(nb.shape), shape)
    out = 1.0 - table[rows, np.broadcast_to(k_, shape)]
    return float(out) if out.ndim == 0 else out


def pass_at_k_curve(n: ArrayLike, c: ArrayLike, ks: ArrayLike) -> np.ndarray:
    """Mean Pass@K over problems for each K in ks: [len(ks)] from per-problem n, c [P]."""
    n_, c_ = np.atleast_1d(n)[:, None], np.atleast_1d(c)[:, None]
    return pass_at_k(n_, c_, np.asarray(ks)[None, :]).mean(axis=0)


# ------------------------------------------------------------------------------------ Maj@K
def _mul_trunc(p: np.ndarray, q: np.ndarray, deg: int) -> np.ndarray:
    """Product of polynomials p [..., a] and q [..., b] (ascending coefficients) up to x^deg."""
    if p.shape[-1] > q.shape[-1]:
        p, q = q, p
    out = np.zeros(np.broadcast_shapes(p.shape[:-1], q.shape[:-1]) + (deg + 1,))
    for t in range(min(p.shape[-1], deg + 1)):
        m = min(q.shape[-1], deg + 1 - t)
        out[..., t : t + m] += p[..., t : t + 1] * q[..., :m]
    return out


def _one_contender(
    g: np.ndarray, w1: np.ndarray, s1: np.ndarray, jlim: np.ndarray, kmax: int, table: np.ndarray
) -> np.ndarray:
    """Numerator of Maj@k, k = 0..K [P, K+1], from the gold counts j > jlim.

    For these j at most the top wrong answer (count w1) can reach j draws; the s1 others are
    free: sum_j C(g,j) [sum_{t<j} C(w1,t) C(s1,k-j-t) + 1/2 C(w1,j) C(s1,k-2j)]. The (j, t) sum
    is collapsed into h[e = j + t], then multiplied by (1 + x)^s1.
    """
    j = np.arange(kmax + 1)
    a = table[g, : kmax + 1] * (j > jlim[:, None])
    b = table[w1, : kmax + 1]
    h = np.zeros_like(a)
    for t in range(kmax // 2 + 1):
        h[:, 2 * t + 1 :] += b[:, t : t + 1] * a[:, t + 1 : kmax + 1 - t]
        if t:
            h[:, 2 * t] += 0.5 * b[:, t] * a[:, t]  # a tie with the top answer counts 1/2
    return _mul_trunc(h, table[s1, : min(kmax, int(s1.max())) + 1], kmax)


def _gold_once(w: np.ndarray, u: np.ndarray, kmax: int, table: np.ndarray) -> np.ndarray:
    """N_1(d), d = 0..K-1 [R, K]: gold drawn once, so every wrong answer is drawn at most once.

    int_0^1 prod_i (1 + y w_i x) dy = sum_d e_d(w) x^d / (d + 1); times (1 + x)^u for the Nones.
    """
    e = np.zeros((len(w), kmax))
    e[:, 0] = 1.0
    for i, col in enumerate(w.T):
        top = min(i + 2, kmax)  # after i + 1 answers the degree is i + 1 (truncated at K - 1)
        e[:, 1:top] = e[:, 1:top] + col[:, None] * e[:, : top - 1]
    return _mul_trunc(e / np.arange(1, kmax + 1), table[u, : int(u.max()) + 1], kmax - 1)


def _gold_j(j: int, big: np.ndarray, rest: np.ndarray, kmax: int, table: np.ndarray) -> np.ndarray:
    """N_j(d), d = 0..K-j [R, K-j+1], for the wrong answers big [R, M] (all counts >= j).

    prod_i (sum_{t<j} C(w_i,t) x^t + y C(w_i,j) x^j), integrated over y by Gauss-Legendre
    (exact: deg_y <= min(M, D // j)), times (1 + x)^rest for the other samples.
    """
    deg = kmax - j
    y, wq = np.polynomial.legendre.leggauss(min(big.shape[1], deg // j) // 2 + 1)
    prod = None
    for wi in big.T:
        f = np.repeat(table[wi, None, : j + 1], len(y), axis=1)  # [R, Q, j+1]
        f[:, :, j] *= (y + 1) / 2
        prod = f if prod is None else _mul_trunc(prod, f, min(deg, prod.shape[-1] + j - 1))
    integral = np.einsum("rqd,q->rd", prod, wq / 2)
    return _mul_trunc(integral, table[rest, : min(deg, int(rest.max())) + 1], deg)


def _many_contenders(
    g: np.ndarray, w: np.ndarray, u: np.ndarray, jlim: np.ndarray, kmax: int, table: np.ndarray
) -> np.ndarray:
    """Numerator of Maj@k [P, K+1] from the gold counts 1 <= j <= jlim (several contenders).

    Rows are grouped by how many wrong answers reach j, so no work is spent on padding.
    """
    num = np.zeros((len(g), kmax + 1))
    rest_all = u + w.sum(axis=1)  # every non-gold sample
    for j in range(1, int(jlim.max(initial=0)) + 1):
        rows = np.flatnonzero(jlim >= j)
        nbig = (w[rows] >= j).sum(axis=1)
        for m in np.unique(nbig):
            group = rows[nbig == m]
            step = max(1, _QUAD_ELEMS // ((m // 2 + 1) * (kmax - j + 1)))
            for r in (group[lo : lo + step] for lo in range(0, len(group), step)):
                if j == 1:
                    nj = _gold_once(w[r, :m], u[r], kmax, table)
                else:
                    big = w[r, :m]
                    nj = _gold_j(j, big, rest_all[r] - big.sum(axis=1), kmax, table)
                num[r, j:] += table[g[r], j][:, None] * nj
    return num


def _maj_curve(g: np.ndarray, w: np.ndarray, u: np.ndarray, kmax: int) -> np.ndarray:
    """Exact Maj@k for k = 0..K, [P, K+1] (column 0 unused), from counts g [P], w [P, M], u [P]."""
    n = g + w.sum(axis=1) + u
    table = _binom(int(n.max()))
    w = -np.sort(-w, axis=1)
    w1 = w[:, 0] if w.shape[1] else np.zeros_like(g)
    w2 = w[:, 1] if w.shape[1] > 1 else np.zeros_like(g)
    jlim = np.minimum(np.minimum(w2, kmax // 2), g)  # gold counts needing the full product
    num = _many_contenders(g, w, u, jlim, kmax, table)
    for lo in range(0, len(g), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        num[sl] += _one_contender(g[sl], w1[sl], n[sl] - g[sl] - w1[sl], jlim[sl], kmax, table)
    num[:, 1:] /= table[n, 1 : kmax + 1]
    num[:, 0] = np.nan
    return num


def _pad_counts(wrong: Sequence[Sequence[int]] | np.ndarray, size: int) -> np.ndarray:
    """Ragged per-problem wrong-answer counts (or an array [P, M]) -> zero-padded [P, M]."""
    if isinstance(wrong, np.ndarray) and wrong.ndim == 2:
        return _as_int(wrong, "wrong_counts")
    if len(wrong) != size:
        raise ValueError(f"wrong_counts has {len(wrong)} problems, expected {size}")
    lengths = np.array([len(r) for r in wrong], dtype=np.int64)
    out = np.zeros((size, int(lengths.max(initial=0))), dtype=np.int64)
    flat = [x for r in wrong for x in r]
    out[np.arange(out.shape[1]) < lengths[:, None]] = _as_int(flat, "wrong_counts")
    return out


def maj_at_k_from_counts(
    gold_count: ArrayLike,
    wrong_counts: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
    none_count: ArrayLike,
    k: ArrayLike,
) -> float | np.ndarray:
    """Exact Maj@K from answer counts (multivariate hypergeometric; theory.md §6).

    gold_count: int, or [P] for a batch; wrong_counts: the count of each distinct wrong answer,
    list[int] for one problem, ragged list[list[int]] or zero-padded [P, M] for a batch;
    none_count: samples without an answer, int or [P]. k: int -> float (one problem) or [P];
    a sequence of ks -> a trailing ks axis, [len(ks)] or [P, len(ks)]. k > n raises ValueError.
    """
    ks, scalar_k = _parse_ks(k)
    single = np.ndim(gold_count) == 0
    g = np.atleast_1d(_as_int(gold_count, "gold_count"))
    if len(g) == 0:
        return np.zeros((0,) if scalar_k else (0, len(ks)))
    w = _pad_counts([wrong_counts] if single else wrong_counts, len(g))
    u = np.broadcast_to(_as_int(none_count, "none_count"), g.shape).copy()
    if (g < 0).any() or (w < 0).any() or (u < 0).any():
        raise ValueError("counts must be >= 0")
    if len(g) and ks.max() > (g + w.sum(axis=1) + u).min():
        raise ValueError(f"k = {ks.max()} exceeds the number of samples of some problem")
    out = _maj_curve(g, w, u, int(ks.max()))[:, ks]
    out = out[:, 0] if scalar_k else out
    return (float(out[0]) if scalar_k else out[0]) if single else out


def _missing(a: object) -> bool:
    return a is None or (isinstance(a, float) and math.isnan(a))


def _count_answers(
    problems: Sequence[Answers], golds: Sequence[str | None]
) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    """Gold counts [P], ragged wrong-answer counts, None counts [P] from answer lists."""
    g, wrong, u = [], [], []
    for answers, gold in zip(problems, golds, strict=True):
        counts = Counter(a for a in answers if not _missing(a))
        u.append(len(answers) - sum(counts.values()))
        g.append(0 if _missing(gold) else counts.pop(gold, 0))
        wrong.append(list(counts.values()))
    return np.array(g, dtype=np.int64), wrong, np.array(u, dtype=np.int64)


def maj_at_k(
    answers: Answers | Sequence[Answers], gold: str | None | Sequence[str | None], k: ArrayLike
) -> float | np.ndarray:
    """Exact expected majority-vote accuracy of k samples drawn without replacement (§6).

    One problem: answers list[str | None], gold str -> float. A batch: answers
    list[list[str | None]], gold list[str] -> [P]. A sequence k adds a trailing ks axis.
    Answers compare as given; None (or NaN) never wins; a top tie counts 1/(number tied) if
    gold is in it; an all-None draw scores 0. k > n raises ValueError.
    """
    batch = not isinstance(gold, str) and isinstance(gold, Sequence | np.ndarray | pd.Series)
    problems, golds = (answers, list(gold)) if batch else ([answers], [gold])
    g, wrong, u = _count_answers(problems, golds)
    if batch:
        return maj_at_k_from_counts(g, wrong, u, k)
    return maj_at_k_from_counts(int(g[0]), wrong[0], int(u[0]), k)


# ------------------------------------------------------------------------------------ bootstrap
def _boot_means(v: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, F] means of v [P, F] over problems resampled with replacement."""
    size = len(v)
    out = np.empty((n_boot, v.shape[1]))
    block = max(1, (1 << 22) // size)
    for lo in range(0, n_boot, block):
        b = min(block, n_boot - lo)
        idx = rng.integers(0, size, size=(b, size)) + size * np.arange(b)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * size).reshape(b, size)
        out[lo : lo + b] = counts @ v / size  # resample counts x values = resampled sums
    return out


def _ci(mean: np.ndarray, boot: np.ndarray, alpha: float, shape: tuple[int, ...]) -> CI:
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    res = tuple(x.reshape(shape) for x in (mean, low, high))
    return tuple(float(x) for x in res) if shape == () else res


def bootstrap_ci(
    values: ArrayLike, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, axis: int = 0
) -> CI:
    """Percentile bootstrap CI of the mean over problems (resampled along `axis`).

    Returns (mean, low, high): floats for 1-D values, else arrays of the other axes' shape
    (e.g. values [P, K] -> three [K] arrays, all K sharing the same resamples).
    """
    v = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    if len(v) == 0:
        raise ValueError("need at least one problem")
    flat = v.reshape(len(v), -1)
    boot = _boot_means(flat, n_boot, np.random.default_rng(seed))
    return _ci(flat.mean(axis=0), boot, alpha, v.shape[1:])


def bootstrap_ci_seeds(
    per_seed_values: Sequence[ArrayLike], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> CI:
    """Two-level percentile bootstrap over seeds x problems (theory.md §6).

    per_seed_values: one array [P_s, ...] per seed. The statistic is the mean over seeds of the
    per-seed mean; each replicate resamples the seeds, then the problems within each drawn seed
    (independently per draw). Returns (mean, low, high) as in `bootstrap_ci`.
    """
    arrays = [np.asarray(v, dtype=np.float64) for v in per_seed_values]
    if not arrays or any(len(a) == 0 for a in arrays):
        raise ValueError("need at least one seed, each with at least one problem")
    shape = arrays[0].shape[1:]
    flats = [a.reshape(len(a), -1) for a in arrays]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(flats), size=(n_boot, len(flats)))
    boot = np.zeros((n_boot, flats[0].shape[1]))
    for s, v in enumerate(flats):
        reps = np.flatnonzero(picks == s) // len(flats)
        np.add.at(boot, reps, _boot_means(v, len(reps), rng))
    mean = np.mean([v.mean(axis=0) for v in flats], axis=0)
    return _ci(mean, boot / len(flats), alpha, shape)


# ------------------------------------------------------------------------------------ tables
_SAMPLE_COLUMNS = ("problem_id", "answer", "correct", "gold")


def per_problem_table(df: pd.DataFrame, ks: Sequence[int]) -> pd.DataFrame:
    """Per-problem n, c, pass@k and maj@k from one row per sample.

    df needs columns problem_id, answer (None/NaN when unparsable), correct (bool, drives
    pass@k) and gold (the problem's reference answer, constant within a problem; maj@k compares
    answer == gold). Every problem needs n >= max(ks). Returns one row per problem_id (sorted):
    problem_id, n, c, pass@k and maj@k for each k.
    """
    missing = [col for col in _SAMPLE_COLUMNS if col not in df.columns]
    if missing:
        raise ValueError(f"per_problem_table needs columns {missing}")
    pid = df["problem_id"]
    if (df.groupby(pid)["gold"].nunique(dropna=False) > 1).any():
        raise ValueError("gold must be constant within a problem")
    none = df["answer"].isna()
    hit = ~none & (df["answer"] == df["gold"]).fillna(False).astype(bool)
    by = df.assign(_none=none, _hit=hit).groupby(pid, sort=True)
    n, c = by.size().to_numpy(), by["correct"].sum().to_numpy().astype(np.int64)
    g, u = by["_hit"].sum().to_numpy(), by["_none"].sum().to_numpy()
    wrong = df[~none & ~hit].groupby(["problem_id", "answer"], sort=False).size()
    ids = by.size().index
    w = np.zeros((len(ids), int(wrong.groupby(level=0).size().max()) if len(wrong) else 0))
    if len(wrong):
        row = ids.get_indexer(wrong.index.get_level_values(0))
        w[row, wrong.groupby(level=0).cumcount().to_numpy()] = wrong.to_numpy()
    ks_ = np.asarray(ks)
    pk = pass_at_k(n[:, None], c[:, None], ks_[None, :])
    mk = maj_at_k_from_counts(g.astype(np.int64), w.astype(np.int64), u.astype(np.int64), ks_)
    cols = {"problem_id": ids.to_numpy(), "n": n, "c": c}
    cols |= {f"pass@{k}": pk[:, i] for i, k in enumerate(ks_)}
    cols |= {f"maj@{k}": mk[:, i] for i, k in enumerate(ks_)}
    return pd.DataFrame(cols)


def summarize(
    per_problem: pd.DataFrame,
    ks: Sequence[int],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    seed_column: str | None = None,
) -> pd.DataFrame:
    """One row per K: mean pass@K and maj@K over problems with percentile-bootstrap CIs.

    Columns K, pass@K, pass@K_low, pass@K_high, maj@K, maj@K_low, maj@K_high. With several
    training seeds, concatenate their `per_problem_table`s with a seed column and name it in
    seed_column: the CI is then the two-level seeds x problems one.
    """
    cols = [f"{m}@{k}" for m in ("pass", "maj") for k in ks]
    if seed_column is None:
        mean, low, high = bootstrap_ci(per_problem[cols].to_numpy(float), n_boot, alpha, seed)
    else:
        groups = [grp[cols].to_numpy(float) for _, grp in per_problem.groupby(seed_column)]
        mean, low, high = bootstrap_ci_seeds(groups, n_boot, alpha, seed)
    out = {"K": np.asarray(ks)}
    for i, m in enumerate(("pass@K", "maj@K")):
        part = slice(i * len(ks), (i + 1) * len(ks))
        out |= {m: mean[part], f"{m}_low": low[part], f"{m}_high": high[part]}
    return pd.DataFrame(out)
