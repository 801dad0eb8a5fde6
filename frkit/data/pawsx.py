"""PAWS-X in the release's layout: ``<path>/<lang>/{translated_train|train,dev_2k,test_2k}.tsv``.

The languages are parallel (one id = one English pair and its translations): the split is made on ids
for all languages at once, and ``pairs`` gives each marketplace its own share of them or all of them
(``frkit/data/parallel.py``).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from frkit.data.marketplace import Marketplace
from frkit.data.parallel import parallel_marketplaces
from frkit.data.table import to_pairs
from frkit.data.validate import require_dir, require_file
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

LANGUAGES = ("en", "es", "ja", "de", "fr", "ko", "zh")
TRAIN_FILES = ("translated_train.tsv", "train.tsv")  # English in the release has train.tsv
DEV_FILE = "dev_2k.tsv"
TEST_FILE = "test_2k.tsv"
PLACEHOLDER = "NS"  # the release's text for "no translation"
RAW_COLUMNS = {"id": "id", "text_a": "sentence1", "text_b": "sentence2", "label": "label"}


def drop_placeholders(raw: pd.DataFrame, where: str, also_empty: bool = False) -> pd.DataFrame:
    """Drop rows whose sentence1 or sentence2 is the NS placeholder (optionally also empty), logging how many."""
    bad = pd.Series(False, index=raw.index)
    for col in ("sentence1", "sentence2"):
        if col in raw:
            text = raw[col].astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
            bad |= text == PLACEHOLDER
            if also_empty:
                bad |= text.isna() | (text == "")
    log.info("%s: dropped %d of %d rows with a %r placeholder", where, int(bad.sum()), len(raw), PLACEHOLDER)
    return raw[~bad]


def read_pawsx_file(file: Path, what: str) -> pd.DataFrame:
    """One TSV as pairs. Quoting is off because sentences contain unbalanced quotes (``'' G ``)."""
    file = require_file(file, what)
    try:
        raw = pd.read_csv(file, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as err:
        raise FrkitInputError(f"PAWS-X file {file} could not be read as TSV: {err}") from err
    return to_pairs(drop_placeholders(raw, str(file)), RAW_COLUMNS, f"PAWS-X file {file}", labels="binary")


def resolve_train_file(folder: Path, train_file: str) -> Path:
    """ "auto": translated_train.tsv / train.tsv where present, else dev_2k.tsv; otherwise the named file."""
    if train_file != "auto":
        return folder / train_file
    for name in TRAIN_FILES:
        if (folder / name).is_file():
            return folder / name
    return folder / DEV_FILE


def load_pawsx(
    path: str | Path,
    langs: list[str],
    *,
    train_file: str = "auto",
    validation_fraction: float = 0.2,
    seed: int = 0,
    pairs: str = "disjoint",
) -> list[Marketplace]:
    """PAWS-X marketplaces in the order of ``langs`` (codes among LANGUAGES, checked by the caller)."""
    root = require_dir(Path(path), "PAWS-X release (x-final)")
    raw = {}
    for lang in langs:
        folder = require_dir(root / lang, f"PAWS-X language {lang!r}")
        train = read_pawsx_file(resolve_train_file(folder, train_file), f"PAWS-X {lang} train")
        test = read_pawsx_file(folder / TEST_FILE, f"PAWS-X {lang} test")
        raw[lang] = {"train": train, "test": test}
    return parallel_marketplaces(raw, pairs=pairs, validation_fraction=validation_fraction, seed=seed, source="PAWS-X")
