"""Hash-based validation carving and stratified, seeded, parallel-consistent subsampling."""

from __future__ import annotations

import pandas as pd
import pytest

from frkit.data.split import carve_validation, stable_unit, stratified_quota, subsample


def table(ids, labels) -> pd.DataFrame:
    ids = [str(i) for i in ids]
    return pd.DataFrame({"id": ids, "text_a": ids, "text_b": ids, "label": list(labels)})


def test_stable_unit_is_deterministic_and_seeded():
    a = stable_unit(["1", "2", "3"], 0, "x")
    assert (a == stable_unit(["1", "2", "3"], 0, "x")).all() and ((a >= 0) & (a < 1)).all()
    assert (a != stable_unit(["1", "2", "3"], 1, "x")).all()


def test_carve_by_id_is_consistent_across_tables_and_near_the_fraction():
    big = table(range(2000), [i % 2 for i in range(2000)])
    train, val = carve_validation(big, 0.2, seed=0)
    assert len(train) + len(val) == 2000 and 340 < len(val) < 460
    assert not set(train["id"]) & set(val["id"])
    part = big.iloc[::3]  # another language missing some ids
    _, val_part = carve_validation(part, 0.2, seed=0)
    assert set(val_part["id"]) == set(val["id"]) & set(part["id"])


def test_carve_by_group_keeps_groups_whole():
    t = table(range(200), [0, 1] * 100)
    groups = pd.Series([i // 5 for i in range(200)])
    train, val = carve_validation(t, 0.3, seed=3, groups=groups)
    g_of = dict(zip(t["id"], groups))
    assert not {g_of[i] for i in train["id"]} & {g_of[i] for i in val["id"]}


@pytest.mark.parametrize(
    "counts,n,expected",
    [
        ({0: 60, 1: 40}, 10, {0: 6, 1: 4}),
        ({0: 99, 1: 1}, 10, {0: 9, 1: 1}),  # the rare class keeps one row
        ({0: 50, 1: 50}, 7, {0: 4, 1: 3}),
        ({1: 30}, 5, {1: 5}),
    ],
)
def test_stratified_quota(counts, n, expected):
    assert stratified_quota(counts, n) == expected


def test_subsample_is_stratified_seeded_and_keeps_row_order():
    t = table(range(100), [int(i < 30) for i in range(100)])
    (a,) = subsample([t], 20, seed=0, parallel=False)
    assert len(a) == 20 and a["label"].sum() == 6
    assert a["id"].astype(int).is_monotonic_increasing
    (b,) = subsample([t], 20, seed=0, parallel=False)
    (c,) = subsample([t], 20, seed=1, parallel=False)
    assert a["id"].tolist() == b["id"].tolist() != c["id"].tolist()
    (small,) = subsample([t.head(5)], 20, seed=0, parallel=False)
    assert len(small) == 5
    (same,) = subsample([t], None, seed=0, parallel=False)
    assert same is t


def test_parallel_subsample_takes_the_same_ids_where_possible():
    labels = [i % 2 for i in range(100)]
    en = table(range(100), labels)
    ja = en[~en["id"].isin(["0", "1", "2", "3", "4"])].reset_index(drop=True)  # ja lacks a few (NS) ids
    sub_en, sub_ja = subsample([en, ja], 30, seed=0, parallel=True)
    assert len(sub_en) == len(sub_ja) == 30
    assert set(sub_en["id"]) == set(sub_ja["id"])  # common ids first
    assert sub_en["label"].sum() == 15
