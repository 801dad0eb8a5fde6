"""The Shopping Queries dataset (ESCI) as published: examples + products parquet files.

text_a = query, text_b = product_title, E/S -> 1 and C/I -> 0; train/test from the release's ``split``
column; validation = a seeded share of the train *queries* (all products of a query on one side).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from frkit.data.marketplace import COLUMNS, Marketplace
from frkit.data.split import carve_validation
from frkit.data.table import to_pairs
from frkit.data.validate import require_columns, require_dir, require_file
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

LOCALES = {"us": "en", "es": "es", "jp": "ja"}  # locale -> language
EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
EXAMPLE_COLUMNS = ("query", "query_id", "product_id", "product_locale", "esci_label", "small_version", "split")
PRODUCT_COLUMNS = ("product_id", "product_locale", "product_title")
KEYS = ["product_locale", "product_id"]  # product ids repeat across locales with different titles
RAW_COLUMNS = {
    "id": "pair_id",
    "text_a": "query",
    "text_b": "product_title",
    "label": "esci_label",
    "group": "query_id",
}


def _read_parquet(file: Path, columns: tuple[str, ...], locales: list[str], what: str) -> pd.DataFrame:
    """Only the needed columns of the needed locales: the real examples file has 2.6M rows."""
    file = require_file(file, what)
    try:
        found = pq.read_schema(file).names
    except (OSError, ValueError) as err:
        raise FrkitInputError(f"ESCI {what} file {file} could not be read as parquet: {err}") from err
    require_columns(found, columns, f"ESCI {what} file {file}")
    return pd.read_parquet(file, columns=list(columns), filters=[("product_locale", "in", list(locales))])


def join_products(examples: pd.DataFrame, products: pd.DataFrame, where: str) -> pd.DataFrame:
    """Attach product_title on (product_locale, product_id); an example without its product is an error."""
    products = products.drop_duplicates(KEYS)
    joined = examples.merge(products[KEYS + ["product_title"]], on=KEYS, how="left", indicator=True)
    orphan = joined[joined["_merge"] == "left_only"]
    if len(orphan):
        first = orphan.iloc[0]
        raise FrkitInputError(
            f"{where}: {len(orphan)} example(s) reference products missing from {PRODUCTS_FILE} "
            f"(first: product_locale={first['product_locale']!r}, product_id={first['product_id']!r})"
        )
    return joined.drop(columns="_merge")


def esci_marketplaces(
    joined: pd.DataFrame, locales: list[str], *, small_version: bool, validation_fraction: float, seed: int, where: str
) -> list[Marketplace]:
    """Examples joined with titles (and a ``split`` column) -> one marketplace per locale, in order."""
    if small_version:
        joined = joined[joined["small_version"].astype("int64") == 1]
    splits = set(joined["split"].unique())
    if not splits <= {"train", "test"}:
        raise FrkitInputError(
            f"{where}: column 'split' has value(s) {sorted(splits - {'train', 'test'})}; expected 'train' or 'test'"
        )
    joined = joined.assign(pair_id=joined["query_id"].astype(str) + ":" + joined["product_id"].astype(str))
    found_locales = sorted(joined["product_locale"].unique())
    out = []
    for locale in locales:
        rows = joined[joined["product_locale"] == locale]
        if rows.empty:
            raise FrkitInputError(
                f"{where}: no rows for locale {locale!r} (small_version filter "
                f"{'on' if small_version else 'off'}); locales found: {found_locales}"
            )
        pairs = to_pairs(rows, RAW_COLUMNS, f"{where} (locale {locale!r})", labels="esci", keep=("group",))
        is_train = (rows["split"] == "train").to_numpy()
        train, validation = carve_validation(
            pairs[is_train], validation_fraction, seed, groups=pairs.loc[is_train, "group"]
        )
        out.append(
            Marketplace(
                name=locale,
                language=LOCALES[locale],
                train=train[list(COLUMNS)],
                validation=validation[list(COLUMNS)],
                test=pairs[~is_train][list(COLUMNS)].reset_index(drop=True),
                group="query_id",
            )
        )
    return out


def load_esci(
    path: str | Path, locales: list[str], *, small_version: bool = True, validation_fraction: float = 0.2, seed: int = 0
) -> list[Marketplace]:
    """ESCI marketplaces in the order of ``locales`` (among LOCALES, checked by the caller)."""
    root = require_dir(Path(path), "ESCI (shopping_queries_dataset)")
    examples = _read_parquet(root / EXAMPLES_FILE, EXAMPLE_COLUMNS, locales, "examples")
    absent = [loc for loc in locales if loc not in set(examples["product_locale"])]
    if absent:  # read the one column again, unfiltered, to say which locales the file does have
        found = sorted(pd.read_parquet(root / EXAMPLES_FILE, columns=["product_locale"])["product_locale"].unique())
        raise FrkitInputError(f"ESCI {root / EXAMPLES_FILE}: no rows for locale(s) {absent}; locales found: {found}")
    products = _read_parquet(root / PRODUCTS_FILE, PRODUCT_COLUMNS, locales, "products")
    joined = join_products(examples, products, f"ESCI {root / EXAMPLES_FILE}")
    return esci_marketplaces(
        joined,
        locales,
        small_version=small_version,
        validation_fraction=validation_fraction,
        seed=seed,
        where=f"ESCI {root / EXAMPLES_FILE}",
    )
