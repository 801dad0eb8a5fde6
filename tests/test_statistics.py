"""frkit.reports.statistics against hand-computed or brute-force references (issue 29, item 1)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from frkit.reports import statistics as st


def _runs(values: dict) -> pd.Series:
    """{(order, seed): value} as the (order, seed)-indexed series the claims read."""
    return pd.Series(list(values.values()), index=pd.MultiIndex.from_tuples(list(values), names=["order", "seed"]))


def test_units_are_orders_with_seeds_averaged_where_the_pairs_span_several_orders():
    a = _runs({("x", 0): 0.8, ("x", 1): 0.6, ("y", 0): 0.9, ("y", 1): 0.7, ("y", 2): 0.5})
    b = _runs({("x", 0): 0.7, ("x", 1): 0.7, ("y", 0): 0.6, ("y", 1): 0.6, ("z", 0): 0.1})  # (y, 2), (z, 0) unpaired
    diffs, unit = st.unit_differences(a, b)
    assert unit == "order"
    # x: (+0.1, -0.1) -> 0.0; y: (+0.3, +0.1) -> +0.2
    assert diffs.to_dict() == pytest.approx({"x": 0.0, "y": 0.2})


def test_units_are_seeds_within_one_order_and_a_number_compares_every_run():
    a = _runs({("x", 0): 0.8, ("x", 1): 0.6, ("x", 2): 0.7})
    diffs, unit = st.unit_differences(a, _runs({("x", 0): 0.5, ("x", 1): 0.5, ("x", 2): float("nan")}))
    assert unit == "seed" and diffs.to_dict() == pytest.approx({0: 0.3, 1: 0.1})  # the nan pair is dropped
    diffs, unit = st.unit_differences(a, 0.5)
    assert unit == "seed" and list(diffs) == pytest.approx([0.3, 0.1, 0.2])


def test_t_interval_by_hand():
    mean, low, high = st.t_interval([0.1, 0.2, 0.3])
    half = 4.302652729749464 * 0.1 / math.sqrt(3)  # t(0.975, 2) x sample std / sqrt(n)
    assert (mean, low, high) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
    assert math.isnan(st.t_interval([0.1])[1])


def test_two_sided_p_by_hand_and_its_degenerate_cases():
    t = 0.2 / (0.1 / math.sqrt(3))
    assert st.two_sided_p([0.1, 0.2, 0.3]) == pytest.approx(2 * stats.t.sf(t, 2))
    assert st.two_sided_p([0.1, 0.2, 0.3], null=0.2) == pytest.approx(1.0)
    assert st.two_sided_p([0.1, 0.1]) == 0.0 and st.two_sided_p([0.0, 0.0]) == 1.0
    assert math.isnan(st.two_sided_p([0.3]))


def test_tost_inside_and_outside_the_margin():
    inside = np.array([0.001, -0.002, 0.002, 0.0, -0.001])
    outside = np.array([0.05, 0.07, 0.06, 0.04, 0.08])
    wide = np.array([0.2, -0.2, 0.1])  # centred, but too spread to show equivalence
    assert st.tost_p(inside, 0.01) < 0.001
    assert st.tost_p(outside, 0.01) > 0.99
    assert st.tost_p(wide, 0.01) > 0.4
    # by hand: the larger of the one-sided p-values against -margin and +margin
    d, m = np.array([0.004, -0.001, 0.006, 0.002]), 0.01
    se = d.std(ddof=1) / 2
    by_hand = max(stats.t.sf((d.mean() + m) / se, 3), stats.t.cdf((d.mean() - m) / se, 3))
    assert st.tost_p(d, m) == pytest.approx(by_hand)
    assert st.tost_p(np.array([0.003, 0.003]), 0.01) == 0.0 and math.isnan(st.tost_p(np.array([0.0]), 0.01))


def test_holm_by_hand():
    # m = 4, sorted 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06 (monotone), 0.06; order of input kept
    assert st.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # a nan stays out of the family (m = 2) and stays nan; values are capped at 1
    out = st.holm([0.6, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.6) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert st.holm([0.7, 0.8]) == pytest.approx([1.0, 1.0])


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(0).uniform(0, 0.2, size=12)
    assert st.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_mde_is_the_effect_a_paired_t_test_detects_with_80_percent_power():
    std, n = 0.05, 3
    found = st.mde(std, n)
    # the power at the MDE, computed from scipy's noncentral t: 0.8
    df, crit, nc = n - 1, stats.t.ppf(0.975, n - 1), found / std * math.sqrt(n)
    assert stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) == pytest.approx(0.8, abs=1e-6)
    # and by simulation: paired t-tests on n = 3 normal differences at the MDE reject about 80% of the time
    draws = np.random.default_rng(1).normal(found, std, size=(40_000, n))
    assert (stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05).mean() == pytest.approx(0.8, abs=0.01)
    assert math.isnan(st.mde(0.05, 1)) and math.isnan(st.mde(0.0, 3))


def test_units_needed_is_the_least_n_with_80_percent_power():
    from statsmodels.stats.power import TTestPower

    power = TTestPower().power
    for effect, std in [(0.01, 0.05), (0.03, 0.1), (0.001, 0.06)]:
        n = st.units_needed(effect, std)
        assert power(effect_size=effect / std, nobs=n, alpha=0.05) >= 0.8
        assert power(effect_size=effect / std, nobs=n - 1, alpha=0.05) < 0.8
    assert st.units_needed(-0.01, 0.05) == st.units_needed(0.01, 0.05)  # the sign does not matter
    assert st.units_needed(1.0, 0.01) == 2  # a huge effect: the least n a t-test has
    assert math.isnan(st.units_needed(None, 0.05)) and math.isnan(st.units_needed(0.01, float("nan")))
    assert st.units_needed(1e-9, 1.0, most=1000) == math.inf


def test_orders_as_blocks_match_ols_with_sum_coded_orders():
    """The blocked estimate is OLS d ~ C(order, Sum)'s intercept: its value, standard error, df and p-value."""
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(3)
    runs = {("x", s): 0.02 + rng.normal(0, 0.01) for s in range(5)}
    runs |= {("y", s): -0.01 + rng.normal(0, 0.02) for s in range(3)}  # unequal seeds per order
    est = st.blocked_differences(_runs(runs), 0.0)
    frame = pd.DataFrame([{"order": o, "d": v} for (o, _), v in runs.items()])
    fit = smf.ols("d ~ C(order, Sum)", frame).fit()
    assert est.mean == pytest.approx(fit.params["Intercept"])
    assert est.se == pytest.approx(fit.bse["Intercept"])
    assert est.df == fit.df_resid == 6 and (est.n, est.orders) == (8, 2)
    assert st.blocked_p(est) == pytest.approx(fit.pvalues["Intercept"])
    low, high = fit.conf_int().loc["Intercept"]
    assert st.blocked_interval(est)[1:] == pytest.approx((low, high))
    assert est.mean == pytest.approx(
        (np.mean([runs["x", s] for s in range(5)]) + np.mean([runs["y", s] for s in range(3)])) / 2
    )


def test_one_block_is_the_one_sample_test():
    """With one order the blocked formulas are the one-sample paired t-test's (statsmodels / scipy references)."""
    d = np.array([0.012, -0.004, 0.02, 0.007, 0.015, 0.001])
    std = d.std(ddof=1)
    one = st.Blocked(float(d.mean()), std / math.sqrt(len(d)), len(d) - 1, len(d), 1, std, d)
    assert st.blocked_p(one) == pytest.approx(st.two_sided_p(d))
    assert st.blocked_p(one, 0.01) == pytest.approx(st.two_sided_p(d, 0.01))
    assert st.blocked_tost_p(one, 0.02) == pytest.approx(st.tost_p(d, 0.02))
    assert st.blocked_mde(one) == pytest.approx(st.mde(std, len(d)), rel=1e-6)
    assert st.blocked_runs_needed(0.004, one) == st.units_needed(0.004, std)
    assert st.blocked_interval(one) == pytest.approx(st.t_interval(d))


def test_one_order_is_not_blocked():
    assert st.blocked_differences(_runs({("x", 0): 0.1, ("x", 1): 0.2}), 0.0) is None
