"""The unit of continual learning: one marketplace (one language) and its three tables."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Every loader returns tables with exactly these columns (extra ones are dropped).
COLUMNS = ("id", "text_a", "text_b", "label")
# id: pair id as str (for ESCI "<query_id>:<product_id>"), also used to keep splits disjoint.
# text_a: query or first sentence; text_b: product title or second sentence; label: int 0/1.
SPLITS = ("train", "validation", "test")


@dataclass
class Marketplace:
    name: str
    language: str
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    group: str | None = None  # optional column name used to group validation (ESCI: query id)
    # parallel corpora (PAWS-X, STS-B): every non-test pair of the corpus in this language, whichever
    # marketplace trains on it; a translation of another marketplace's pair is looked up here by id
    parallel_corpus: pd.DataFrame | None = None
    # data_source "mixed" (frkit/data/multi_source.py): {language: this marketplace's own corpus in it}, where a
    # translation of this marketplace's pairs is looked up (an older marketplace may come from another corpus)
    translations: dict[str, pd.DataFrame] | None = None

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLITS}
