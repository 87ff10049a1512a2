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
from scipy.stats import norm

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


def fit_scaling_runs(
    runs: Sequence[tuple[np.ndarray, np.ndarray]],
    a_bounds: tuple[float, float] = (-np.inf, np.inf),
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    min_boot_runs: int = 3,
    min_evals_per_run: int = 4,
) -> dict[str, float | str | int]:
    """The fit on the pooled points of several runs (seeds), with a (1 − alpha) CI per parameter.

    runs: one (compute [N_r], reward [N_r]) per run. With at least ``min_boot_runs`` runs the
    CIs are percentile bootstrap over runs (runs resampled with replacement, refitted; R0
    re-measured per replicate); otherwise from the fit covariance (A, B, R0 ± z·se, A's clipped
    to a_bounds; C_mid through log C_mid ± z·se). Returns {"A", "A_low", "A_high", ..., "R0_high", "ci", "runs",
    "points", "rmse"} (and "note" when A = R0, where B and C_mid are NaN); the point estimate
    is the fit to all runs. Raises ValueError unless some run has ``min_evals_per_run``
    evaluations at C > 0: A, B and C_mid need more than three compute levels to be identified.
    """
    cs = [np.asarray(c, dtype=np.float64) for c, _ in runs]
    rs = [np.asarray(r, dtype=np.float64) for _, r in runs]
    most = max((int(np.sum(c > 0)) for c in cs), default=0)
    if most < min_evals_per_run:  # seeds differ a little in compute: pooling fakes the x-range
        raise ValueError(
            f"a scaling fit needs >= {min_evals_per_run} evaluations after the start in a run "
            f"(found {most}); evaluate more often (eval_every)"
        )
    fit = fit_scaling(np.concatenate(cs), np.concatenate(rs), a_bounds=a_bounds)
    out: dict[str, float | str | int] = {"runs": len(runs), "points": fit.n_points}
    out["rmse"] = fit.rmse
    est = fit.params()
    if len(runs) >= min_boot_runs:
        rng = np.random.default_rng(seed)
        reps, seen = [], {}
        for _ in range(n_boot):
            pick = tuple(sorted(rng.integers(0, len(runs), len(runs))))
            if pick not in seen:  # few seeds give few distinct resamples: fit each once
                c, r = np.concatenate([cs[i] for i in pick]), np.concatenate([rs[i] for i in pick])
                try:
                    seen[pick] = fit_scaling(c, r, a_bounds=a_bounds, start=fit).params()
                except (RuntimeError, ValueError):
                    seen[pick] = None
            if seen[pick] is not None:
                reps.append(seen[pick])
        table = (
            np.array([[p[k] for k in PARAMS] for p in reps]) if reps else np.full((1, 4), np.nan)
        )
        lows, highs = np.nanquantile(table, [alpha / 2, 1 - alpha / 2], axis=0)
        bounds = dict(zip(PARAMS, zip(lows, highs, strict=True), strict=True))
        out["ci"] = f"bootstrap over {len(runs)} runs"
    else:
        z = float(norm.ppf(1 - alpha / 2))
        se = dict(zip(PARAMS, fit.se, strict=True))
        bounds = {k: (est[k] - z * se[k], est[k] + z * se[k]) for k in ("A", "B", "R0")}
        bounds["A"] = (max(bounds["A"][0], a_bounds[0]), min(bounds["A"][1], a_bounds[1]))
        log_mid = np.log(fit.c_mid)
        bounds["C_mid"] = (np.exp(log_mid - z * se["C_mid"]), np.exp(log_mid + z * se["C_mid"]))
        out["ci"] = "fit covariance"
    for k in PARAMS:
        out |= {k: est[k], f"{k}_low": float(bounds[k][0]), f"{k}_high": float(bounds[k][1])}
    if abs(fit.a - fit.r0) < 1e-3 * max(1.0, abs(fit.r0)):  # a flat curve has no shape to fit
        out |= {f"{k}{s}": np.nan for k in ("B", "C_mid") for s in ("", "_low", "_high")}
        out["note"] = "no gain over R0: B and C_mid undefined"
    return out
