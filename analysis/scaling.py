"""Saturating compute-scaling curves, as in ScaleRL (Khatri et al. 2025, "The Art of Scaling
Reinforcement Learning Compute for LLMs"):

    R(C) = R0 + (A − R0) / (1 + (C_mid / C)^B)

A is the asymptote (the best accuracy the recipe reaches with unlimited compute), B the
efficiency (how steeply it gets there), C_mid the compute at which half of the gain A − R0 is
reached, and R0 the accuracy before training (C → 0). R0 is the measured start (the mean of the
points at C = 0, as in ScaleRL) when there are such points, and fitted otherwise. Numpy and
scipy only; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit
from scipy.special import expit
from scipy.stats import t as student

PARAMS = ("A", "B", "C_mid", "R0")


def scaling_curve(
    compute: np.ndarray | float, a: float, b: float, c_mid: float, r0: float
) -> np.ndarray:
    """R(C) = R0 + (A − R0) / (1 + (C_mid / C)^B), elementwise; R(0) = R0 for B > 0.

    Written as R0 + (A − R0)·σ(B·(log C − log C_mid)) (σ the logistic function), which never
    overflows.
    """
    c = np.asarray(compute, dtype=np.float64)
    with np.errstate(divide="ignore"):
        x = b * (np.log(c) - np.log(c_mid))
    return r0 + (a - r0) * expit(x)


@dataclass(frozen=True)
class ScalingFit:
    """Least-squares fit of `scaling_curve`; ``se`` holds the standard errors of (A, B,
    log C_mid, R0) from the fit covariance (NaN where R0 was fixed or undetermined)."""

    a: float
    b: float
    c_mid: float
    r0: float
    se: tuple[float, float, float, float]
    n_points: int
    rmse: float

    def params(self) -> dict[str, float]:
        return dict(zip(PARAMS, (self.a, self.b, self.c_mid, self.r0), strict=True))

    def __call__(self, compute: np.ndarray | float) -> np.ndarray:
        return scaling_curve(compute, self.a, self.b, self.c_mid, self.r0)


def _start_value(compute: np.ndarray, reward: np.ndarray) -> float | None:
    at_zero = reward[compute == 0]
    return float(at_zero.mean()) if len(at_zero) else None


def fit_scaling(
    compute: Sequence[float] | np.ndarray,
    reward: Sequence[float] | np.ndarray,
    r0: float | None = None,
    a_bounds: tuple[float, float] = (-np.inf, np.inf),
    start: ScalingFit | None = None,
) -> ScalingFit:
    """Fit A, B, C_mid (and R0 when neither given nor measured) to points (C, R).

    compute, reward: [N], pooled over runs. Points at C = 0 only set R0 (the mean of their
    rewards, unless r0 is given); the curve is fitted to the points with C > 0, at least 3 (4
    when R0 is fitted too). a_bounds bounds the asymptote (use (0, 1) for an accuracy).
    start: a previous fit to start from (one start instead of a small grid of them).
    Raises ValueError when there are too few points and RuntimeError when no start converges.
    """
    c = np.asarray(compute, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(r) & (c >= 0)
    c, r = c[ok], r[ok]
    r0 = _start_value(c, r) if r0 is None else float(r0)
    pos = c > 0
    c, r = c[pos], r[pos]
    free_r0 = r0 is None
    if len(c) < 3 + free_r0 or len(np.unique(c)) < 3:
        raise ValueError(f"a scaling fit needs >= {3 + free_r0} points at distinct compute > 0")
    log_c = np.log(c)
    lo = [a_bounds[0], 1e-3, log_c.min() - 12.0] + ([-np.inf] if free_r0 else [])
    hi = [a_bounds[1], 50.0, log_c.max() + 12.0] + ([np.inf] if free_r0 else [])

    def model(x: np.ndarray, a: float, b: float, log_mid: float, *rest: float) -> np.ndarray:
        base = rest[0] if free_r0 else r0
        return base + (a - base) * expit(b * (x - log_mid))

    best = None
    for p0 in _starts(log_c, r, r0, start, lo, hi):
        try:
            p, cov = curve_fit(model, log_c, r, p0=p0, bounds=(lo, hi), maxfev=5000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((model(log_c, *p) - r) ** 2))
        if best is None or sse < best[2]:
            best = (p, cov, sse)
    if best is None:
        raise RuntimeError("the scaling fit did not converge from any start")
    p, cov, sse = best
    se = (
        np.sqrt(np.clip(np.diag(cov), 0, None))
        if np.all(np.isfinite(cov))
        else np.full(len(p), np.nan)
    )
    se_all = (*se[:3], se[3] if free_r0 else np.nan)
    return ScalingFit(
        a=float(p[0]),
        b=float(p[1]),
        c_mid=float(np.exp(p[2])),
        r0=float(p[3]) if free_r0 else float(r0),
        se=tuple(float(s) for s in se_all),
        n_points=len(c),
        rmse=float(np.sqrt(sse / len(c))),
    )


def _starts(
    log_c: np.ndarray,
    r: np.ndarray,
    r0: float | None,
    start: ScalingFit | None,
    lo: list[float],
    hi: list[float],
) -> list[list[float]]:
    """Initial guesses, clipped inside the bounds: the previous fit, or a small grid."""
    free_r0 = r0 is None
    if start is not None:
        guesses = [[start.a, start.b, np.log(start.c_mid)] + ([start.r0] if free_r0 else [])]
    else:
        rising = r.max() >= (r.min() if free_r0 else r0)
        a0 = r.max() if rising else r.min()
        r00 = [float(r.min() if rising else r.max())] if free_r0 else []
        mids = np.quantile(log_c, [0.2, 0.5, 0.8])
        guesses = [[a0, b0, m] + r00 for b0 in (0.5, 1.0, 2.0) for m in mids]
    eps = 1e-9
    return [
        [float(np.clip(g, lo_ + eps, hi_ - eps)) for g, lo_, hi_ in zip(p, lo, hi, strict=True)]
        for p in guesses
    ]


TOO_FEW_RUNS = "too few runs for an interval"


def fit_scaling_runs(
    runs: Sequence[tuple[np.ndarray, np.ndarray]],
    a_bounds: tuple[float, float] = (-np.inf, np.inf),
    alpha: float = 0.05,
    min_runs: int = 3,
    min_evals_per_run: int = 4,
) -> dict[str, float | str | int | bool]:
    """The fit on the pooled points of several runs (seeds), with a (1 − alpha) CI per parameter.

    runs: one (compute [N_r], reward [N_r]) per run. The point estimate θ̂ is the fit to all
    runs. The CIs are delete-one-run jackknife intervals with Student-t quantiles (theory.md §8):
    with θ̂₋ᵢ the fit without run i and θ̄ the mean of the n of them,

        se_J² = (n − 1)/n · Σᵢ (θ̂₋ᵢ − θ̄)²,    CI = θ̂ ± t_{n−1, 1−alpha/2} · se_J,

    on the scale of (A, ln B, ln C_mid, R0) (B's and C_mid's bounds are exponentiated back; A's
    are clipped to a_bounds). Leaving out whole runs measures the run-to-run (seed) variation
    that the points of a run share, and t with n − 1 degrees of freedom accounts for that
    variance being estimated from n runs; for a mean over runs (R0 when measured) it is exactly
    Student's t interval. The percentile bootstrap over runs used before estimates that
    variance shrunk by (n − 1)/n and takes normal-like quantiles of at most 35 distinct
    resamples (n = 4): its 95 % intervals held the true parameters in 77-82 % of simulated
    4-run sweeps, these in 93-96 % (`coverage` in tests/analysis/test_sweep_analysis.py).

    With fewer than ``min_runs`` runs (at n = 2, se_J has one degree of freedom), or when a
    fit without one of the runs fails, the bounds are NaN, ``has_ci`` is False and ``ci`` and
    ``note`` say "too few runs for an interval" (and why). Returns {"A", "A_low", "A_high",
    ..., "R0_high", "ci", "has_ci", "runs", "points", "rmse"} and "note" when there is
    something to say (A = R0 leaves B and C_mid NaN). Raises ValueError unless some run has
    ``min_evals_per_run`` evaluations at C > 0: A, B and C_mid need more than three compute
    levels to be identified.
    """
    cs = [np.asarray(c, dtype=np.float64) for c, _ in runs]
    rs = [np.asarray(r, dtype=np.float64) for _, r in runs]
    fit = _fit_pooled(cs, rs, range(len(runs)), a_bounds, min_evals_per_run)
    out: dict[str, float | str | int | bool] = {"runs": len(runs), "points": fit.n_points}
    out["rmse"] = fit.rmse
    est = fit.params()
    n = len(runs)
    bounds, why = _jackknife(cs, rs, fit, a_bounds, alpha, min_evals_per_run, min_runs)
    out["has_ci"] = why is None
    out["ci"] = f"jackknife over {n} runs, t({n - 1})" if why is None else f"{TOO_FEW_RUNS} ({why})"
    notes = [] if why is None else [str(out["ci"])]
    for k in PARAMS:
        out |= {k: est[k], f"{k}_low": float(bounds[k][0]), f"{k}_high": float(bounds[k][1])}
    if abs(fit.a - fit.r0) < 1e-3 * max(1.0, abs(fit.r0)):  # a flat curve has no shape to fit
        out |= {f"{k}{s}": np.nan for k in ("B", "C_mid") for s in ("", "_low", "_high")}
        notes.insert(0, "no gain over R0: B and C_mid undefined")
    if notes:
        out["note"] = "; ".join(notes)
    return out


def _fit_pooled(
    cs: list[np.ndarray],
    rs: list[np.ndarray],
    keep: Sequence[int] | range,
    a_bounds: tuple[float, float],
    min_evals_per_run: int,
    start: ScalingFit | None = None,
) -> ScalingFit:
    """`fit_scaling` on the pooled points of runs ``keep``; ValueError unless one of them has
    ``min_evals_per_run`` evaluations at C > 0 (seeds differ a little in compute: pooling
    them would fake the x-range)."""
    most = max((int(np.sum(cs[i] > 0)) for i in keep), default=0)
    if most < min_evals_per_run:
        raise ValueError(
            f"a scaling fit needs >= {min_evals_per_run} evaluations after the start in a run "
            f"(found {most}); evaluate more often (eval_every)"
        )
    c = np.concatenate([cs[i] for i in keep])
    r = np.concatenate([rs[i] for i in keep])
    if start is not None:
        try:
            return fit_scaling(c, r, a_bounds=a_bounds, start=start)
        except RuntimeError:
            pass  # from the grid of starts instead
    return fit_scaling(c, r, a_bounds=a_bounds)


def _jackknife(
    cs: list[np.ndarray],
    rs: list[np.ndarray],
    fit: ScalingFit,
    a_bounds: tuple[float, float],
    alpha: float,
    min_evals_per_run: int,
    min_runs: int,
) -> tuple[dict[str, tuple[float, float]], str | None]:
    """Delete-one-run jackknife-t bounds per parameter (see `fit_scaling_runs`), or NaN bounds
    and the reason there is no interval."""
    n = len(cs)
    nan = {k: (np.nan, np.nan) for k in PARAMS}
    if n < max(min_runs, 2):
        return nan, f"{n} run{'s' * (n != 1)}, needs >= {max(min_runs, 2)}"
    loo = []
    for i in range(n):
        try:
            f = _fit_pooled(
                cs, rs, [j for j in range(n) if j != i], a_bounds, min_evals_per_run, fit
            )
        except (RuntimeError, ValueError) as err:
            return nan, f"the fit without run {i} failed: {err}"
        loo.append(_scaled(f))
    loo_ = np.array(loo)
    se = np.sqrt((n - 1) / n * np.sum((loo_ - loo_.mean(axis=0)) ** 2, axis=0))
    q = float(student.ppf(1 - alpha / 2, n - 1))
    lows, highs = _scaled(fit) - q * se, _scaled(fit) + q * se
    lows[1:3], highs[1:3] = np.exp(lows[1:3]), np.exp(highs[1:3])  # back from ln B, ln C_mid
    lows[0], highs[0] = max(lows[0], a_bounds[0]), min(highs[0], a_bounds[1])
    return dict(zip(PARAMS, zip(lows, highs, strict=True), strict=True)), None


def _scaled(fit: ScalingFit) -> np.ndarray:
    """(A, ln B, ln C_mid, R0): the scale on which the jackknife intervals are symmetric."""
    return np.array([fit.a, np.log(fit.b), np.log(fit.c_mid), fit.r0])
