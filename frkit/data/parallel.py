"""Marketplaces from a parallel corpus (PAWS-X, STS-B): one set of pairs translated into every language.

The split is made on pair ids for all languages at once: a pair id that is in any selected language's test
set is trained on in no language, and validation takes the same ids everywhere. Then ``pairs``:

* ``"disjoint"`` (default): each marketplace trains and validates on its own seeded share of the pair ids,
  so no marketplace learns from another's content, as real marketplaces do not share queries. Shares are
  dealt by marketplace *name* (not position), so a marketplace keeps its pairs in every order of a sweep.
* ``"shared"``: every marketplace has every id (each language sees the same pairs).

Test sets stay whole in every language: their ids are in no train split, so nothing leaks, and a whole
test set keeps the AUC's standard error small. Every marketplace also carries ``parallel_corpus``, all
of its language's non-test pairs, where a translation of another marketplace's pair is looked up.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from frkit.data.marketplace import COLUMNS, Marketplace
from frkit.data.split import carve_validation, stable_unit

log = logging.getLogger(__name__)

PAIRS = ("disjoint", "shared")


def pair_shares(ids, names: list[str], seed: int) -> dict[str, set[str]]:
    """Deal the ids into one near-equal, seeded share per name (sizes differ by at most one)."""
    ids = sorted(set(map(str, ids)))
    order = np.argsort(stable_unit(ids, seed, "share"), kind="stable")
    owners = sorted(names)
    shares = {name: set() for name in owners}
    for rank, i in enumerate(order):
        shares[owners[rank % len(owners)]].add(ids[i])
    return shares


def parallel_marketplaces(
    raw: dict[str, dict[str, pd.DataFrame]],
    *,
    pairs: str = "disjoint",
    validation_fraction: float = 0.2,
    seed: int = 0,
    source: str = "parallel corpus",
) -> list[Marketplace]:
    """{lang: {"train": ..., "test": ...[, "validation": ...]}} -> marketplaces, in the order of ``raw``.

    Without a "validation" table, validation is carved from train by id (``validation_fraction``).
    """
    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    test_ids = set().union(*(set(t["test"]["id"]) for t in raw.values()))
    split = {}
    for lang, tables in raw.items():
        train = tables["train"]
        leaked = train["id"].isin(test_ids)
        log.info(
            "%s %s: dropped %d train rows whose pair id is in a selected language's test set",
            source,
            lang,
            int(leaked.sum()),
        )
        train = train[~leaked]
        if "validation" in tables:
            validation = tables["validation"][~tables["validation"]["id"].isin(test_ids)]
        else:
            train, validation = carve_validation(train, validation_fraction, seed)
        split[lang] = (train.reset_index(drop=True), validation.reset_index(drop=True))
    shares = None
    if pairs == "disjoint":
        pool = set().union(*(set(t["id"]) | set(v["id"]) for t, v in split.values()))
        shares = pair_shares(pool, list(raw), seed)
    out = []
    for lang, (train, validation) in split.items():
        corpus = pd.concat([train, validation], ignore_index=True)[list(COLUMNS)]
        if shares is not None:
            train = train[train["id"].isin(shares[lang])].reset_index(drop=True)
            validation = validation[validation["id"].isin(shares[lang])].reset_index(drop=True)
            log.info(
                "%s %s: its disjoint share holds %d train and %d validation pairs",
                source,
                lang,
                len(train),
                len(validation),
            )
        out.append(
            Marketplace(
                name=lang,
                language=lang,
                train=train[list(COLUMNS)],
                validation=validation[list(COLUMNS)],
                test=raw[lang]["test"][list(COLUMNS)].reset_index(drop=True),
                parallel_corpus=corpus,
            )
        )
    return out
