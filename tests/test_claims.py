"""The claims table's statistics (issue 29, items 1-2): units, Holm per paper, equivalence, power, and the claims
that were rebuilt; on made-up frames computed by hand, and on the committed results/cpu_stsb/runs.csv."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from frkit.reports import claims as cl
from frkit.reports import statistics as st

RUNS = Path(__file__).resolve().parents[1] / "results" / "cpu_stsb" / "runs.csv"


def _frame(rows):
    """rows: (label, order, seed, average_auc)."""
    return pd.DataFrame(rows, columns=["label", "order", "seed", "average_auc"])


def test_a_claim_over_several_orders_has_one_unit_per_order_with_seeds_averaged():
    rows = []
    for order, diffs in {"x": [0.10, 0.00, 0.05], "y": [0.02, 0.04, 0.00]}.items():
        for seed, d in enumerate(diffs):
            rows += [("a", order, seed, 0.7 + d), ("b", order, seed, 0.7)]
    r = cl.check(cl.Claim("P", "T", "a beats b", "a", "b", "average_auc"), _frame(rows))
    assert r["unit"] == "order" and r["n"] == 2
    assert r["difference"] == pytest.approx((0.05 + 0.02) / 2)  # order means 0.05 and 0.02
    assert r["std"] == pytest.approx(np.std([0.05, 0.02], ddof=1))
    assert r["agree"] == 2 and r["p"] == pytest.approx(st.two_sided_p([0.05, 0.02]))
    assert r["mde"] == pytest.approx(st.mde(r["std"], 2))


def test_a_sweep_with_unit_seed_takes_runs_as_replicates_and_orders_as_blocks():
    """Two orders as units leave n = 2; with the orders as fixed blocks the same 6 runs give 4 degrees of freedom."""
    rows, per_run = [], {}
    for order, diffs in {"x": [0.10, 0.00, 0.05], "y": [0.02, 0.04, 0.00]}.items():
        for seed, d in enumerate(diffs):
            rows += [("a", order, seed, 0.7 + d), ("b", order, seed, 0.7)]
            per_run[order, seed] = d
    claim = cl.Claim("P", "T", "a beats b", "a", "b", "average_auc", effect=0.01)
    r = cl.check(claim, _frame(rows), blocked=True)
    est = st.blocked_differences(pd.Series(per_run).rename_axis(["order", "seed"]), 0.0)
    assert r["unit"] == st.BLOCKED_UNIT and r["n"] == 6 and est.df == 4
    assert r["difference"] == pytest.approx(est.mean) and r["std"] == pytest.approx(est.std)
    assert r["p"] == pytest.approx(st.blocked_p(est)) and r["mde"] == pytest.approx(st.blocked_mde(est))
    assert r["agree"] == 4  # runs with a > b: all but (x, 1) and (y, 2), whose differences are 0
    assert r["units_needed"] == st.blocked_runs_needed(0.01, est)
    assert cl.check(claim, _frame(rows))["n"] == 2  # the default: orders as units


def test_one_unit_gets_no_verdict():
    one = _frame([("a", "x", 0, 0.8), ("b", "x", 0, 0.7), ("a", "y", 1, 0.8)])  # a single pair
    r = cl.check(cl.Claim("P", "T", "a beats b", "a", "b", "average_auc"), one)
    assert r["n"] == 1 and r["raw_verdict"] == "one unit" and r["verdict"] == "one unit"


@pytest.mark.parametrize(
    "diffs, expected",
    [
        ([0.001, -0.002, 0.002, 0.0, -0.001], "reproduced"),  # tight and inside +-0.01
        ([0.05, 0.07, 0.06, 0.04, 0.08], "not reproduced"),  # clearly outside
        ([0.2, -0.2, 0.1], "within noise"),  # centred but too spread to tell
    ],
)
def test_comparable_claims_are_tested_as_equivalence(diffs, expected):
    rows = [r for seed, d in enumerate(diffs) for r in (("a", "x", seed, 0.7 + d), ("b", "x", seed, 0.7))]
    claim = cl.Claim("P", "T", "a comparable to b", "a", "b", "average_auc", cl.EQUIVALENT, margin=0.01)
    r = cl.check(claim, _frame(rows))
    assert r["raw_verdict"] == expected
    if expected == "reproduced":  # p is 2 x the TOST p-value: the 95% interval inside the margin
        assert r["p"] == pytest.approx(2 * st.tost_p(np.array(diffs), 0.01))
        assert -0.01 < r["ci_low"] and r["ci_high"] < 0.01


def test_holm_is_applied_within_each_paper_separately(monkeypatch):
    rows = []
    spreads = {"a1": 0.004, "a2": 0.03, "a3": 0.01, "c1": 0.004}
    for label, step in spreads.items():
        for seed, d in enumerate([0.02, 0.02 + step, 0.02 - step, 0.02 + 2 * step]):
            rows += [(label, "x", seed, 0.7 + d)]
    rows += [("b", "x", seed, 0.7) for seed in range(4)]
    claims = [cl.Claim("P1", "T", label, label, "b", "average_auc") for label in ("a1", "a2", "a3")] + [
        cl.Claim("P2", "T", "c1", "c1", "b", "average_auc")
    ]
    monkeypatch.setattr(cl, "paper_claims", lambda names: claims)
    table = cl.claims_table(_frame(rows), ["en"])
    p1 = table[table["paper"] == "P1"]
    assert list(p1["p_holm"]) == pytest.approx(list(st.holm(p1["p"].to_numpy())))
    p2 = table[table["paper"] == "P2"].iloc[0]
    assert p2["p_holm"] == pytest.approx(p2["p"])  # a family of one: unadjusted, whatever P1 holds
    assert set(table["verdict"]) <= {"reproduced", "within noise"}
    assert (table["p_holm"] >= table["p"] - 1e-12).all()


@pytest.fixture(scope="module")
def committed():
    runs = pd.read_csv(RUNS)
    return runs, cl.claims_table(runs, ["en", "es", "ja"])


def test_committed_headline_claim_uses_orders_as_units(committed):
    runs, table = committed
    r = table[table["comparison"] == "fr_lora > independent (average_auc)"].iloc[0]
    wide = runs[runs["label"].isin(["fr_lora", "independent"])].pivot_table(
        index=["order", "seed"], columns="label", values="average_auc"
    )
    by_order = (wide["fr_lora"] - wide["independent"]).groupby(level="order").mean()
    assert r["unit"] == "order" and r["n"] == 3
    assert r["difference"] == pytest.approx(by_order.mean())
    assert r["p"] == pytest.approx(st.two_sided_p(by_order.to_numpy()))
    assert r["units_needed"] == st.units_needed(0.81823 - 0.81255, by_order.std(ddof=1))


def test_raw_verdict_agrees_with_the_interval_rule_on_every_directional_claim(committed):
    _, table = committed
    has_rows = table["raw_verdict"] != "missing"  # e.g. the mechanism controls: not rows of this sweep
    counted = table["raw_verdict"] != cl.NOT_LEARNING  # a row that does not learn: no verdict (test below)
    directional = table[
        table["comparison"].str.contains(" > | < ") & (table["unit"] != "exact count") & has_rows & counted
    ]
    assert len(directional) > 15
    for _, r in directional.iterrows():
        direction = cl.GREATER if " > " in r["comparison"] else cl.LESS
        assert r["raw_verdict"] == cl.verdict(r["difference"], r["std"], r["n"], direction), r["claim"]


def test_verdict_after_holm_is_never_stronger_than_the_raw_one(committed):
    _, table = committed
    strong = {"reproduced", "not reproduced"}
    assert not (table["verdict"].isin(strong) & ~table["raw_verdict"].isin(strong)).any()
    counted = table[table["raw_verdict"] != cl.NOT_LEARNING]  # the others are out of the Holm family
    assert (
        counted.groupby("paper")["p_holm"].apply(lambda p: p.notna().sum()).to_dict()
        == counted.groupby("paper")["p"].apply(lambda p: p.notna().sum()).to_dict()
    )
    assert table.loc[table["raw_verdict"] == cl.NOT_LEARNING, "p_holm"].isna().all()


def test_claims_built_by_construction_are_gone_and_the_rebuilt_ones_say_why():
    claims = cl.paper_claims(["en", "es", "ja"])
    compared = {(c.a, c.b, c.quantity) for c in claims}
    assert ("fr_lora", "sequential", "average_auc") not in compared  # no such row in FR Tables 1-2
    assert ("fr_lora", "lora", "forgetting") not in compared  # 0 forgetting by construction
    forgetting = [c for c in claims if c.quantity == "forgetting"]
    assert {c.b for c in forgetting} == {"replay", "magmax+sequential", "opcm+sequential", "o_lora"}  # Figure 3b
    assert all("stands in" in c.note for c in forgetting if "+sequential" in c.b)
    merging = [c for c in claims if c.a in ("magmax+sequential", "opcm+sequential")]
    assert all("inconsistently" in c.where and "numbers" in c.text for c in merging)
    comparable = [c for c in claims if c.direction == cl.EQUIVALENT]
    assert [(c.a, c.b, c.margin) for c in comparable] == [("attention_distillation", "adapter_fusion", 0.01)]
    assert {c.a for c in claims if c.note == cl.SELECTED_ON_TEST} == {
        "fr_lora+lr_decay",
        "fr_lora+lr_decay+proj",
        "fr_dora+lr_decay",
    }
    params = next(c for c in claims if c.quantity == "trainable_params")
    assert "vocabulary trimming" in params.note
    assert all(c.where and (c.effect is not None or c.effect_from) for c in claims)


def test_markdown_has_the_new_columns(committed):
    _, table = committed
    header = [c.strip() for c in cl.claims_markdown(table).splitlines()[0].split("|")]
    for column in (
        "units (n)",
        "difference [95% CI]",
        "p",
        "p Holm",
        "raw verdict",
        "verdict (Holm)",
        "MDE 80%",
        "paper's effect",
        "units for paper's effect",
        "note",
    ):
        assert column in header


def test_mechanism_controls_are_claims_on_their_sweep():
    """fr_controls' rows feed the two control claims: one seed, so one unit and no test, the difference shown."""
    runs = pd.read_csv(RUNS.parents[1] / "fr_controls" / "runs.csv")
    table = cl.claims_table(runs, ["en", "es", "ja"]).set_index("comparison")
    auc = runs.set_index("label")["average_auc"]
    for control in ("fr_lora+uniform", "fr_lora+shuffled"):
        r = table.loc[f"fr_lora > {control} (average_auc)"]
        assert r["unit"] == "seed" and r["n"] == 1 and r["raw_verdict"] == "one unit"
        assert r["difference"] == pytest.approx(auc["fr_lora"] - auc[control])


def test_a_claim_against_a_row_that_does_not_learn_is_not_counted(monkeypatch):
    """Issue 29: beating a row whose least marketplace's just-learned AUC is below 0.70 is no evidence: the claim
    says so (verdict "not learning", the row named in its note) and leaves its paper's Holm family."""
    rows = []
    for seed, d in enumerate([0.10, 0.12, 0.11, 0.09]):
        rows += [("a", "x", seed, 0.8, 0.80), ("untrained", "x", seed, 0.8 - d, 0.55), ("b", "x", seed, 0.79, 0.75)]
    frame = pd.DataFrame(rows, columns=["label", "order", "seed", "average_auc", "least_just_learned"])
    claims = [
        cl.Claim("P", "T", "a beats an untrained row", "a", "untrained", "average_auc"),
        cl.Claim("P", "T", "a beats b", "a", "b", "average_auc"),
    ]
    monkeypatch.setattr(cl, "paper_claims", lambda names: claims)
    table = cl.claims_table(frame, ["x"])
    weak, fair = table.iloc[0], table.iloc[1]
    assert weak["raw_verdict"] == weak["verdict"] == "not learning"
    assert "untrained does not learn here (least just-learned AUC 0.550 < 0.70): not counted" in weak["note"]
    assert np.isnan(weak["p_holm"]) and weak["p"] < 0.05  # its test is shown, not counted
    assert fair["p_holm"] == pytest.approx(fair["p"])  # a family of one: Holm leaves it as it is
