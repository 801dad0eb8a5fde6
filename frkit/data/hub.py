"""Marketplaces from the Hugging Face Hub via ``datasets`` (PAWS-X-like or ESCI-like datasets).

Kept thin: ``load_dataset`` fetches, and the rest is the file loaders' own code (``to_pairs``, the
parallel id split of PAWS-X, the query-grouped split of ESCI). ``pawsx_from_hub`` and
``esci_from_hub`` take in-memory ``DatasetDict``s so they are testable without the Hub.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import pandas as pd

from frkit.data.esci import LOCALES, esci_marketplaces
from frkit.data.marketplace import Marketplace
from frkit.data.parallel import parallel_marketplaces
from frkit.data.pawsx import LANGUAGES, RAW_COLUMNS, drop_placeholders
from frkit.data.table import to_pairs
from frkit.data.validate import require_columns
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

# Default dataset ids. PAWS-X: one config per language, splits train/validation/test (label -1 marks
# missing labels). ESCI: tasksource/esci is the examples+products join of the official release, splits
# train/test, esci_label spelled out (Exact, ...); it has no `split` column (the Hub split is used).
HUB_DATASETS = {"pawsx": "google-research-datasets/paws-x", "esci": "tasksource/esci"}
HUB_KINDS = tuple(HUB_DATASETS)
KNOWN_NAMES = {"pawsx": LANGUAGES, "esci": tuple(LOCALES)}
ESCI_HUB_COLUMNS = ("query", "query_id", "product_id", "product_locale", "esci_label", "small_version", "product_title")


def resolve_hub(path: str | None, hub_kind: str | None) -> tuple[str, str]:
    """(kind, dataset id): the kind is given, or read off the id ('paws' / 'esci' in it)."""
    if hub_kind is None and path:
        lowered = path.lower()
        hub_kind = "pawsx" if "paws" in lowered else "esci" if ("esci" in lowered or "shopping" in lowered) else None
    if hub_kind not in HUB_KINDS:
        raise FrkitInputError(
            f"source 'hub': cannot tell whether dataset {path!r} is PAWS-X-like or ESCI-like (hub_kind={hub_kind!r}); "
            f"pass hub_kind as one of {list(HUB_KINDS)}"
        )
    return hub_kind, path or HUB_DATASETS[hub_kind]


def _split_frame(dsdict: Mapping, split: str, where: str) -> pd.DataFrame:
    if split not in dsdict:
        raise FrkitInputError(f"{where}: no split {split!r}; splits found: {sorted(dsdict)}")
    return dsdict[split].to_pandas()


def pawsx_from_hub(
    by_lang: Mapping[str, Mapping],
    *,
    train_split: str = "auto",
    validation_fraction: float = 0.2,
    seed: int = 0,
    name: str = HUB_DATASETS["pawsx"],
    pairs: str = "disjoint",
) -> list[Marketplace]:
    """{lang: DatasetDict(train, validation, test)} -> marketplaces, split as the PAWS-X files are.

    ``train_split`` "auto" = "train" (machine-translated); "validation" mirrors training on dev_2k.
    """
    train_split = "train" if train_split == "auto" else train_split
    raw = {}
    for lang, dsdict in by_lang.items():
        frames = []
        for split in (train_split, "test"):
            where = f"Hub dataset {name} ({lang}, split {split!r})"
            frame = _split_frame(dsdict, split, where)
            require_columns(frame.columns, RAW_COLUMNS.values(), where)
            unlabeled = frame["label"].isin([-1])  # the Hub build marks missing or wrong labels with -1
            if unlabeled.any():
                log.info("%s: dropped %d rows with label -1", where, int(unlabeled.sum()))
            frame = drop_placeholders(frame[~unlabeled], where, also_empty=True)
            frames.append(to_pairs(frame, RAW_COLUMNS, where, labels="binary"))
        raw[lang] = {"train": frames[0], "test": frames[1]}
    return parallel_marketplaces(
        raw, pairs=pairs, validation_fraction=validation_fraction, seed=seed, source=f"Hub {name}"
    )


def esci_from_hub(
    dsdict: Mapping,
    locales: list[str],
    *,
    small_version: bool = True,
    validation_fraction: float = 0.2,
    seed: int = 0,
    name: str = HUB_DATASETS["esci"],
) -> list[Marketplace]:
    """DatasetDict(train, test) of joined ESCI rows -> marketplaces, via the file loader's own code."""
    frames = []
    for split in ("train", "test"):
        where = f"Hub dataset {name} (split {split!r})"
        ds = dsdict[split] if split in dsdict else None
        if ds is None:
            raise FrkitInputError(f"{where}: no such split; splits found: {sorted(dsdict)}")
        require_columns(ds.column_names, ESCI_HUB_COLUMNS, where)
        # Select and filter before to_pandas: the full dataset carries long product texts.
        ds = ds.select_columns(list(ESCI_HUB_COLUMNS))
        ds = ds.filter(lambda batch: [loc in locales for loc in batch], input_columns="product_locale", batched=True)
        frames.append(ds.to_pandas().assign(split=split))
    return esci_marketplaces(
        pd.concat(frames, ignore_index=True),
        locales,
        small_version=small_version,
        validation_fraction=validation_fraction,
        seed=seed,
        where=f"Hub dataset {name}",
    )


def load_hub(
    path: str | None,
    names: list[str],
    *,
    kind: str,
    train_split: str = "auto",
    small_version: bool = True,
    validation_fraction: float = 0.2,
    seed: int = 0,
    load_dataset: Callable | None = None,
    pairs: str = "disjoint",
) -> list[Marketplace]:
    """Fetch with ``datasets.load_dataset`` (or the given stand-in) and normalise. Needs the Hub or its cache."""
    if load_dataset is None:
        from datasets import load_dataset  # imported here: only this source needs it

    def fetch(*config: str):
        try:
            return load_dataset(path, *config)
        except (OSError, ValueError, ConnectionError) as err:  # unreachable Hub, unknown id or config
            raise FrkitInputError(f"Hub dataset {path!r} {list(config) or ''} could not be loaded: {err}") from err

    if kind == "pawsx":
        return pawsx_from_hub(
            {lang: fetch(lang) for lang in names},
            train_split=train_split,
            validation_fraction=validation_fraction,
            seed=seed,
            name=path,
            pairs=pairs,
        )
    return esci_from_hub(
        fetch(), names, small_version=small_version, validation_fraction=validation_fraction, seed=seed, name=path
    )
