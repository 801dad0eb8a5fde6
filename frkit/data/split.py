"""Seeded, hash-based splitting and subsampling.

Both work on a stable hash of (seed, purpose, key) instead of a random generator, so a decision about
one pair id does not depend on which other rows are present: the same PAWS-X id goes to validation
(or into a subsample) in every language, and a re-run with the same seed gets the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from frkit.data.marketplace import Marketplace


def stable_unit(keys: Sequence[str], seed: int, purpose: str) -> np.ndarray:
    """Map each key to a float in [0, 1), stable across runs, machines and Python hash seeds."""
    salt = f"{seed}\x1f{purpose}\x1f"
    ints = np.fromiter(
        (int.from_bytes(hashlib.blake2b((salt + str(k)).encode(), digest_size=8).digest(), "big") for k in keys),
        dtype=np.uint64,
        count=len(keys),
    )
    return ints / float(2**64)


def _unit_per_row(keys: pd.Series, seed: int, purpose: str) -> np.ndarray:
    """stable_unit per row, hashing each distinct key once (ESCI has ~20 products per query)."""
    codes, uniques = pd.factorize(keys.astype(str))
    return stable_unit(list(uniques), seed, purpose)[codes]


def carve_validation(
    table: pd.DataFrame, fraction: float, seed: int, groups: pd.Series | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``table`` into (train, validation) with about ``fraction`` of the keys in validation.

    The key is ``groups`` (e.g. ESCI query_id: no query on both sides) or else the pair id.
    """
    keys = table["id"] if groups is None else groups
    to_validation = _unit_per_row(keys, seed, "validation") < fraction
    return table[~to_validation].reset_index(drop=True), table[to_validation].reset_index(drop=True)


def stratified_quota(counts: dict[int, int], n: int) -> dict[int, int]:
    """Rows to take per label for ``n`` rows in the proportions of ``counts`` (largest remainder).

    Every label present keeps at least one row when n allows, so a subsampled test set keeps
    both classes (ROC-AUC needs them).
    """
    total = sum(counts.values())
    labels = sorted(c for c in counts if counts[c] > 0)
    exact = {c: n * counts[c] / total for c in labels}
    quota = {c: int(exact[c]) for c in labels}
    for c in sorted(labels, key=lambda c: exact[c] - quota[c], reverse=True)[: n - sum(quota.values())]:
        quota[c] += 1
    for c in labels:
        if quota[c] == 0 and n >= len(labels):
            donor = max(labels, key=lambda d: quota[d])
            quota[donor] -= 1
            quota[c] = 1
    return quota


def subsample(tables: Sequence[pd.DataFrame], n: int | None, seed: int, parallel: bool) -> list[pd.DataFrame]:
    """Stratified, seeded subsample of each table to at most ``n`` rows (original row order kept).

    Rows are taken per label in stable-hash order of their id. With ``parallel`` (translated data,
    same id = same pair) the per-label quotas come from all tables pooled and ids present in every
    table come first, so each language gets the same ids wherever it has them.
    """
    if n is None:
        return list(tables)
    common = set.intersection(*(set(t["id"]) for t in tables)) if parallel else None
    pooled = pd.concat([t["label"] for t in tables]).value_counts().to_dict() if parallel else None
    out = []
    for table in tables:
        if len(table) <= n:
            out.append(table)
            continue
        quota = stratified_quota(pooled or table["label"].value_counts().to_dict(), n)
        order = pd.DataFrame(
            {
                "rest": ~table["id"].isin(common) if parallel else False,
                "unit": _unit_per_row(table["id"], seed, "sample"),
                "label": table["label"].to_numpy(),
            },
            index=table.index,
        ).sort_values(["rest", "unit"], kind="stable")
        keep = pd.concat([order.index[order["label"] == c][: quota.get(c, 0)].to_series() for c in sorted(quota)])
        out.append(table.loc[sorted(keep)].reset_index(drop=True))
    return out


def subsample_marketplaces(
    marketplaces: list[Marketplace],
    *,
    max_train: int | None,
    max_validation: int | None,
    max_test: int | None,
    seed: int,
    parallel: bool,
) -> list[Marketplace]:
    """Apply ``subsample`` to every split of every marketplace (after splitting, so splits stay disjoint)."""
    limits = {"train": max_train, "validation": max_validation, "test": max_test}
    for split, n in limits.items():
        if n is None:
            continue
        tables = subsample([m.split(split) for m in marketplaces], n, seed, parallel)
        for m, table in zip(marketplaces, tables):
            setattr(m, split, table)
    return marketplaces
