"""The statistics behind the claims table (``frkit.reports.claims``): pure functions, each tested against a brute-force
or hand-computed reference in ``tests/test_statistics.py``. Distributions come from scipy and statsmodels.

unit_differences   paired differences of two rows, one value per unit: the order (seeds averaged inside it) where
                   the pairs span several orders, else the seed
t_interval         mean and two-sided t-interval of the unit differences
two_sided_p        paired t-test of "mean difference = 0" (or = a shifted null)
tost_p             two one-sided tests of equivalence within +- margin (statsmodels ``ttost_paired``)
holm               Holm's step-down adjustment of a family of p-values
mde                the smallest true mean difference a paired t-test detects with the given power
units_needed       how many units a paired t-test needs to detect a given effect with the given power

Orders as blocks (a sweep's ``unit: seed``; ``Blocked`` and its functions): with few orders (two: n = 2 units
leaves a test no power), each run is a replicate and each order a fixed block. The model is
d[o, s] = mu + alpha[o] + e[o, s] with sum(alpha) = 0: mu is the unweighted mean of the order means, its standard
error comes from the pooled within-order variance (df = runs - orders), and the inference is about these orders
only, not about orders in general (the same as OLS ``d ~ C(order, Sum)``'s intercept, which the tests check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

ALPHA, POWER = 0.05, 0.8
ORDER, SEED = "order", "seed"


def paired_differences(a: pd.Series, b: pd.Series | float) -> pd.Series:
    """``a - b`` per run, on the runs both hold (or against a number), pairs with a missing side dropped."""
    if isinstance(b, pd.Series):
        common = a.index.intersection(b.index)
        a, b = a.loc[common], b.loc[common]
    return (a - b).dropna()


def unit_differences(a: pd.Series, b: pd.Series | float) -> tuple[pd.Series, str]:
    """The paired differences ``a - b`` reduced to independent units, and the unit's name.

    ``a`` and ``b`` hold one value per run, indexed by (order, seed); runs pair on both. Seeds within one order share
    that order's effect, so where the pairs span several orders each order is one unit: the mean of its seeds'
    differences (n = number of orders). Where they span one order, each seed is a unit. ``b`` may be a number (a
    claim against a fixed value). Pairs with a missing value on either side are dropped first.
    """
    diffs = paired_differences(a, b)
    orders = diffs.index.get_level_values(ORDER)
    if orders.nunique() > 1:
        return diffs.groupby(level=ORDER).mean(), ORDER
    return diffs.droplevel(ORDER) if isinstance(diffs.index, pd.MultiIndex) else diffs, SEED


def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided ``level`` t-interval of the mean of ``diffs`` (nan bounds for n < 2)."""
    diffs = np.asarray(diffs, dtype=float)
    mean = float(diffs.mean()) if len(diffs) else math.nan
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(diffs) - 1)) * float(diffs.std(ddof=1)) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def two_sided_p(diffs: np.ndarray, null: float = 0.0) -> float:
    """Two-sided one-sample (paired) t-test p-value of "the mean of ``diffs`` equals ``null``"; nan for n < 2.
    All differences equal: 0 when they differ from ``null``, 1 when they equal it."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) < 2:
        return math.nan
    if np.ptp(diffs) == 0:
        return 1.0 if diffs[0] == null else 0.0
    return float(stats.ttest_1samp(diffs, null).pvalue)


def tost_p(diffs: np.ndarray, margin: float) -> float:
    """Two one-sided tests (TOST) of equivalence: the p-value of rejecting both "mean <= -margin" and
    "mean >= +margin" (the larger of the two one-sided p-values), by statsmodels' ``ttost_paired``; nan for n < 2."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) < 2:
        return math.nan
    if np.ptp(diffs) == 0:
        return 0.0 if abs(diffs[0]) < margin else 1.0
    return float(ttost_paired(diffs, np.zeros_like(diffs), -margin, margin)[0])


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence). nan entries are left out
    of the family and stay nan. Sorted ascending, the i-th smallest (0-based) of m becomes max over j <= i of
    min(1, (m - j) p_(j))."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    present = np.flatnonzero(np.isfinite(p))
    m = len(present)
    running = 0.0
    for rank, idx in enumerate(present[np.argsort(p[present], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def _detectable_d(n: int, alpha: float, power: float) -> float:
    """Cohen's d that a two-sided paired t-test on n units detects with probability ``power`` (statsmodels)."""
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(np.ravel(d)[0])  # a number or a one-element array, by statsmodels' version


def mde(std: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimal detectable effect: the true mean difference a two-sided paired t-test at ``alpha`` detects with
    probability ``power``, for n units whose differences have standard deviation ``std`` (Cohen's d from
    statsmodels' ``TTestPower.solve_power``, times ``std``). nan for n < 2 or no spread."""
    if n < 2 or not np.isfinite(std) or std <= 0:
        return math.nan
    return _detectable_d(n, alpha, power) * std


def units_needed(
    effect: float | None, std: float, alpha: float = ALPHA, power: float = POWER, most: int = 10**5
) -> float:
    """Units a two-sided paired t-test at ``alpha`` needs to detect a true mean difference ``effect`` with
    probability ``power`` when the unit differences have standard deviation ``std``: the least n >= 2 with
    ``TTestPower.power`` >= ``power`` (where that power is nan, at large noncentrality, the detectable d of n units
    is compared with |effect| / std instead). nan when there is no effect to aim at or no spread; inf beyond
    ``most``."""
    if effect is None or not np.isfinite(effect) or effect == 0 or not np.isfinite(std) or std <= 0:
        return math.nan
    d = abs(effect) / std

    def enough(n: int) -> bool:
        reached = TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative="two-sided")
        return bool(reached >= power) if np.isfinite(reached) else _detectable_d(n, alpha, power) <= d

    if enough(2):
        return 2
    if not enough(most):
        return math.inf
    low, high = 2, most  # enough(low) is false, enough(high) true: bisect on whole numbers
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


BLOCKED_UNIT = "seed (orders as blocks)"


@dataclass(frozen=True)
class Blocked:
    """Paired differences with the orders as fixed blocks: estimate, standard error, degrees of freedom."""

    mean: float
    se: float
    df: int
    n: int  # runs (the replicates)
    orders: int
    std: float  # the pooled within-order standard deviation of the differences
    values: np.ndarray  # the per-run differences (to count those on a claimed side)


def blocked_differences(a: pd.Series, b: pd.Series | float) -> Blocked | None:
    """``a - b`` per run (indexed by (order, seed), paired as ``unit_differences``) as a blocked estimate; None when
    the runs span one order only (then the seeds are the units: ``unit_differences``)."""
    diffs = paired_differences(a, b)
    if not isinstance(diffs.index, pd.MultiIndex) or diffs.index.get_level_values(ORDER).nunique() < 2:
        return None
    groups = diffs.groupby(level=ORDER)
    sizes, means = groups.size(), groups.mean()
    k, n = len(sizes), len(diffs)
    df = n - k
    residual = float(((diffs - diffs.groupby(level=ORDER).transform("mean")) ** 2).sum())
    std = math.sqrt(residual / df) if df > 0 else math.nan
    se = std / k * math.sqrt(float((1.0 / sizes).sum())) if df > 0 else math.nan
    return Blocked(float(means.mean()), se, df, n, k, std, diffs.to_numpy(dtype=float))


def blocked_interval(est: Blocked, level: float = 0.95) -> tuple[float, float, float]:
    if not est.df > 0:
        return est.mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, est.df)) * est.se
    return est.mean, est.mean - half, est.mean + half


def blocked_p(est: Blocked, null: float = 0.0) -> float:
    """Two-sided t-test of "mu = null" on ``est.df`` degrees of freedom; nan without any."""
    if not est.df > 0:
        return math.nan
    if est.se == 0:
        return 1.0 if est.mean == null else 0.0
    return float(2 * stats.t.sf(abs(est.mean - null) / est.se, est.df))


def blocked_tost_p(est: Blocked, margin: float) -> float:
    """TOST of "|mu| < margin": the larger of the two one-sided p-values."""
    if not est.df > 0:
        return math.nan
    if est.se == 0:
        return 0.0 if abs(est.mean) < margin else 1.0
    lower = stats.t.sf((est.mean + margin) / est.se, est.df)  # H0: mu <= -margin
    upper = stats.t.cdf((est.mean - margin) / est.se, est.df)  # H0: mu >= +margin
    return float(max(lower, upper))


def _power(effect: float, se: float, df: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test at ``alpha`` when the true difference is ``effect`` (noncentral t)."""
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect / se
    reached = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    return reached if np.isfinite(reached) else 1.0  # scipy's nct gives nan far out, where the power is 1


def blocked_mde(est: Blocked, alpha: float = ALPHA, power: float = POWER) -> float:
    """The true difference the blocked test detects with probability ``power`` (solved on the noncentral t)."""
    if not est.df > 0 or not np.isfinite(est.se) or est.se <= 0:
        return math.nan
    from scipy.optimize import brentq

    high = 2 * est.se
    while _power(high, est.se, est.df, alpha) < power:  # widen the bracket until it holds the answer
        high *= 2
    return float(brentq(lambda e: _power(e, est.se, est.df, alpha) - power, 0.0, high))


def blocked_runs_needed(
    effect: float | None, est: Blocked, alpha: float = ALPHA, power: float = POWER, most: int = 10**5
) -> float:
    """Runs (seeds spread evenly over the same orders) the blocked test needs to detect ``effect`` with ``power``
    at the observed within-order spread: the least n > orders with enough power; nan / inf as ``units_needed``."""
    if effect is None or not np.isfinite(effect) or effect == 0 or not np.isfinite(est.std) or est.std <= 0:
        return math.nan
    k = est.orders

    def enough(n: int) -> bool:
        return _power(abs(effect), est.std / math.sqrt(n), n - k, alpha) >= power

    if not enough(most):
        return math.inf
    low, high = k, most  # n = k leaves no degrees of freedom: never enough
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high
